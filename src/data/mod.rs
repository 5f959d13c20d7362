//! Interaction data: users' time-ordered item sequences, how they are read, stored and split.
//!
//! Every input ends up as [`Sequences`]: one sequence of dense item ids per user, with the maps
//! back to the original ids. DESIGN §3.
//!
//! # Formats and [`Format::Auto`]
//! Text inputs: SASRec pairs (`user item` per line, a user's lines contiguous and time-ordered),
//! one user per line (`user i1 i2 …`), MovieLens `ratings.dat` (`u::i::r::t`), `u.data`
//! (`u\ti\tr\tt`) and `ratings.csv` (header `userId,movieId,rating,timestamp`). Blank lines are
//! skipped, CRLF and a UTF-8 BOM are tolerated. Timestamped inputs are sorted by (user, time),
//! stable for ties, so users come out in ascending id order.
//!
//! `Auto` decides as follows (see [`detect`]):
//! 1. the file starts with the binary magic `PASASEQ\0` → `Binary`;
//! 2. else, on the first non-blank line: it contains `::` → `MlDat`; it contains `,` → `Csv`;
//!    it contains a tab and has exactly 4 whitespace-separated fields → `UData`;
//! 3. else, if each of the first 8 non-blank lines has exactly 2 fields → `Pairs`, otherwise
//!    `Lines`. (A one-user-per-line file whose first 8 users have one item each reads the
//!    same either way.)
//!
//! # Item numbering
//! After the optional k-core, let S be the set of input item ids that remain. If `renumber` is
//! false and S = {1, …, max S}, items keep their input ids (`num_items = max S`). Otherwise
//! items are numbered 1, 2, … in order of first appearance, scanning users in output order and
//! each user's items in sequence order. `item_ids` always maps back to the original ids. A binary
//! file read without k-core or `renumber` is returned exactly as stored; with either, its stored
//! dense ids play the role of the input ids.

mod binary;
mod build;
pub mod cli;
mod detect;
mod escape;
mod parse;
mod scan;
pub mod split;
mod stats;
pub mod synthetic;
mod validate;

use std::path::Path;

use crate::error::{Error, Result};

pub use binary::{read_binary, write_binary, MAGIC, VERSION};
pub use build::kcore;
pub use detect::detect;
pub use split::{eval_start, eval_window, train_start, window, Case, Split};
pub use stats::Stats;
pub use synthetic::{generate, SyntheticConfig};

/// Users' time-ordered item sequences. Item ids are dense, 1..=num_items; 0 is padding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sequences {
    /// `num_users + 1` offsets into `items`; user u's sequence is `items[offsets[u]..offsets[u+1]]`.
    pub offsets: Vec<usize>,
    pub items: Vec<u32>,
    pub num_items: usize,
    /// Original id of each user.
    pub user_ids: Vec<u64>,
    /// `item_ids[k - 1]` is the original id of dense item k.
    pub item_ids: Vec<u64>,
}

impl Sequences {
    pub fn num_users(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn num_interactions(&self) -> usize {
        self.items.len()
    }

    /// The time-ordered items of user `u` (0-based).
    pub fn seq(&self, u: usize) -> &[u32] {
        &self.items[self.offsets[u]..self.offsets[u + 1]]
    }

    /// Length of the longest sequence (0 when there are none).
    pub fn longest(&self) -> usize {
        self.iter().map(|s| s.len()).max().unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u32]> + '_ {
        (0..self.num_users()).map(move |u| self.seq(u))
    }

    /// Sequences from per-user lists of dense ids; users and items are their own original ids
    /// (user u gets id u + 1).
    pub fn from_lists(lists: &[Vec<u32>], num_items: usize) -> Sequences {
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        offsets.push(0);
        let mut items = Vec::new();
        for l in lists {
            items.extend_from_slice(l);
            offsets.push(items.len());
        }
        Sequences {
            offsets,
            items,
            num_items,
            user_ids: (1..=lists.len() as u64).collect(),
            item_ids: (1..=num_items as u64).collect(),
        }
    }
}

/// Which reader to use. `Auto` picks one from the file's content (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Auto,
    /// `user item` per line, each user's lines contiguous and time-ordered.
    Pairs,
    /// `user i1 i2 …`, one user per line.
    Lines,
    /// MovieLens `ratings.dat`: `user::item::rating::timestamp`.
    MlDat,
    /// MovieLens `u.data`: `user\titem\trating\ttimestamp`.
    UData,
    /// MovieLens `ratings.csv` with header `userId,movieId,rating,timestamp`.
    Csv,
    /// This crate's binary file (see [`write_binary`]).
    Binary,
}

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub format: Format,
    /// Iteratively drop users and items with fewer than k interactions until stable.
    pub kcore: Option<usize>,
    /// Always number items by first appearance, even when the input ids are already dense.
    pub renumber: bool,
}

/// Reads any supported file into [`Sequences`], then applies k-core and numbering (module docs).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Sequences> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::in_file(path, "is a directory, expected a data file"));
    }
    let format = match opts.format {
        Format::Auto => detect::detect_file(path)?,
        f => f,
    };
    if format == Format::Binary {
        let seqs = read_binary(path)?;
        if opts.kcore.is_none() && !opts.renumber {
            return Ok(seqs);
        }
        let labels = (1..=seqs.num_items as u64).collect();
        return build::finish(path, seqs, labels, opts);
    }
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let raw = match format {
        Format::Pairs => parse::pairs(path, &data)?,
        Format::Lines => parse::lines(path, &data)?,
        Format::MlDat | Format::UData | Format::Csv => parse::timed(path, &data, format)?,
        Format::Auto | Format::Binary => unreachable!("resolved above"),
    };
    let seqs = build::intern(raw);
    let labels = seqs.item_ids.clone();
    build::finish(path, seqs, labels, opts)
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A fresh path under the temp dir, unique per process and call.
    pub fn temp_path(name: &str) -> PathBuf {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("pasa-test-{}-{n}-{name}", std::process::id()))
    }

    /// Writes `contents` to a fresh temp file and returns its path.
    pub fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let p = temp_path(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}
