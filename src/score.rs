//! Scoring a trained model on the validation or test cases of a split (DESIGN §4).

use crate::backend::{Backend, Candidates, RowLists, RANK_ROW};
use crate::data::split::{eval_window, Case, Split};
use crate::eval::{CandidateLists, Metrics, Protocol, RankingAccumulator};
use crate::models::{Batch, Model};
use crate::tape::Tape;

/// Which held-out item is ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Holdout {
    /// The second-to-last item of each user.
    Valid,
    /// The last item of each user.
    Test,
}

impl Holdout {
    pub fn name(self) -> &'static str {
        match self {
            Holdout::Valid => "valid",
            Holdout::Test => "test",
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Rank every evaluated user's held-out item under each protocol, `batch` users at a time.
///
/// The scores stay where the model computed them: the [`Rank`](crate::backend::Rank) op ranks
/// each batch there, and only each user's rank, NaN count and top-K ids come back
/// ([`RANK_ROW`] u32s per user and protocol). The candidate lists (seen items, sampled
/// negatives) are built on the host and uploaded.
pub fn evaluate<B: Backend>(
    b: &B,
    model: &Model,
    params: &B::Buf,
    split: &Split,
    holdout: Holdout,
    protocols: &[Protocol],
    batch: usize,
    seed: u64,
) -> Vec<Metrics> {
    let _range = crate::tape::Range::open(b, "evaluate");
    let n = model.cfg.n;
    let items = model.cfg.items;
    let vocab = items + 1;
    let cases: Vec<Case> = split
        .eval_users()
        .into_iter()
        .filter_map(|u| match holdout {
            Holdout::Valid => split.valid(u),
            Holdout::Test => split.test(u),
        })
        .collect();
    let mut accs: Vec<RankingAccumulator> = protocols
        .iter()
        .map(|&p| RankingAccumulator::new(items, p, seed))
        .collect();
    let mut lists = CandidateLists::new(items, seed);
    let (mut offsets, mut list) = (Vec::new(), Vec::new());
    for chunk in cases.chunks(batch.max(1)) {
        let mut inputs = vec![0u32; chunk.len() * n];
        let mut start = vec![0u32; chunk.len()];
        for (row, case) in chunk.iter().enumerate() {
            let s = eval_window(case.input, n, &mut inputs[row * n..(row + 1) * n])
                .expect("window length checked when the model was built");
            start[row] = s as u32;
        }
        let batch = Batch {
            targets: vec![0; inputs.len()],
            inputs,
            start,
        };
        let mut tape = Tape::new(b, params, false);
        let scores = model.score_last(&mut tape, &batch);
        let targets: Vec<u32> = chunk.iter().map(|c| c.target).collect();
        let targets = b.upload_u32(&targets);
        let mut ranked = b.alloc_u32(chunk.len() * RANK_ROW);
        for acc in accs.iter_mut() {
            let protocol = acc.protocol();
            let uploaded = (protocol != Protocol::Full).then(|| {
                offsets.clear();
                list.clear();
                offsets.push(0u32);
                for case in chunk {
                    lists.push(protocol, case.user, case.target, case.input, &mut list);
                    offsets.push(list.len() as u32);
                }
                (b.upload_u32(&offsets), b.upload_u32(&list))
            });
            let cands = match (protocol, &uploaded) {
                (Protocol::ExcludeSeen, Some((offsets, items))) => {
                    Candidates::Except(RowLists { offsets, items })
                }
                (Protocol::Sampled100, Some((offsets, items))) => {
                    Candidates::Only(RowLists { offsets, items })
                }
                _ => Candidates::All,
            };
            b.rank(tape.view(scores), vocab, &targets, cands, &mut ranked);
            // In user order: the accumulator sums in the order users are added.
            for row in b.download_u32(&ranked).chunks_exact(RANK_ROW) {
                acc.add_ranked(row[0], row[1], &row[2..]);
            }
        }
    }
    accs.iter().map(|a| a.finish()).collect()
}
