//! Leave-one-out split and the left-padded windows the models read.
//!
//! For a user with sequence s of length L ≥ 3: training prefix s[..L−2], validation case
//! (input s[..L−2], target s[L−2]), test case (input s[..L−1], target s[L−1]). Users with
//! fewer than 3 items train on their whole sequence and are not evaluated.
//!
//! Windows are left-padded with 0 so that the newest item always sits in the last slot n − 1;
//! slots `0..start` are padding.

use super::Sequences;
use crate::error::{Error, Result};

/// Users with fewer items than this are train-only.
pub const MIN_EVAL_LEN: usize = 3;

/// One evaluation case: rank `target` given `input` (the user's history before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case<'a> {
    pub user: usize,
    pub input: &'a [u32],
    pub target: u32,
}

/// Leave-one-out view over [`Sequences`]; borrows, copies nothing.
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    seqs: &'a Sequences,
}

impl<'a> Split<'a> {
    /// Fails when no user has at least 3 items (nothing to validate or test on).
    pub fn new(seqs: &'a Sequences) -> Result<Split<'a>> {
        if !seqs.iter().any(|s| s.len() >= MIN_EVAL_LEN) {
            return Err(Error::msg(format!(
                "leave-one-out split: no user has at least {MIN_EVAL_LEN} items, so there is \
                 nothing to validate or test on"
            )));
        }
        Ok(Split { seqs })
    }

    pub fn sequences(&self) -> &'a Sequences {
        self.seqs
    }

    /// Whether user `u` has validation and test cases.
    pub fn is_evaluated(&self, u: usize) -> bool {
        self.seqs.seq(u).len() >= MIN_EVAL_LEN
    }

    /// The training prefix of user `u`: all but the last two items, or everything when the
    /// user is train-only.
    pub fn train(&self, u: usize) -> &'a [u32] {
        let s = self.seqs.seq(u);
        if s.len() >= MIN_EVAL_LEN {
            &s[..s.len() - 2]
        } else {
            s
        }
    }

    /// Validation case of user `u`: target is the second-to-last item.
    pub fn valid(&self, u: usize) -> Option<Case<'a>> {
        let s = self.seqs.seq(u);
        (s.len() >= MIN_EVAL_LEN).then(|| Case {
            user: u,
            input: &s[..s.len() - 2],
            target: s[s.len() - 2],
        })
    }

    /// Test case of user `u`: target is the last item, the input includes the validation one.
    pub fn test(&self, u: usize) -> Option<Case<'a>> {
        let s = self.seqs.seq(u);
        (s.len() >= MIN_EVAL_LEN).then(|| Case {
            user: u,
            input: &s[..s.len() - 1],
            target: s[s.len() - 1],
        })
    }

    /// Users that have validation and test cases, ascending.
    pub fn eval_users(&self) -> Vec<usize> {
        (0..self.seqs.num_users())
            .filter(|&u| self.is_evaluated(u))
            .collect()
    }
}

/// Leading pad slots of a training window of length `n` over a prefix of `prefix_len` items.
pub fn train_start(prefix_len: usize, n: usize) -> usize {
    n - prefix_len.saturating_sub(1).min(n)
}

/// Leading pad slots of an evaluation window of length `n` over `history_len` items.
pub fn eval_start(history_len: usize, n: usize) -> usize {
    n - history_len.min(n)
}

fn check_len(n: usize, bufs: &[usize]) -> Result<()> {
    if n == 0 {
        return Err(Error::arg("window length", "must be at least 1"));
    }
    if let Some(&len) = bufs.iter().find(|&&len| len != n) {
        return Err(Error::arg(
            "window length",
            format!("buffer of length {len} for a window of {n}"),
        ));
    }
    Ok(())
}

/// Training window: inputs are the last n items of `prefix[..len−1]`, targets the item after
/// each input, both left-padded with 0 (newest in slot n − 1). Returns the start (pad count).
pub fn window(prefix: &[u32], n: usize, inputs: &mut [u32], targets: &mut [u32]) -> Result<usize> {
    check_len(n, &[inputs.len(), targets.len()])?;
    let start = train_start(prefix.len(), n);
    let real = n - start;
    let from = prefix.len().saturating_sub(1) - real;
    inputs[..start].fill(0);
    targets[..start].fill(0);
    if real > 0 {
        inputs[start..].copy_from_slice(&prefix[from..from + real]);
        targets[start..].copy_from_slice(&prefix[from + 1..from + 1 + real]);
    }
    Ok(start)
}

