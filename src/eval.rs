//! Ranking metrics for next-item prediction: HR, NDCG, MRR and catalogue coverage at K.
//!
//! One [`RankingAccumulator`] per evaluation pass: feed it each user's ranked row (the target's
//! rank, the NaN count and the top ids, as the [`Rank`](crate::backend::Rank) op computes them
//! where the scores are; the candidates from [`CandidateLists`]) or, on the host, each user's
//! scores over the whole catalogue; then [`RankingAccumulator::finish`]. Three protocols
//! (DESIGN.md §4), and every printed number carries the protocol's name. The ranking itself is
//! `src/backend/cpu/rank.rs` (and `kernels/rank.cu` on the GPU).
//!
//! Conventions, fixed here so that every caller agrees:
//! - Item ids are `1..=num_items`; index 0 of a score vector is padding and is never ranked.
//! - A rank is 0-based: rank 0 means the target came first.
//! - Ties are pessimistic: any candidate whose score equals the target's counts as ranked
//!   above it. A constant scorer therefore gets HR = 0 at every K below the candidate count,
//!   instead of being rewarded for not discriminating.
//! - NaN scores are the worst possible (below everything, `-inf` included) and are counted in
//!   [`Metrics::nan_scores`] (over the candidates each protocol ranks, target included).
//! - Top-K lists (for coverage) order by score descending, NaN last, ties by lower item id.

use std::fmt;
use std::str::FromStr;

use crate::backend::cpu::rank::{Marks, RowCandidates, RowRanker};
use crate::backend::{RANK_K, RANK_ROW, RANK_SKIPPED};
use crate::error::{Error, Result};
use crate::rng::{derive, Rng};

/// The cut-offs every metric is reported at.
pub const KS: [usize; 5] = [1, 5, 10, 20, 50];

const MAX_K: usize = KS[KS.len() - 1];
const _: () = assert!(
    MAX_K == RANK_K,
    "the rank op's top lists are the largest cut-off"
);

/// Negatives per user in the sampled protocol.
pub const SAMPLED_NEGATIVES: usize = 100;

/// Which candidates the target is ranked against.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// All items of the catalogue.
    Full,
    /// All items except those already in the user's history (the target itself stays).
    ExcludeSeen,
    /// The target and 100 uniformly drawn unseen negatives (for comparison with old papers).
    Sampled100,
}

impl Protocol {
    /// The human name printed next to every number.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Full => "full ranking",
            Protocol::ExcludeSeen => "full ranking, seen items excluded",
            Protocol::Sampled100 => "sampled: 1 positive + 100 negatives",
        }
    }
    /// A short machine key, as accepted by [`FromStr`].
    pub fn key(self) -> &'static str {
        match self {
            Protocol::Full => "full",
            Protocol::ExcludeSeen => "exclude-seen",
            Protocol::Sampled100 => "sampled100",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(Protocol::Full),
            "exclude-seen" | "exclude_seen" => Ok(Protocol::ExcludeSeen),
            "sampled100" | "sampled" => Ok(Protocol::Sampled100),
            _ => Err(Error::arg(
                "--protocol",
                format!("unknown protocol {s:?} (expected full, exclude-seen or sampled100)"),
            )),
        }
    }
}

/// The result of an evaluation pass. Index `i` of each array is the metric at `KS[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub protocol: Protocol,
    pub users: usize,
    pub hr: [f64; 5],
    pub ndcg: [f64; 5],
    pub mrr: [f64; 5],
    pub cov: [f64; 5],
    pub nan_scores: usize,
}

impl Metrics {
    /// A metric by name (`hr`, `ndcg`, `mrr`, `cov`, any case) at a K from [`KS`].
    pub fn get(&self, name: &str, k: usize) -> Option<f64> {
        let i = KS.iter().position(|&x| x == k)?;
        let arr = match name.to_ascii_lowercase().as_str() {
            "hr" => &self.hr,
            "ndcg" => &self.ndcg,
            "mrr" => &self.mrr,
            "cov" => &self.cov,
            _ => return None,
        };
        Some(arr[i])
    }

