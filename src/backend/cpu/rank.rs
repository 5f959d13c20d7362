//! Ranking for evaluation: each row's rank of its target, its NaN count and its top-K ids,
//! under the conventions of `src/eval.rs` (ties pessimistic, NaN below everything, top lists by
//! score descending, NaN last, ties by lower id). The reference for `kernels/rank.cu`, and the
//! one ranking code of the crate: `RankingAccumulator::add` ranks through [`RowRanker`] too.

use super::real::Real;
use super::{s, Cpu, HostBuf, HostInts};
use crate::backend::{Candidates, Rank, View, RANK_K, RANK_ROW, RANK_SKIPPED};
use rayon::prelude::*;

/// The candidates of one row (the per-row form of [`Candidates`]): the ids of the row's list.
#[derive(Debug, Clone, Copy)]
pub enum RowCandidates<'a> {
    /// Every item 1..vocab.
    All,
    /// Every item except these (0, ids past the catalogue, the target and repeats are skipped).
    Except(&'a [u32]),
    /// The target and these (distinct items, none the target).
    Only(&'a [u32]),
}

/// Packs (score, id) into one integer whose natural order is the top-K order: higher score
/// first (NaN lowest, -0 equal to +0), then lower id. Integer keys make the selection cheap
/// and independent of the input order. `kernels/rank.cu` packs the same keys.
#[inline]
pub fn rank_key(score: f32, id: u32) -> u64 {
    let s = if score.is_nan() {
        0
    } else {
        // `+ 0.0` turns -0 into +0 so the two tie, as they do for the rank.
        let b = (score + 0.0).to_bits();
        if b & 0x8000_0000 != 0 {
            !b
        } else {
            b | 0x8000_0000
        }
    };
    ((s as u64) << 32) | (!id) as u64
}

/// Marks on items, all cleared at once in O(1) (an epoch counter): the exclusions of a row.
pub struct Marks {
    /// `mark[i] == epoch` means item i is marked.
    mark: Vec<u32>,
    epoch: u32,
}

impl Marks {
    /// Marks for items `0..len`, none set.
    pub fn new(len: usize) -> Self {
        Marks {
            mark: vec![0; len],
            epoch: 1,
        }
    }

    pub fn len(&self) -> usize {
        self.mark.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mark.is_empty()
    }

    /// Unmarks every item.
    pub fn clear(&mut self) {
        if self.epoch == u32::MAX {
            self.mark.fill(0);
            self.epoch = 0;
        }
        self.epoch += 1;
    }

    /// Marks item i; false when it was marked already.
    #[inline]
    pub fn insert(&mut self, i: usize) -> bool {
        let fresh = self.mark[i] != self.epoch;
        self.mark[i] = self.epoch;
        fresh
    }

    #[inline]
    pub fn contains(&self, i: usize) -> bool {
        self.mark[i] == self.epoch
    }
}

/// Ranks rows of one catalogue, with scratch reused between rows (no allocation per row).
pub struct RowRanker {
    /// The current row's excluded items.
    excluded: Marks,
    /// The candidates' [`rank_key`]s, for the top-K selection.
    keys: Vec<u64>,
}

impl RowRanker {
    /// Scratch for rows of `vocab` scores (items 1..vocab).
    pub fn new(vocab: usize) -> Self {
        RowRanker {
            excluded: Marks::new(vocab.max(1)),
            keys: Vec::with_capacity(vocab),
        }
    }

    /// Ranks `target` in one row of scores (index 0 = padding, never ranked) among `cands`
    /// and writes the [`RANK_ROW`] u32s of [`Rank::rank`] to `out`: rank, NaN count, top ids
    /// (0 past the last). A target outside 1..scores.len() gives rank [`RANK_SKIPPED`].
    pub fn rank<T: Real>(
        &mut self,
        scores: &[T],
        target: u32,
        cands: RowCandidates<'_>,
        out: &mut [u32],
    ) {
        let out = &mut out[..RANK_ROW];
        let n = scores.len().saturating_sub(1);
        if target == 0 || target as usize > n {
            out.fill(0);
            out[0] = RANK_SKIPPED;
            return;
        }
        assert!(self.excluded.len() > n, "RowRanker built for fewer items");
        let score = |i: usize| scores[i].to_f32();
        let t = score(target as usize);
        self.keys.clear();
        let (rank, nans) = match cands {
            RowCandidates::All => {
                let (mut nans, mut above) = (0usize, 0usize);
                for i in 1..=n {
                    let s = score(i);
                    nans += s.is_nan() as usize;
                    above += (s >= t) as usize;
                    self.keys.push(rank_key(s, i as u32));
                }
                if t.is_nan() {
                    (n - 1, nans)
                } else {
                    // Counts the target itself too (t >= t), hence the -1.
                    (above - 1, nans)
                }
            }
            RowCandidates::Except(list) => {
                self.excluded.clear();
                let mut excluded = 0usize;
                for &h in list {
                    let hu = h as usize;
                    if hu != 0 && hu <= n && h != target && self.excluded.insert(hu) {
                        excluded += 1;
                    }
                }
                let (mut nans, mut above) = (0usize, 0usize);
                for i in 1..=n {
                    if self.excluded.contains(i) {
                        continue;
                    }
                    let s = score(i);
                    nans += s.is_nan() as usize;
                    above += (s >= t) as usize;
                    self.keys.push(rank_key(s, i as u32));
                }
                let candidates = n - excluded;
                if t.is_nan() {
                    (candidates - 1, nans)
                } else {
                    (above - 1, nans)
                }
            }
            RowCandidates::Only(list) => {
                let mut nans = t.is_nan() as usize;
                let mut above = 0usize;
                self.keys.push(rank_key(t, target));
                for &j in list {
                    let s = score(j as usize);
                    nans += s.is_nan() as usize;
                    above += (s >= t) as usize;
                    self.keys.push(rank_key(s, j));
                }
                if t.is_nan() {
                    (list.len(), nans)
                } else {
                    (above, nans)
                }
            }
        };
        out[0] = rank as u32;
        out[1] = nans as u32;
        self.top_into(&mut out[2..]);
    }

    /// Writes the ids of the best [`RANK_K`] keys (fewer if fewer candidates), best first, 0
    /// after the last: one partial selection, then a sort of the K.
    fn top_into(&mut self, out: &mut [u32]) {
        let k = RANK_K.min(self.keys.len());
        if self.keys.len() > k {
            self.keys.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
            self.keys.truncate(k);
        }
        self.keys.sort_unstable_by(|a, b| b.cmp(a));
        for (o, &key) in out.iter_mut().zip(&self.keys) {
            *o = !(key as u32);
        }
        out[k..RANK_K].fill(0);
    }
}

/// Row r's ids of a CSR list pair.
fn row_list<'a>(offsets: &'a [u32], items: &'a [u32], r: usize) -> &'a [u32] {
    &items[offsets[r] as usize..offsets[r + 1] as usize]
}

impl<T: Real> Rank for Cpu<T> {
    fn rank(
        &self,
        scores: View<HostBuf<T>>,
        vocab: usize,
        targets: &HostInts,
        cands: Candidates<'_, HostInts>,
        out: &mut HostInts,
    ) {
        let rows = targets.len();
        let scores = s(scores);
        assert_eq!(
            scores.len(),
            rows * vocab,
            "rank: scores are not [rows, vocab]"
        );
        assert!(
            out.len() >= rows * RANK_ROW,
            "rank: output shorter than rows·RANK_ROW"
        );
        let lists = match cands {
            Candidates::All => None,
            Candidates::Except(l) | Candidates::Only(l) => {
                assert_eq!(l.offsets.len(), rows + 1, "rank: offsets are not rows + 1");
                Some((l.offsets.as_slice(), l.items.as_slice()))
            }
        };
        let row_cands = |r: usize| match (cands, lists) {
            (Candidates::Except(_), Some((o, i))) => RowCandidates::Except(row_list(o, i, r)),
            (Candidates::Only(_), Some((o, i))) => RowCandidates::Only(row_list(o, i, r)),
            _ => RowCandidates::All,
        };
        out[..rows * RANK_ROW]
            .par_chunks_mut(RANK_ROW)
            .enumerate()
            .for_each_init(
                || RowRanker::new(vocab),
                |ranker, (r, o)| {
                    let row = &scores[r * vocab..(r + 1) * vocab];
                    ranker.rank(row, targets[r], row_cands(r), o);
                },
            );
    }
}
