//! From parsed ids to [`Sequences`]: dense interning, k-core filtering, final numbering.

use std::collections::HashMap;
use std::path::Path;

use super::parse::Raw;
use super::{LoadOptions, Sequences};
use crate::error::{Error, Result};

/// Largest original id looked up through a flat table rather than a hash map.
const FLAT_TABLE_MAX: u64 = 1 << 24;

/// Numbers items by first appearance; `item_ids` holds the original ids.
pub(crate) fn intern(raw: Raw) -> Sequences {
    let mut item_ids: Vec<u64> = Vec::new();
    let max = raw.items.iter().copied().max().unwrap_or(0);
    let items: Vec<u32> = if max <= FLAT_TABLE_MAX {
        let mut table = vec![0u32; max as usize + 1];
        raw.items
            .iter()
            .map(|&o| {
                let slot = &mut table[o as usize];
                if *slot == 0 {
                    item_ids.push(o);
                    *slot = item_ids.len() as u32;
                }
                *slot
            })
            .collect()
    } else {
        let mut map: HashMap<u64, u32> = HashMap::new();
        raw.items
            .iter()
            .map(|&o| {
                *map.entry(o).or_insert_with(|| {
                    item_ids.push(o);
                    item_ids.len() as u32
                })
            })
            .collect()
    };
    Sequences {
        offsets: raw.offsets,
        items,
        num_items: item_ids.len(),
        user_ids: raw.user_ids,
        item_ids,
    }
}