    /// `{"protocol": name, "protocol_key", "users", "nan_scores", "HR@1": .., "NDCG@1": .., ..}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("protocol".into(), self.protocol.name().into());
        m.insert("protocol_key".into(), self.protocol.key().into());
        m.insert("users".into(), self.users.into());
        m.insert("nan_scores".into(), self.nan_scores.into());
        for (i, k) in KS.iter().enumerate() {
            m.insert(format!("HR@{k}"), self.hr[i].into());
            m.insert(format!("NDCG@{k}"), self.ndcg[i].into());
            m.insert(format!("MRR@{k}"), self.mrr[i].into());
            m.insert(format!("COV@{k}"), self.cov[i].into());
        }
        serde_json::Value::Object(m)
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "metrics ({}), {} users",
            self.protocol.name(),
            self.users
        )?;
        writeln!(
            f,
            "{:>4} {:>8} {:>8} {:>8} {:>8}",
            "K", "HR", "NDCG", "MRR", "COV"
        )?;
        for (i, k) in KS.iter().enumerate() {
            writeln!(
                f,
                "{:>4} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
                k, self.hr[i], self.ndcg[i], self.mrr[i], self.cov[i]
            )?;
        }
        if self.nan_scores > 0 {
            writeln!(f, "warning: {} NaN scores (ranked last)", self.nan_scores)?;
        }
        Ok(())
    }
}

/// What each user's target is ranked against, as the [`Rank`](crate::backend::Rank) op takes
/// it: one list of item ids per user (the CSR rows of [`RowLists`](crate::backend::RowLists)).
/// The sampled negatives are drawn here, on the host, as a pure function of (seed, user,
/// history, target).
pub struct CandidateLists {
    num_items: usize,
    seed: u64,
    /// The items taken (seen, or already listed) for the current user.
    taken: Marks,
}

impl CandidateLists {
    pub fn new(num_items: usize, seed: u64) -> Self {
        CandidateLists {
            num_items,
            seed,
            taken: Marks::new(num_items + 1),
        }
    }

    /// Appends the user's list under `protocol` to `out`: nothing for `full`; for
    /// `exclude-seen` the distinct items of `history` (in its order, padding zeros, ids past
    /// the catalogue and the target left out); for `sampled100` the negatives. `history` may
    /// contain the target, duplicates and padding zeros.
    pub fn push(
        &mut self,
        protocol: Protocol,
        user: usize,
        target: u32,
        history: &[u32],
        out: &mut Vec<u32>,
    ) {
        match protocol {
            Protocol::Full => {}
            Protocol::ExcludeSeen => {
                let n = self.num_items;
                self.taken.clear();
                for &h in history {
                    let hu = h as usize;
                    if hu != 0 && hu <= n && h != target && self.taken.insert(hu) {
                        out.push(h);
                    }
                }
            }
            Protocol::Sampled100 => self.draw_negatives(user, target, history, out),
        }
    }

    /// Appends up to 100 distinct items, uniform over the items that are neither seen nor the
    /// target, as a pure function of (seed, user, history, target).
    fn draw_negatives(&mut self, user: usize, target: u32, history: &[u32], out: &mut Vec<u32>) {
        let n = self.num_items;
        self.taken.clear();
        self.taken.insert(target as usize);
        let mut blocked = 1usize;
        for &h in history {
            let hu = h as usize;
            if hu != 0 && hu <= n && self.taken.insert(hu) {
                blocked += 1;
            }
        }
        let available = n - blocked;
        let mut rng = Rng::new(derive(self.seed, user as u64));
        if available <= SAMPLED_NEGATIVES {
            // Fewer unseen items than negatives wanted: take them all.
            out.extend((1..=n as u32).filter(|&i| !self.taken.contains(i as usize)));
        } else if available * 2 >= n {
            // Rejection sampling: each draw is accepted with probability > 1/2 - 100/n.
            let mut drawn = 0;
            while drawn < SAMPLED_NEGATIVES {
                let j = rng.below(n) + 1;
                if self.taken.insert(j) {
                    out.push(j as u32);
                    drawn += 1;
                }
            }
        } else {
            // Mostly seen catalogue: list the free items and take a partial Fisher–Yates.
            let mut free: Vec<u32> = (1..=n as u32)
                .filter(|&i| !self.taken.contains(i as usize))
                .collect();
            for i in 0..SAMPLED_NEGATIVES {
                let j = i + rng.below(free.len() - i);
                free.swap(i, j);
            }
            out.extend_from_slice(&free[..SAMPLED_NEGATIVES]);
        }
    }
}

