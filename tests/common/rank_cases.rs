//! Random inputs of the rank op (tests/rank.rs, tests/parity.rs): score rows full of ties, NaNs,
//! ±inf and ±0, targets (NaN ones too), raw histories with repeats, padding zeros, ids past
//! the catalogue and the target itself, and the candidate lists the host builds from them.
#![allow(dead_code)]

use pasa::backend::{Backend, Candidates, DeviceBuf, RowLists, RANK_ROW};
use pasa::eval::{CandidateLists, Protocol};
use pasa::rng::Rng;

pub const PROTOCOLS: [Protocol; 3] = [Protocol::Full, Protocol::ExcludeSeen, Protocol::Sampled100];

/// Rows of scores over `vocab` columns (column 0 the padding item) with a target each.
pub struct RankCase {
    pub vocab: usize,
    pub scores: Vec<f32>,
    pub targets: Vec<u32>,
    pub histories: Vec<Vec<u32>>,
}

/// The values ties and specials are drawn from.
const SPECIALS: [f32; 9] = [
    f32::NAN,
    f32::NEG_INFINITY,
    f32::INFINITY,
    -0.0,
    0.0,
    1.0,
    -1.0,
    0.5,
    f32::MIN_POSITIVE,
];

/// `rows` rows; row r's pattern is r % 7: random normals with a few specials, every score
/// equal, few distinct levels (many ties), a NaN target, every score NaN, ascending scores,
/// ±0 and ±inf only. Targets are items (1..vocab) except when `vocab` is 1, where none exists
/// and the targets are 0 and 1 (rows the op skips).
pub fn rank_case(seed: u64, rows: usize, vocab: usize) -> RankCase {
    let mut rng = Rng::new(seed);
    let mut scores = vec![0.0f32; rows * vocab];
    let mut targets = vec![0u32; rows];
    let mut histories = vec![];
    for r in 0..rows {
        let row = &mut scores[r * vocab..(r + 1) * vocab];
        let pattern = r % 7;
        for (i, s) in row.iter_mut().enumerate() {
            *s = match pattern {
                0 if rng.below(8) == 0 => SPECIALS[rng.below(SPECIALS.len())],
                0 | 3 => rng.normal(),
                1 => 0.25,
                2 => (rng.below(4) as f32) * 0.5,
                4 => f32::NAN,
                5 => i as f32,
                _ => SPECIALS[1 + rng.below(4)],
            };
        }
        let target = if vocab > 1 {
            1 + rng.below(vocab - 1) as u32
        } else {
            (r % 2) as u32
        };
        if pattern == 3 && vocab > 1 {
            row[target as usize] = f32::NAN;
        }
        // Padding never counts: give it the best score.
        row[0] = f32::INFINITY;
        targets[r] = target;
        let len = rng.below((3 * vocab).min(300) + 1);
        let mut h: Vec<u32> = (0..len).map(|_| rng.below(vocab + 2) as u32).collect();
        if r % 3 == 0 {
            h.push(target);
        }
        histories.push(h);
    }
    RankCase {
        vocab,
        scores,
        targets,
        histories,
    }
}

/// The CSR candidate lists of `protocol` (none for `full`), as `score::evaluate` builds them;
/// row r is user r. Rows whose target is not an item get an empty list.
pub fn lists(c: &RankCase, protocol: Protocol, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let items = c.vocab.saturating_sub(1);
    let mut host = CandidateLists::new(items, seed);
    let (mut offsets, mut list) = (vec![0u32], vec![]);
    for (r, (&t, h)) in c.targets.iter().zip(&c.histories).enumerate() {
        if t >= 1 && (t as usize) <= items {
            host.push(protocol, r, t, h, &mut list);
        }
        offsets.push(list.len() as u32);
    }
    (offsets, list)
}

/// The rank op's rows for every row of `c` under `protocol` on backend `b`, the output
/// poisoned before (so every element must be written).
pub fn run_rank<B: Backend>(b: &B, c: &RankCase, protocol: Protocol, seed: u64) -> Vec<u32> {
    let (offsets, items) = lists(c, protocol, seed);
    let scores = b.upload(&c.scores);
    let targets = b.upload_u32(&c.targets);
    let (offsets, items) = (b.upload_u32(&offsets), b.upload_u32(&items));
    let rows = RowLists {
        offsets: &offsets,
        items: &items,
    };
    let cands = match protocol {
        Protocol::Full => Candidates::All,
        Protocol::ExcludeSeen => Candidates::Except(rows),
        Protocol::Sampled100 => Candidates::Only(rows),
    };
    let mut out = b.upload_u32(&vec![0xDEAD_BEEF; c.targets.len() * RANK_ROW]);
    b.rank(scores.view(), c.vocab, &targets, cands, &mut out);
    b.download_u32(&out)
}