/// Drops users and items with fewer than `k` interactions, repeatedly, until none is left to
/// drop. Repeats of an item within a sequence each count. Item numbering is unchanged, so some
/// ids may no longer appear.
pub fn kcore(seqs: &Sequences, k: usize) -> Sequences {
    let mut user_alive = vec![true; seqs.num_users()];
    let mut item_alive = vec![true; seqs.num_items + 1];
    let mut count = vec![0usize; seqs.num_items + 1];
    loop {
        let mut changed = false;
        count.fill(0);
        for u in (0..seqs.num_users()).filter(|&u| user_alive[u]) {
            for &i in seqs.seq(u) {
                count[i as usize] += 1;
            }
        }
        for i in 1..=seqs.num_items {
            if item_alive[i] && count[i] < k {
                item_alive[i] = false;
                changed = true;
            }
        }
        for (u, alive) in user_alive.iter_mut().enumerate() {
            if *alive
                && seqs
                    .seq(u)
                    .iter()
                    .filter(|&&i| item_alive[i as usize])
                    .count()
                    < k
            {
                *alive = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut out = Sequences {
        offsets: vec![0],
        num_items: seqs.num_items,
        item_ids: seqs.item_ids.clone(),
        ..Sequences::default()
    };
    for u in (0..seqs.num_users()).filter(|&u| user_alive[u]) {
        let kept = seqs.seq(u).iter().filter(|&&i| item_alive[i as usize]);
        out.items.extend(kept);
        out.offsets.push(out.items.len());
        out.user_ids.push(seqs.user_ids[u]);
    }
    out
}

/// Renumbers the items that appear by first appearance (dropping those that do not); returns,
/// for each new id k, the old id at index k − 1.
pub(crate) fn renumber_by_first_appearance(seqs: &mut Sequences) -> Vec<u32> {
    let mut new_of = vec![0u32; seqs.num_items + 1];
    let mut old_of = Vec::new();
    for i in seqs.items.iter_mut() {
        let slot = &mut new_of[*i as usize];
        if *slot == 0 {
            old_of.push(*i);
            *slot = old_of.len() as u32;
        }
        *i = *slot;
    }
    seqs.item_ids = old_of
        .iter()
        .map(|&o| seqs.item_ids[o as usize - 1])
        .collect();
    seqs.num_items = old_of.len();
    old_of
}

/// Applies k-core and the numbering rule. `labels[k − 1]` is the input id of dense item k: the
/// original id for text inputs, the stored id for binary ones.
pub(crate) fn finish(
    path: &Path,
    mut seqs: Sequences,
    labels: Vec<u64>,
    opts: &LoadOptions,
) -> Result<Sequences> {
    if let Some(k) = opts.kcore {
        if k == 0 {
            return Err(Error::arg("--kcore", "must be at least 1"));
        }
        seqs = kcore(&seqs, k);
        if seqs.num_interactions() == 0 {
            return Err(Error::in_file(
                path,
                format!("no interactions are left after the {k}-core filter"),
            ));
        }
    }
    let old_of = renumber_by_first_appearance(&mut seqs);
    let labels: Vec<u64> = old_of.iter().map(|&o| labels[o as usize - 1]).collect();
    let max = labels.iter().copied().max().unwrap_or(0);
    // Labels are distinct, so they are exactly 1..=max when none is 0 and max is their count.
    let dense = max == labels.len() as u64 && !labels.contains(&0);
    if dense && !opts.renumber {
        let mut item_ids = vec![0u64; labels.len()];
        for (k, &l) in labels.iter().enumerate() {
            item_ids[l as usize - 1] = seqs.item_ids[k];
        }
        for i in seqs.items.iter_mut() {
            *i = labels[*i as usize - 1] as u32;
        }
        seqs.item_ids = item_ids;
    }
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(s: &Sequences) -> Vec<Vec<u32>> {
        s.iter().map(|x| x.to_vec()).collect()
    }

    fn raw(users: &[(u64, &[u64])]) -> Raw {
        let mut r = Raw {
            offsets: vec![0],
            ..Raw::default()
        };
        for (u, items) in users {
            r.items.extend_from_slice(items);
            r.offsets.push(r.items.len());
            r.user_ids.push(*u);
        }
        r
    }

    fn opts(kcore: Option<usize>, renumber: bool) -> LoadOptions {
        LoadOptions {
            kcore,
            renumber,
            ..LoadOptions::default()
        }
    }

    fn run(r: Raw, o: &LoadOptions) -> Sequences {
        let s = intern(r);
        let labels = s.item_ids.clone();
        let out = finish(Path::new("t"), s, labels, o).unwrap();
        out.validate().unwrap();
        out
    }

    #[test]
    fn dense_ids_are_kept_unless_renumber() {
        let r = || raw(&[(1, &[3, 1]), (2, &[2, 3])]);
        let kept = run(r(), &opts(None, false));
        assert_eq!(lists(&kept), vec![vec![3, 1], vec![2, 3]]);
        assert_eq!(kept.item_ids, vec![1, 2, 3]);
        let renum = run(r(), &opts(None, true));
        assert_eq!(lists(&renum), vec![vec![1, 2], vec![3, 1]]);
        assert_eq!(renum.item_ids, vec![3, 1, 2]);
    }

    #[test]
    fn sparse_ids_are_numbered_by_first_appearance() {
        let s = run(raw(&[(9, &[40, 7]), (4, &[7, 100])]), &opts(None, false));
        assert_eq!(lists(&s), vec![vec![1, 2], vec![2, 3]]);
        assert_eq!(s.item_ids, vec![40, 7, 100]);
        assert_eq!(s.user_ids, vec![9, 4]);
        assert_eq!(s.num_items, 3);
    }

    #[test]
    fn kcore_by_hand() {
        // k = 2. Item 5 appears once → dropped; then user 3 has only item 4 → dropped; then
        // item 4 has one interaction left (user 2) → dropped; user 2 keeps [1, 2].
        let r = raw(&[
            (1, &[1, 2, 1]),
            (2, &[4, 1, 2]),
            (3, &[4, 5]),
            (4, &[6, 6, 2]),
        ]);
        let s = run(r, &opts(Some(2), false));
        // Survivors: user 1 [1,2,1], user 2 [1,2], user 4 [6,6,2]. Original ids 1, 2, 6 are not
        // dense, so first appearance numbering: 1→1, 2→2, 6→3.
        assert_eq!(s.user_ids, vec![1, 2, 4]);
        assert_eq!(lists(&s), vec![vec![1, 2, 1], vec![1, 2], vec![3, 3, 2]]);
        assert_eq!(s.item_ids, vec![1, 2, 6]);
    }

    /// Whatever k-core keeps and however items are numbered, the result is something the binary
    /// writer accepts: no user without items, no original id twice.
    #[test]
    fn kcore_and_numbering_keep_the_invariants() {
        use crate::rng::Rng;
        for seed in 0..300u64 {
            let mut rng = Rng::new(seed);
            let users: Vec<(u64, Vec<u64>)> = (0..1 + rng.below(8))
                .map(|u| {
                    let len = 1 + rng.below(6);
                    let items = (0..len).map(|_| [1, 2, 3, 5, 40][rng.below(5)]).collect();
                    (10 * u as u64 + 7, items)
                })
                .collect();
            let lists: Vec<(u64, &[u64])> = users.iter().map(|(u, s)| (*u, &s[..])).collect();
            for k in [None, Some(1), Some(2), Some(3)] {
                for renumber in [false, true] {
                    let s = intern(raw(&lists));
                    let labels = s.item_ids.clone();
                    match finish(Path::new("t"), s, labels, &opts(k, renumber)) {
                        Ok(out) => out
                            .validate()
                            .unwrap_or_else(|e| panic!("seed {seed}: {e}")),
                        Err(e) => assert!(e.0.contains("no interactions are left"), "{e}"),
                    }
                }
            }
        }
    }

    #[test]
    fn kcore_that_empties_everything_is_an_error() {
        let s = intern(raw(&[(1, &[1, 2])]));
        let labels = s.item_ids.clone();
        let e = finish(Path::new("f.txt"), s, labels, &opts(Some(3), false)).unwrap_err();
        assert!(e.0.starts_with("f.txt: "), "{e}");
        let s = intern(raw(&[(1, &[1])]));
        assert!(finish(Path::new("f"), s, vec![1], &opts(Some(0), false)).is_err());
    }
}
