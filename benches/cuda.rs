//! The CPU benches' cases on CUDA device 0 (benches/common). Without a usable GPU (no
//! driver, no kernels in this build, no device) it says why in one line and exits 0.
//!
//! `cargo bench --bench cuda` (criterion; medians in target/criterion).

mod common;

use criterion::Criterion;
use pasa::backend::cuda::{cuda_available, Cuda};

fn main() {
    let cuda = match cuda_available().and_then(|_| Cuda::new(0)) {
        Ok(c) => c,
        Err(e) => {
            println!("cuda bench skipped: {e}");
            return;
        }
    };
    let mut c = Criterion::default().configure_from_args();
    common::run_all(&mut c, &cuda);
    c.final_summary();
}
