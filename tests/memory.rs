//! Peak memory of training with a large catalogue: the fused classifier loss never holds the
//! `[rows, items + 1]` logits, only one chunk of them.
//!
//! One test in its own binary, because it reads the peak resident set of this process's
//! waited-for children (getrusage(RUSAGE_CHILDREN)), which another test's child would blur.

use std::process::Command;

/// Largest resident set of any waited-for child so far, in bytes (Linux: ru_maxrss is in KiB).
#[cfg(target_os = "linux")]
fn children_peak_rss() -> u64 {
    /// `struct rusage` of x86-64 and aarch64 Linux: two timevals, then 14 longs, the first
    /// of which is ru_maxrss.
    #[repr(C)]
    struct Rusage {
        utime: [i64; 2],
        stime: [i64; 2],
        maxrss: i64,
        rest: [i64; 13],
    }
    extern "C" {
        fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    }
    const RUSAGE_CHILDREN: i32 = -1;
    let mut u = Rusage {
        utime: [0; 2],
        stime: [0; 2],
        maxrss: 0,
        rest: [0; 13],
    };
    // SAFETY: `u` is a valid, writable struct rusage for the duration of the call.
    let rc = unsafe { getrusage(RUSAGE_CHILDREN, &mut u) };
    assert_eq!(rc, 0, "getrusage failed");
    u.maxrss as u64 * 1024
}

/// One `pasa bench` training step of SASRec with 100 000 items at batch 32, n 50, d 64 (1600
/// rows, all with a target) on the CPU. Unfused, the logits and their gradient would be
/// 1600 × 100 001 × 4 B = 640 MB each, 1.28 GB together, on top of the parameters and Adam
/// state (4 × 25.6 MB). Bound: peak RSS ≤ 500 MiB, which the unfused path exceeds by its two
/// logit buffers alone, and the fused one (one 64-row chunk: 25.6 MB) stays well within.
#[cfg(target_os = "linux")]
#[test]
fn a_100k_item_catalogue_trains_without_the_full_logits() {
    let (batch, n, items) = (32usize, 50usize, 100_000usize);
    let out = Command::new(env!("CARGO_BIN_EXE_pasa"))
        .args(["bench", "--device", "cpu", "--model", "sasrec"])
        .args(["--batch", &batch.to_string(), "--n", &n.to_string()])
        .args([
            "--items",
            &items.to_string(),
            "--warmup",
            "0",
            "--iters",
            "1",
        ])
        .output()
        .expect("run pasa bench");
    assert!(
        out.status.success(),
        "pasa bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak = children_peak_rss();
    let logits = (batch * n * (items + 1) * 4) as u64;
    let bound = 500u64 << 20;
    assert!(
        2 * logits > bound,
        "the bound would not catch the unfused logits"
    );
    assert!(
        peak <= bound,
        "peak RSS {} MiB > {} MiB (unfused logits + gradient: {} MiB)",
        peak >> 20,
        bound >> 20,
        (2 * logits) >> 20
    );
    eprintln!(
        "peak RSS {} MiB (bound {} MiB; unfused logits + gradient would be {} MiB)",
        peak >> 20,
        bound >> 20,
        (2 * logits) >> 20
    );
}
