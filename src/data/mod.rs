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
//! `Auto` decides as follows ([`detect`] returns the choice with its reason):
//! 1. the file starts with the binary magic `PASASEQ\0` → `Binary`;
//! 2. else, if its first 64 KiB hold a NUL byte or invalid UTF-8 → an error: the file is neither
//!    text nor a pasa binary file (a binary file with a damaged magic, say), and is not parsed
//!    as text;
//! 3. else, on the first non-blank line: it contains `::` → `MlDat`; it contains `,` → `Csv`;
//!    it contains a tab and has exactly 4 whitespace-separated fields → `UData`;
//! 4. else, if more than half of the first 8 non-blank lines have exactly 2 fields → `Pairs`,
//!    otherwise `Lines`. A majority rather than all 8, so that one bad line near the top of a
//!    pairs file is reported as what it is instead of turning the file into one user per line.
//!    (A one-user-per-line file whose first users mostly have a single item is read as pairs:
//!    its first longer line is then an error that says so.)
//!
//! When a reader chosen this way fails on a line, the error names that line and ends with what
//! was assumed and why: `data.txt:5: expected 2 fields (user item), found 3 (format
//! auto-detected as pairs: 7 of the first 8 lines have 2 fields; pass --format lines for one
//! user per line)`.
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
mod overwrite;
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
pub use detect::{detect, Detected};
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
///
/// The variants' doc comments are the `--format` help: plain text, no markup.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Detect the format from the content: the binary magic, else the first lines
    #[default]
    Auto,
    /// user item per line, each user's lines together and in time order
    Pairs,
    /// user item1 item2 ..., one user per line, items in time order
    Lines,
    /// MovieLens ratings.dat: user::item::rating::timestamp
    MlDat,
    /// MovieLens u.data: user, item, rating and timestamp separated by tabs
    UData,
    /// MovieLens ratings.csv: the header userId,movieId,rating,timestamp, then one rating a line
    Csv,
    /// The binary file written by pasa data convert
    Binary,
}

impl Format {
    /// The name `--format` takes: `ml-dat`, not `MlDat`.
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
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
    load_detected(path, opts).map(|(seqs, _)| seqs)
}

/// [`load`], also returning what `Format::Auto` detected (`None` when the format was named),
/// so that the caller can tell the user what was assumed.
pub fn load_detected(path: &Path, opts: &LoadOptions) -> Result<(Sequences, Option<Detected>)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::in_file(path, "is a directory, expected a data file"));
    }
    let detected = match opts.format {
        Format::Auto => Some(detect::detect_file(path)?),
        _ => None,
    };
    let format = detected.as_ref().map_or(opts.format, |d| d.format);
    let seqs = read_as(path, format, detected.as_ref(), opts)?;
    Ok((seqs, detected))
}

fn read_as(
    path: &Path,
    format: Format,
    detected: Option<&Detected>,
    opts: &LoadOptions,
) -> Result<Sequences> {
    if format == Format::Binary {
        let seqs = read_binary(path)?;
        if opts.kcore.is_none() && !opts.renumber {
            return Ok(seqs);
        }
        let labels = (1..=seqs.num_items as u64).collect();
        return build::finish(path, seqs, labels, opts);
    }
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let src = parse::Source { path, detected };
    let raw = match format {
        Format::Pairs => parse::pairs(&src, &data)?,
        Format::Lines => parse::lines(&src, &data)?,
        Format::MlDat | Format::UData | Format::Csv => parse::timed(&src, &data, format)?,
        Format::Auto | Format::Binary => unreachable!("resolved by the caller"),
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