/// Evaluation window: the last n items of `history`, left-padded with 0. Returns the start.
pub fn eval_window(history: &[u32], n: usize, inputs: &mut [u32]) -> Result<usize> {
    check_len(n, &[inputs.len()])?;
    let start = eval_start(history.len(), n);
    inputs[..start].fill(0);
    inputs[start..].copy_from_slice(&history[history.len() - (n - start)..]);
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs() -> Sequences {
        Sequences::from_lists(
            &[vec![1, 2, 3, 4, 5], vec![6, 7], vec![8], vec![1, 2, 3]],
            8,
        )
    }

    #[test]
    fn leave_one_out_cases() {
        let s = seqs();
        let sp = Split::new(&s).unwrap();
        assert_eq!(sp.train(0), &[1, 2, 3]);
        assert_eq!(
            sp.valid(0),
            Some(Case {
                user: 0,
                input: &[1, 2, 3],
                target: 4
            })
        );
        assert_eq!(
            sp.test(0),
            Some(Case {
                user: 0,
                input: &[1, 2, 3, 4],
                target: 5
            })
        );
        // Users with fewer than 3 items: train on everything, never evaluated.
        assert_eq!(sp.train(1), &[6, 7]);
        assert_eq!(sp.train(2), &[8]);
        assert_eq!((sp.valid(1), sp.test(2)), (None, None));
        // Exactly 3 items: a one-item prefix (no training pair), but evaluated.
        assert_eq!(sp.train(3), &[1]);
        assert_eq!(sp.test(3).unwrap().target, 3);
        assert_eq!(sp.eval_users(), vec![0, 3]);
    }

    #[test]
    fn no_evaluable_user_is_an_error() {
        let s = Sequences::from_lists(&[vec![1, 2], vec![3]], 3);
        assert!(Split::new(&s).unwrap_err().0.contains("at least 3 items"));
    }

    #[test]
    fn training_window_shifts_and_pads() {
        let (mut x, mut y) = ([9u32; 4], [9u32; 4]);
        assert_eq!(window(&[1, 2, 3], 4, &mut x, &mut y).unwrap(), 2);
        assert_eq!((x, y), ([0, 0, 1, 2], [0, 0, 2, 3]));
        // Longer than n: keep the newest.
        assert_eq!(window(&[1, 2, 3, 4, 5, 6], 4, &mut x, &mut y).unwrap(), 0);
        assert_eq!((x, y), ([2, 3, 4, 5], [3, 4, 5, 6]));
        // Exactly n + 1 items fill the window.
        assert_eq!(window(&[1, 2, 3, 4, 5], 4, &mut x, &mut y).unwrap(), 0);
        assert_eq!((x, y), ([1, 2, 3, 4], [2, 3, 4, 5]));
        // One item or none: all padding.
        for p in [&[7u32][..], &[]] {
            assert_eq!(window(p, 4, &mut x, &mut y).unwrap(), 4);
            assert_eq!((x, y), ([0; 4], [0; 4]));
        }
        assert_eq!(train_start(3, 4), 2);
    }

    #[test]
    fn eval_window_pads_and_truncates() {
        let mut x = [9u32; 4];
        assert_eq!(eval_window(&[5, 6], 4, &mut x).unwrap(), 2);
        assert_eq!(x, [0, 0, 5, 6]);
        assert_eq!(eval_window(&[1, 2, 3, 4, 5], 4, &mut x).unwrap(), 0);
        assert_eq!(x, [2, 3, 4, 5]);
        assert_eq!(eval_start(2, 4), 2);
    }

    #[test]
    fn n_longer_than_every_sequence() {
        let s = seqs();
        let sp = Split::new(&s).unwrap();
        let n = 50;
        let (mut x, mut y) = (vec![0; n], vec![0; n]);
        for u in 0..s.num_users() {
            let p = sp.train(u);
            let start = window(p, n, &mut x, &mut y).unwrap();
            assert_eq!(start, n - p.len().saturating_sub(1));
            assert!(x[..start].iter().chain(&y[..start]).all(|&v| v == 0));
            if let Some(c) = sp.test(u) {
                let start = eval_window(c.input, n, &mut x).unwrap();
                assert_eq!(&x[start..], c.input);
            }
        }
    }

    #[test]
    fn bad_window_lengths_are_errors() {
        assert!(window(&[1, 2], 0, &mut [], &mut []).is_err());
        assert!(eval_window(&[1, 2], 0, &mut []).is_err());
        assert!(eval_window(&[1, 2], 3, &mut [0; 2]).is_err());
        assert!(window(&[1, 2], 2, &mut [0; 2], &mut [0; 3]).is_err());
    }
}
