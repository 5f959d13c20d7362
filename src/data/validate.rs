//! The invariants of [`Sequences`], checked by the binary writer and reader.

use std::collections::HashMap;

use super::Sequences;

impl Sequences {
    /// Checks the invariants: offsets from 0 to the number of interactions, strictly increasing
    /// (every user has at least one item), one original id per user and per item, all distinct,
    /// and items in 1..=num_items. The message says which one fails, and where.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.offsets.first() != Some(&0) {
            return Err("offsets must start at 0".into());
        }
        if *self.offsets.last().unwrap() != self.items.len() {
            return Err(format!(
                "the last offset is {}, not the number of interactions {}",
                self.offsets.last().unwrap(),
                self.items.len()
            ));
        }
        if self.user_ids.len() != self.num_users() {
            return Err("user_ids does not have one id per user".into());
        }
        if self.item_ids.len() != self.num_items {
            return Err("item_ids does not have one id per item".into());
        }
        if let Some(u) = (0..self.num_users()).find(|&u| self.offsets[u] >= self.offsets[u + 1]) {
            let (a, b) = (self.offsets[u], self.offsets[u + 1]);
            return Err(match a == b {
                true => format!(
                    "user at index {u} (id {}) has no items (offsets {a}, {b})",
                    self.user_ids[u]
                ),
                false => format!("offsets decrease at user index {u} ({a}, then {b})"),
            });
        }
        if let Some(k) = self
            .items
            .iter()
            .position(|&i| i == 0 || i as usize > self.num_items)
        {
            return Err(format!(
                "item {} at position {k} is outside 1..={}",
                self.items[k], self.num_items
            ));
        }
        if let Some((a, b)) = first_repeat(&self.user_ids) {
            return Err(format!(
                "user id {} appears twice, for the users at index {a} and {b}",
                self.user_ids[a]
            ));
        }
        if let Some((a, b)) = first_repeat(&self.item_ids) {
            return Err(format!(
                "item id {} appears twice, for dense items {} and {}",
                self.item_ids[a],
                a + 1,
                b + 1
            ));
        }
        Ok(())
    }
}

/// The positions of the first id seen twice, if any.
fn first_repeat(ids: &[u64]) -> Option<(usize, usize)> {
    let mut first_at: HashMap<u64, usize> = HashMap::with_capacity(ids.len());
    ids.iter()
        .enumerate()
        .find_map(|(k, &id)| first_at.insert(id, k).map(|first| (first, k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sequences {
        let mut s = Sequences::from_lists(&[vec![1, 2], vec![3], vec![2, 1]], 3);
        s.user_ids = vec![10, 20, 30];
        s.item_ids = vec![7, 8, 9];
        s
    }

    #[test]
    fn valid_sequences_pass() {
        sample().validate().unwrap();
        Sequences::from_lists(&[], 0).validate().unwrap();
    }

    fn broken(f: impl Fn(&mut Sequences)) -> String {
        let mut s = sample();
        f(&mut s);
        s.validate().unwrap_err()
    }

    #[test]
    fn each_broken_invariant_is_named() {
        // offsets 0, 2, 3, 5 → 0, 2, 2, 5: the second user (index 1) is empty.
        assert_eq!(
            broken(|s| s.offsets[2] = 2),
            "user at index 1 (id 20) has no items (offsets 2, 2)"
        );
        assert_eq!(
            broken(|s| s.offsets[1] = 4),
            "offsets decrease at user index 1 (4, then 3)"
        );
        assert_eq!(
            broken(|s| s.user_ids[2] = 10),
            "user id 10 appears twice, for the users at index 0 and 2"
        );
        assert_eq!(
            broken(|s| s.item_ids[1] = 9),
            "item id 9 appears twice, for dense items 2 and 3"
        );
        assert_eq!(
            broken(|s| s.items[4] = 0),
            "item 0 at position 4 is outside 1..=3"
        );
        assert_eq!(broken(|s| s.offsets[0] = 1), "offsets must start at 0");
        assert!(broken(|s| s.items.push(1)).contains("last offset is 5"));
        assert!(broken(|s| {
            s.user_ids.pop();
        })
        .contains("one id per user"));
        assert!(broken(|s| s.item_ids.push(11)).contains("one id per item"));
    }
}
