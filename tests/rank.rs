//! The CPU rank op (src/backend/cpu/rank.rs), the reference of kernels/rank.cu: every output
//! against a brute-force ranking written from the conventions of src/eval.rs, and the metrics
//! of the op's rows fed to `RankingAccumulator::add_ranked` against the accumulator's own
//! per-user `add`, bit for bit, under every protocol. The CUDA kernel is held to the CPU op
//! exactly by tests/parity.rs (`rank_every_protocol_and_odd_shapes`).

#[path = "common/rank_cases.rs"]
mod rank_cases;

use pasa::backend::cpu::Cpu;
use pasa::backend::{RANK_K, RANK_ROW, RANK_SKIPPED};
use pasa::eval::{Protocol, RankingAccumulator};
use rank_cases::{lists, rank_case, run_rank, RankCase, PROTOCOLS};
use std::cmp::Ordering;

/// The op's output for every row of `c` under `protocol`, on the CPU backend.
fn run_op(c: &RankCase, protocol: Protocol, seed: u64) -> Vec<u32> {
    run_rank(&Cpu::<f32>::new(), c, protocol, seed)
}

/// Score order of the top lists: higher first, NaN below everything, −0 = +0.
fn better(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => b.partial_cmp(&a).unwrap(),
    }
}

/// One row ranked by the definitions: candidates listed, rank counted, top list sorted.
fn brute_force(row: &[f32], target: u32, protocol: Protocol, list: &[u32]) -> Vec<u32> {
    let n = row.len() as u32 - 1;
    if target == 0 || target > n {
        let mut out = vec![0; RANK_ROW];
        out[0] = RANK_SKIPPED;
        return out;
    }
    let cands: Vec<u32> = match protocol {
        Protocol::Full => (1..=n).collect(),
        Protocol::ExcludeSeen => (1..=n)
            .filter(|&i| i == target || !list.contains(&i))
            .collect(),
        Protocol::Sampled100 => std::iter::once(target)
            .chain(list.iter().copied())
            .collect(),
    };
    let t = row[target as usize];
    let rank = if t.is_nan() {
        cands.len() - 1
    } else {
        cands
            .iter()
            .filter(|&&i| i != target && row[i as usize] >= t)
            .count()
    };
    let nans = cands.iter().filter(|&&i| row[i as usize].is_nan()).count();
    let mut order = cands.clone();
    order.sort_by(|&a, &b| better(row[a as usize], row[b as usize]).then(a.cmp(&b)));
    order.resize(RANK_K.max(order.len()), 0);
    let mut out = vec![rank as u32, nans as u32];
    out.extend_from_slice(&order[..RANK_K]);
    out
}

#[test]
fn cpu_rank_op_matches_brute_force_under_every_protocol() {
    for (vocab, rows) in [
        (1, 4),
        (2, 7),
        (3, 7),
        (51, 14),
        (52, 14),
        (257, 21),
        (1000, 14),
    ] {
        let c = rank_case(vocab as u64, rows, vocab);
        for protocol in PROTOCOLS {
            let got = run_op(&c, protocol, 5);
            let (offsets, items) = lists(&c, protocol, 5);
            for r in 0..rows {
                let row = &c.scores[r * vocab..(r + 1) * vocab];
                let list = &items[offsets[r] as usize..offsets[r + 1] as usize];
                let want = brute_force(row, c.targets[r], protocol, list);
                assert_eq!(
                    &got[r * RANK_ROW..(r + 1) * RANK_ROW],
                    &want[..],
                    "{protocol}, vocab {vocab}, row {r} (pattern {})",
                    r % 7
                );
            }
        }
    }
}

#[test]
fn op_rows_give_the_accumulators_metrics_bit_for_bit() {
    let (vocab, rows, seed) = (300, 60, 11);
    let c = rank_case(3, rows, vocab);
    for protocol in PROTOCOLS {
        let mut by_user = RankingAccumulator::new(vocab - 1, protocol, seed);
        for r in 0..rows {
            let row = &c.scores[r * vocab..(r + 1) * vocab];
            by_user.add(r, row, c.targets[r], &c.histories[r]);
        }
        let mut by_op = RankingAccumulator::new(vocab - 1, protocol, seed);
        for row in run_op(&c, protocol, seed).chunks(RANK_ROW) {
            by_op.add_ranked(row[0], row[1], &row[2..]);
        }
        let (a, b) = (by_user.finish(), by_op.finish());
        assert_eq!(a, b, "{protocol}");
        assert!(a.nan_scores > 0 && a.users == rows, "{protocol}: {a:?}");
        for (x, y) in a.ndcg.iter().chain(&a.mrr).zip(b.ndcg.iter().chain(&b.mrr)) {
            assert_eq!(x.to_bits(), y.to_bits(), "{protocol}");
        }
    }
}

#[test]
fn skipped_rows_are_marked_and_refused_by_the_accumulator() {
    let c = RankCase {
        vocab: 4,
        scores: vec![0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0],
        targets: vec![0, 4],
        histories: vec![vec![], vec![]],
    };
    let out = run_op(&c, Protocol::Full, 0);
    for row in out.chunks(RANK_ROW) {
        assert_eq!(row[0], RANK_SKIPPED);
        assert!(row[1..].iter().all(|&x| x == 0));
    }
    let caught = std::panic::catch_unwind(|| {
        RankingAccumulator::new(3, Protocol::Full, 0).add_ranked(RANK_SKIPPED, 0, &[])
    });
    assert!(caught.is_err());
}