/// Accumulates per-user ranking results; see the module docs for conventions.
pub struct RankingAccumulator {
    num_items: usize,
    protocol: Protocol,
    seed: u64,
    /// Each user's rank, in the order the users were added (merges append): the means are
    /// summed in this order, so they do not depend on how the users were split between
    /// threads or batches.
    ranks: Vec<u32>,
    nan_scores: usize,
    /// Per item: best position it reached in any user's top list (`u8::MAX` = never).
    /// Top-K lists are nested, so "in some top-K" is exactly `best_pos < K`.
    best_pos: Vec<u8>,
    // Scratch of `add`, reused between calls.
    lists: CandidateLists,
    ranker: RowRanker,
    list: Vec<u32>,
    row: Vec<u32>,
}

impl RankingAccumulator {
    pub fn new(num_items: usize, protocol: Protocol, seed: u64) -> Self {
        RankingAccumulator {
            num_items,
            protocol,
            seed,
            ranks: vec![],
            nan_scores: 0,
            best_pos: vec![u8::MAX; num_items + 1],
            lists: CandidateLists::new(num_items, seed),
            ranker: RowRanker::new(num_items + 1),
            list: Vec::with_capacity(SAMPLED_NEGATIVES),
            row: vec![0; RANK_ROW],
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn users(&self) -> usize {
        self.ranks.len()
    }

    /// An empty accumulator with the same settings, for per-thread accumulation.
    pub fn fresh(&self) -> Self {
        RankingAccumulator::new(self.num_items, self.protocol, self.seed)
    }

    /// Ranks `target` for one user on the host. `scores` has `num_items + 1` entries (index 0 =
    /// padding, ignored). `history` may contain the target, duplicates and padding zeros.
    /// `user` only seeds the sampled protocol's negatives, so the same user always gets the
    /// same ones. The same as [`CandidateLists::push`], the CPU [`Rank`](crate::backend::Rank)
    /// op on one row, then [`RankingAccumulator::add_ranked`].
    ///
    /// # Panics
    /// On caller bugs: a score vector of the wrong length or a target outside `1..=num_items`.
    pub fn add(&mut self, user: usize, scores: &[f32], target: u32, history: &[u32]) {
        let n = self.num_items;
        assert_eq!(
            scores.len(),
            n + 1,
            "scores must have num_items + 1 entries"
        );
        assert!(
            target >= 1 && target as usize <= n,
            "target {target} outside 1..={n}"
        );
        self.list.clear();
        self.lists
            .push(self.protocol, user, target, history, &mut self.list);
        let cands = match self.protocol {
            Protocol::Full => RowCandidates::All,
            Protocol::ExcludeSeen => RowCandidates::Except(&self.list),
            Protocol::Sampled100 => RowCandidates::Only(&self.list),
        };
        self.ranker.rank(scores, target, cands, &mut self.row);
        let (rank, nans) = (self.row[0], self.row[1]);
        let top = std::mem::take(&mut self.row);
        self.add_ranked(rank, nans, &top[2..]);
        self.row = top;
    }

    /// Records one user ranked by the [`Rank`](crate::backend::Rank) op: the target's rank,
    /// the NaN count among the candidates and the top ids (best first; a 0 ends the list).
    ///
    /// # Panics
    /// On a row the op skipped ([`RANK_SKIPPED`]: its target was not an item).
    pub fn add_ranked(&mut self, rank: u32, nans: u32, top: &[u32]) {
        assert_ne!(
            rank, RANK_SKIPPED,
            "a row without a valid target was ranked"
        );
        self.ranks.push(rank);
        self.nan_scores += nans as usize;
        for (pos, &id) in top
            .iter()
            .take(MAX_K)
            .take_while(|&&id| id != 0)
            .enumerate()
        {
            let p = &mut self.best_pos[id as usize];
            *p = (*p).min(pos as u8);
        }
    }

    /// Appends another accumulator's users (for rayon: accumulate per chunk, then merge the
    /// chunks in order).
    ///
    /// # Panics
    /// If the two were built for different catalogues or protocols.
    pub fn merge(&mut self, other: RankingAccumulator) {
        assert_eq!(
            self.num_items, other.num_items,
            "merge: catalogue sizes differ"
        );
        assert_eq!(self.protocol, other.protocol, "merge: protocols differ");
        self.ranks.extend_from_slice(&other.ranks);
        self.nan_scores += other.nan_scores;
        for (a, b) in self.best_pos.iter_mut().zip(&other.best_pos) {
            *a = (*a).min(*b);
        }
    }

    /// Means over users (0 when no user was added) and coverage over the catalogue.
    pub fn finish(&self) -> Metrics {
        // Sums in user order (see `ranks`).
        let (mut hr, mut ndcg, mut mrr) = ([0.0f64; 5], [0.0f64; 5], [0.0f64; 5]);
        for &rank in &self.ranks {
            let gain = 1.0 / ((rank + 2) as f64).log2();
            let rr = 1.0 / (rank + 1) as f64;
            for (i, &k) in KS.iter().enumerate() {
                if (rank as usize) < k {
                    hr[i] += 1.0;
                    ndcg[i] += gain;
                    mrr[i] += rr;
                }
            }
        }
        let u = self.ranks.len().max(1) as f64;
        let mut cov = [0.0; 5];
        for (i, &k) in KS.iter().enumerate() {
            let covered = self.best_pos[1..]
                .iter()
                .filter(|&&p| (p as usize) < k)
                .count();
            cov[i] = covered as f64 / self.num_items.max(1) as f64;
        }
        Metrics {
            protocol: self.protocol,
            users: self.ranks.len(),
            hr: hr.map(|x| x / u),
            ndcg: ndcg.map(|x| x / u),
            mrr: mrr.map(|x| x / u),
            cov,
            nan_scores: self.nan_scores,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::rank::rank_key;

    use std::cmp::Ordering;

    const EPS: f64 = 1e-12;

    /// Total order on scores with NaN below everything.
    #[inline]
    fn score_cmp(a: f32, b: f32) -> Ordering {
        match (a.is_nan(), b.is_nan()) {
            (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
        }
    }

    #[test]
    fn rank_key_orders_like_scores_then_ids() {
        let vals = [
            f32::NAN,
            f32::NEG_INFINITY,
            f32::MIN,
            -1.0,
            -f32::from_bits(1),
            -0.0,
            0.0,
            f32::from_bits(1),
            1.0,
            f32::MAX,
            f32::INFINITY,
        ];
        for (i, &a) in vals.iter().enumerate() {
            for (j, &b) in vals.iter().enumerate() {
                for (ia, ib) in [(3u32, 5u32), (5, 3), (4, 4)] {
                    let want = score_cmp(a, b).then(ib.cmp(&ia));
                    let got = rank_key(a, ia).cmp(&rank_key(b, ib));
                    assert_eq!(got, want, "({a}, {ia}) vs ({b}, {ib}) [{i},{j}]");
                }
            }
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < EPS
    }

    fn one(protocol: Protocol, scores: &[f32], target: u32, history: &[u32]) -> Metrics {
        let mut acc = RankingAccumulator::new(scores.len() - 1, protocol, 7);
        acc.add(0, scores, target, history);
        acc.finish()
    }

    fn ndcg(rank: usize) -> f64 {
        1.0 / ((rank + 2) as f64).log2()
    }

    /// Checks HR/NDCG/MRR for a single user at a known 0-based rank.
    fn assert_rank(m: &Metrics, rank: usize) {
        for (i, &k) in KS.iter().enumerate() {
            let hit = rank < k;
            assert_eq!(m.hr[i], hit as u8 as f64, "HR@{k} at rank {rank}");
            let want_ndcg = if hit { ndcg(rank) } else { 0.0 };
            let want_mrr = if hit { 1.0 / (rank + 1) as f64 } else { 0.0 };
            assert!(close(m.ndcg[i], want_ndcg), "NDCG@{k}: {}", m.ndcg[i]);
            assert!(close(m.mrr[i], want_mrr), "MRR@{k}: {}", m.mrr[i]);
        }
    }

    #[test]
    fn full_ranking_hand_values() {
        // Items 1..=6; target 4 with score 0.5; items 2 and 6 score higher -> rank 2.
        let s = [0.0, 0.1, 0.9, 0.2, 0.5, 0.3, 0.7];
        let m = one(Protocol::Full, &s, 4, &[]);
        assert_rank(&m, 2);
        assert_eq!(m.hr, [0.0, 1.0, 1.0, 1.0, 1.0]);
        assert!(close(m.ndcg[1], 0.5)); // 1/log2(4)
        assert!(close(m.mrr[1], 1.0 / 3.0));
        assert_eq!(m.users, 1);
        assert_eq!(m.nan_scores, 0);
    }

    #[test]
    fn target_first_gets_full_credit() {
        let s = [0.0, 0.1, 0.2, 3.0];
        let m = one(Protocol::Full, &s, 3, &[]);
        assert_eq!(m.hr, [1.0; 5]);
        assert_eq!(m.ndcg, [1.0; 5]);
        assert_eq!(m.mrr, [1.0; 5]);
    }

    #[test]
    fn ties_are_pessimistic() {
        // Two items tie with the target at 0.5 and one beats it: rank 3.
        let s = [0.0, 0.5, 0.9, 0.5, 0.1, 0.5];
        assert_rank(&one(Protocol::Full, &s, 3, &[]), 3);
        // A constant scorer is ranked last among all 60 items: HR@50 = 0.
        let c = vec![1.0f32; 61];
        let m = one(Protocol::Full, &c, 30, &[]);
        assert_rank(&m, 59);
        assert_eq!(m.hr, [0.0; 5]);
    }

    #[test]
    fn k_larger_than_catalogue() {
        // Three items, target last: rank 2 < every K >= 5.
        let s = [0.0, 0.9, 0.8, 0.1];
        let m = one(Protocol::Full, &s, 3, &[]);
        assert_rank(&m, 2);
        assert_eq!(m.hr, [0.0, 1.0, 1.0, 1.0, 1.0]);
        // Coverage saturates at the whole catalogue.
        assert_eq!(m.cov, [1.0 / 3.0, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn padding_is_never_ranked() {
        let s = [1e30, 0.2, 0.1, 0.3];
        let m = one(Protocol::Full, &s, 3, &[]);
        assert_rank(&m, 0);
        let n = [f32::NAN, 0.2, 0.1, 0.3];
        let m = one(Protocol::Full, &n, 3, &[0, 0]);
        assert_rank(&m, 0);
        assert_eq!(m.nan_scores, 0);
        let m = one(Protocol::ExcludeSeen, &s, 1, &[0, 3]);
        assert_rank(&m, 0);
        // Coverage: only real items, best item 1 (padding excluded).
        assert!(close(m.cov[0], 1.0 / 3.0));
    }

    #[test]
    fn exclude_seen_removes_higher_scored_seen_items() {
        // Target 4 (0.5); items 2 (0.9) and 6 (0.7) beat it; 2 is in the history.
        let s = [0.0, 0.1, 0.9, 0.2, 0.5, 0.3, 0.7];
        let hist = [2, 2, 4, 1, 0];
        assert_rank(&one(Protocol::Full, &s, 4, &hist), 2);
        let m = one(Protocol::ExcludeSeen, &s, 4, &hist);
        assert_rank(&m, 1);
        // The target in its own history is still ranked, never excluded.
        let m = one(Protocol::ExcludeSeen, &s, 2, &[2]);
        assert_rank(&m, 0);
        // Candidates are {3,4,5,6} (1 and 2 seen): top-1 is 6, so COV@1 = 1/6,
        // and COV@5 covers the 4 candidates.
        let m = one(Protocol::ExcludeSeen, &s, 4, &[1, 2]);
        assert!(close(m.cov[0], 1.0 / 6.0));
        assert!(close(m.cov[1], 4.0 / 6.0));
    }

    #[test]
    fn nan_scores_rank_last_and_are_counted() {
        let s = [0.0, f32::NAN, 0.9, f32::NEG_INFINITY, 0.5];
        // Target 3 at -inf: only 2 and 4 beat it; the NaN item does not.
        let m = one(Protocol::Full, &s, 3, &[]);
        assert_rank(&m, 2);
        assert_eq!(m.nan_scores, 1);
        // A NaN target is below everything: rank 3 of 4.
        let m = one(Protocol::Full, &s, 1, &[]);
        assert_rank(&m, 3);
        // Excluding the NaN item removes it from the count too.
        let m = one(Protocol::ExcludeSeen, &s, 3, &[1]);
        assert_rank(&m, 2);
        assert_eq!(m.nan_scores, 0);
        // Top-1 is item 2 even though the NaN item has a lower id; top-5 covers all 4.
        let m = one(Protocol::Full, &s, 3, &[]);
        assert!(close(m.cov[0], 0.25));
        assert!(close(m.cov[1], 1.0));
    }

    #[test]
    fn coverage_hand_case() {
        // 10 items, three users.
        let mut acc = RankingAccumulator::new(10, Protocol::Full, 0);
        let mut s = vec![0.0f32; 11];
        // User 0: best 3, then 7 (top-5 = 3,7 then ties at 0 broken by id: 1,2,4).
        s[3] = 2.0;
        s[7] = 1.0;
        acc.add(0, &s, 3, &[]);
        // User 1: best 9, then 3.
        let mut s = vec![0.0f32; 11];
        s[9] = 5.0;
        s[3] = 4.0;
        acc.add(1, &s, 9, &[]);
        // User 2: everything ties: top-1 = item 1, top-5 = 1..=5.
        acc.add(2, &[0.0; 11], 10, &[]);
        let m = acc.finish();
        // top-1 union: {3, 9, 1}
        assert!(close(m.cov[0], 0.3));
        // top-5 union: {3,7,1,2,4} ∪ {9,3,1,2,4} ∪ {1,2,3,4,5} = {1,2,3,4,5,7,9}
        assert!(close(m.cov[1], 0.7));
        // top-10 and beyond: the whole catalogue.
        assert!(close(m.cov[2], 1.0));
        assert!(close(m.cov[4], 1.0));
        // HR: users 0 and 1 hit at rank 0; user 2 (ties) is rank 9.
        assert!(close(m.hr[0], 2.0 / 3.0));
        assert!(close(m.hr[2], 1.0));
    }

    #[test]
    fn mean_over_users() {
        let s = [0.0, 0.1, 0.9, 0.2, 0.5, 0.3, 0.7];
        let mut acc = RankingAccumulator::new(6, Protocol::Full, 0);
        acc.add(0, &s, 2, &[]); // rank 0
        acc.add(1, &s, 4, &[]); // rank 2
        let m = acc.finish();
        assert!(close(m.hr[0], 0.5));
        assert!(close(m.hr[1], 1.0));
        assert!(close(m.ndcg[1], (1.0 + 0.5) / 2.0));
        assert!(close(m.mrr[1], (1.0 + 1.0 / 3.0) / 2.0));
        assert_eq!(m.get("ndcg", 5), Some(m.ndcg[1]));
        assert_eq!(m.get("HR", 50), Some(1.0));
        assert_eq!(m.get("hr", 3), None);
        assert_eq!(m.get("auc", 5), None);
    }

    #[test]
    fn empty_accumulator_finishes_with_zeros() {
        let m = RankingAccumulator::new(5, Protocol::Full, 0).finish();
        assert_eq!(m.users, 0);
        assert_eq!(m.hr, [0.0; 5]);
        assert_eq!(m.cov, [0.0; 5]);
    }

    fn scores_for(user: usize, n: usize) -> Vec<f32> {
        let mut rng = Rng::new(1000 + user as u64);
        let mut s: Vec<f32> = (0..=n).map(|_| rng.uniform()).collect();
        s[0] = 0.0;
        s
    }

    fn sampled_negatives(acc: &mut RankingAccumulator, user: usize, t: u32, h: &[u32]) -> Vec<u32> {
        let mut out = vec![];
        acc.lists.push(Protocol::Sampled100, user, t, h, &mut out);
        out
    }

    #[test]
    fn sampled_negatives_are_reproducible_distinct_and_unseen() {
        let n = 500;
        let hist: Vec<u32> = (1..=300).step_by(2).collect(); // 150 seen items
        let mut a = RankingAccumulator::new(n, Protocol::Sampled100, 11);
        let mut b = RankingAccumulator::new(n, Protocol::Sampled100, 11);
        let na = sampled_negatives(&mut a, 3, 2, &hist);
        // Another user in between must not change user 3's draw.
        sampled_negatives(&mut b, 4, 2, &hist);
        let nb = sampled_negatives(&mut b, 3, 2, &hist);
        assert_eq!(na, nb);
        assert_eq!(na.len(), 100);
        let mut sorted = na.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 100, "negatives must be distinct");
        for &j in &na {
            assert!((1..=n as u32).contains(&j));
            assert_ne!(j, 2);
            assert!(!hist.contains(&j), "negative {j} is in the history");
        }
        // Different user or seed: a different draw.
        assert_ne!(na, sampled_negatives(&mut a, 5, 2, &hist));
        let mut c = RankingAccumulator::new(n, Protocol::Sampled100, 12);
        assert_ne!(na, sampled_negatives(&mut c, 3, 2, &hist));
    }

    #[test]
    fn sampled_negatives_when_catalogue_mostly_seen_or_tiny() {
        // 400 items, 250 seen: the Fisher–Yates branch.
        let hist: Vec<u32> = (1..=250).collect();
        let mut a = RankingAccumulator::new(400, Protocol::Sampled100, 1);
        let neg = sampled_negatives(&mut a, 0, 300, &hist);
        assert_eq!(neg, sampled_negatives(&mut a, 0, 300, &hist));
        let mut sorted = neg.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 100);
        assert!(neg.iter().all(|&j| j > 250 && j != 300 && j <= 400));
        // 50 items: every unseen non-target item is a negative.
        let mut a = RankingAccumulator::new(50, Protocol::Sampled100, 1);
        let neg = sampled_negatives(&mut a, 0, 7, &[1, 2, 3]);
        assert_eq!(neg.len(), 46);
    }

    #[test]
    fn sampled_ranks_among_the_101() {
        let n = 1000;
        let mut s = vec![0.0f32; n + 1];
        // Every item scores above the target except the target itself and the seen items:
        // the target ranks last of 101.
        for (i, x) in s.iter_mut().enumerate() {
            *x = i as f32;
        }
        s[1] = -1.0;
        let mut acc = RankingAccumulator::new(n, Protocol::Sampled100, 3);
        acc.add(0, &s, 1, &[5, 6]);
        let m = acc.finish();
        assert_rank(&m, 100);
        // Target best of all: rank 0 whatever the negatives; top-1 coverage is the target.
        s[1] = 1e9;
        let m = one_sampled(&s, 1);
        assert_rank(&m, 0);
        assert!(close(m.cov[0], 1.0 / n as f64));
        // Top-50 of 101 candidates: 50 items covered.
        assert!(close(m.cov[4], 50.0 / n as f64));
    }

    fn one_sampled(s: &[f32], target: u32) -> Metrics {
        let mut acc = RankingAccumulator::new(s.len() - 1, Protocol::Sampled100, 3);
        acc.add(0, s, target, &[]);
        acc.finish()
    }

    #[test]
    fn sampled_rank_matches_brute_force() {
        let n = 300;
        let mut acc = RankingAccumulator::new(n, Protocol::Sampled100, 9);
        let s = scores_for(0, n);
        let hist = [10, 20, 30];
        let neg = sampled_negatives(&mut acc, 0, 40, &hist);
        let want = neg.iter().filter(|&&j| s[j as usize] >= s[40]).count();
        acc.add(0, &s, 40, &hist);
        assert_rank(&acc.finish(), want);
    }

    #[test]
    fn merge_equals_sequential() {
        let n = 200;
        for protocol in [Protocol::Full, Protocol::ExcludeSeen, Protocol::Sampled100] {
            let mut seq = RankingAccumulator::new(n, protocol, 5);
            let mut parts: Vec<RankingAccumulator> = (0..3).map(|_| seq.fresh()).collect();
            for u in 0..30 {
                let mut s = scores_for(u, n);
                if u == 7 {
                    s[3] = f32::NAN;
                }
                let target = (u * 13 % n + 1) as u32;
                let hist: Vec<u32> = (0..u as u32).map(|i| (i * 7) % n as u32 + 1).collect();
                seq.add(u, &s, target, &hist);
                parts[u % 3].add(u, &s, target, &hist);
            }
            let mut merged = parts.remove(0);
            for p in parts {
                merged.merge(p);
            }
            let (a, b) = (seq.finish(), merged.finish());
            assert_eq!(a.users, b.users);
            assert_eq!(a.nan_scores, b.nan_scores);
            assert_eq!(a.hr, b.hr);
            assert_eq!(a.cov, b.cov);
            for i in 0..KS.len() {
                assert!(close(a.ndcg[i], b.ndcg[i]) && close(a.mrr[i], b.mrr[i]));
            }
        }
    }

    #[test]
    fn exclude_seen_matches_brute_force() {
        let n = 120;
        for u in 0..20 {
            let s = scores_for(u, n);
            let target = (u * 5 + 1) as u32;
            let hist: Vec<u32> = (0..40).map(|i| ((i * 17 + u * 3) % n + 1) as u32).collect();
            let cands: Vec<u32> = (1..=n as u32)
                .filter(|&i| i == target || !hist.contains(&i))
                .collect();
            let rank = cands
                .iter()
                .filter(|&&i| i != target && s[i as usize] >= s[target as usize])
                .count();
            let mut acc = RankingAccumulator::new(n, Protocol::ExcludeSeen, 0);
            acc.add(u, &s, target, &hist);
            let m = acc.finish();
            assert_rank(&m, rank);
            let mut order = cands.clone();
            order.sort_by(|&a, &b| score_cmp(s[b as usize], s[a as usize]).then(a.cmp(&b)));
            for (i, &k) in KS.iter().enumerate() {
                let covered = order.len().min(k);
                assert!(close(m.cov[i], covered as f64 / n as f64));
            }
        }
    }

    #[test]
    fn display_and_json_name_the_protocol() {
        let s = [0.0, 0.1, 0.9, 0.2];
        let m = one(Protocol::ExcludeSeen, &s, 2, &[]);
        let text = m.to_string();
        assert!(text.contains("full ranking, seen items excluded"), "{text}");
        assert!(text.contains("NDCG"));
        let j = m.to_json();
        assert_eq!(j["protocol"], "full ranking, seen items excluded");
        assert_eq!(j["HR@10"], 1.0);
        assert_eq!(j["users"], 1);
        assert_eq!("sampled100".parse::<Protocol>(), Ok(Protocol::Sampled100));
        assert!("bogus".parse::<Protocol>().is_err());
    }

    #[test]
    fn full_catalogue_is_fast() {
        // ~6000 users x 3400 items; generous bound so a loaded CI machine still passes.
        // Ascending scores are the worst case for an incremental top-K; selection must not care.
        let (users, n) = (6000, 3400);
        let random = scores_for(0, n);
        let ascending: Vec<f32> = (0..=n).map(|i| i as f32).collect();
        let hist: Vec<u32> = (1..=50).collect();
        for (pattern, base) in [("random", &random), ("ascending", &ascending)] {
            for protocol in [Protocol::Full, Protocol::ExcludeSeen, Protocol::Sampled100] {
                let t0 = std::time::Instant::now();
                let mut acc = RankingAccumulator::new(n, protocol, 0);
                for u in 0..users {
                    acc.add(u, base, (u % n + 1) as u32, &hist);
                }
                let m = acc.finish();
                let dt = t0.elapsed();
                assert_eq!(m.users, users);
                assert!(dt.as_secs_f64() < 5.0, "{protocol}, {pattern}: {dt:?}");
                eprintln!("{protocol}, {pattern} scores: {users} users x {n} items in {dt:?}");
            }
        }
    }
}
