//! Scoring a trained model on the validation or test cases of a split (DESIGN §4).

use crate::backend::Backend;
use crate::data::split::{eval_window, Case, Split};
use crate::eval::{Metrics, Protocol, RankingAccumulator};
use crate::models::{Batch, Model};
use crate::tape::Tape;
use rayon::prelude::*;

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
        drop(tape);
        let vocab = items + 1;
        // Rank the rows in parallel, each worker with its own accumulator, merged in user
        // order (the accumulator keeps each user's rank, so the sums do not depend on the
        // split between workers).
        for acc in accs.iter_mut() {
            let parts: Vec<RankingAccumulator> = chunk
                .par_iter()
                .zip(scores.par_chunks(vocab))
                .fold(
                    || acc.fresh(),
                    |mut a, (case, row)| {
                        a.add(case.user, row, case.target, case.input);
                        a
                    },
                )
                .collect();
            for p in parts {
                acc.merge(p);
            }
        }
    }
    accs.iter().map(|a| a.finish()).collect()
}
