//! Summary counts and the distribution of sequence lengths.

use std::fmt;

use super::Sequences;

#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub len_min: usize,
    pub len_p25: usize,
    pub len_p50: usize,
    pub len_p75: usize,
    pub len_p90: usize,
    pub len_p99: usize,
    pub len_max: usize,
    pub len_mean: f64,
}

impl Stats {
    pub fn of(seqs: &Sequences) -> Stats {
        let mut lens: Vec<usize> = seqs.iter().map(<[u32]>::len).collect();
        lens.sort_unstable();
        // Nearest-rank percentile: the smallest length with at least q of the users at or below.
        let pct = |q: f64| -> usize {
            if lens.is_empty() {
                return 0;
            }
            let rank = (q * lens.len() as f64).ceil() as usize;
            lens[rank.clamp(1, lens.len()) - 1]
        };
        Stats {
            users: seqs.num_users(),
            items: seqs.num_items,
            interactions: seqs.num_interactions(),
            len_min: lens.first().copied().unwrap_or(0),
            len_p25: pct(0.25),
            len_p50: pct(0.50),
            len_p75: pct(0.75),
            len_p90: pct(0.90),
            len_p99: pct(0.99),
            len_max: lens.last().copied().unwrap_or(0),
            len_mean: seqs.num_interactions() as f64 / seqs.num_users().max(1) as f64,
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: [(&str, String); 11] = [
            ("users", self.users.to_string()),
            ("items", self.items.to_string()),
            ("interactions", self.interactions.to_string()),
            ("length min", self.len_min.to_string()),
            ("length p25", self.len_p25.to_string()),
            ("length p50", self.len_p50.to_string()),
            ("length p75", self.len_p75.to_string()),
            ("length p90", self.len_p90.to_string()),
            ("length p99", self.len_p99.to_string()),
            ("length max", self.len_max.to_string()),
            ("length mean", format!("{:.2}", self.len_mean)),
        ];
        let width = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        for (name, value) in rows {
            writeln!(f, "{name:<14}{value:>width$}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_table() {
        let lists: Vec<Vec<u32>> = (1..=100).map(|n| vec![1; n]).collect();
        let s = Stats::of(&Sequences::from_lists(&lists, 1));
        assert_eq!((s.users, s.items, s.interactions), (100, 1, 5050));
        assert_eq!((s.len_min, s.len_p25, s.len_p50), (1, 25, 50));
        assert_eq!((s.len_p90, s.len_p99, s.len_max), (90, 99, 100));
        assert_eq!(s.len_mean, 50.5);
        let table = s.to_string();
        assert!(table.contains("interactions   5050\n"), "{table}");
        assert!(table.contains("length mean   50.50\n"), "{table}");
        let widths: Vec<usize> = table.lines().map(str::len).collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "aligned: {table}");
    }

    #[test]
    fn empty_sequences() {
        let s = Stats::of(&Sequences::from_lists(&[], 0));
        assert_eq!((s.users, s.len_max, s.len_mean), (0, 0, 0.0));
    }
}
