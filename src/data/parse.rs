//! Text parsers: each turns a file's bytes into per-user sequences of original ids.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::detect::Detected;
use super::escape;
use super::scan::{bad_id, content_lines, is_number, parse_i64, parse_u64, split_on, ws_fields};
use super::Format;
use crate::error::{Error, Result};

/// Per-user sequences of original item ids, before numbering.
#[derive(Debug, Default)]
pub(crate) struct Raw {
    pub user_ids: Vec<u64>,
    pub offsets: Vec<usize>,
    pub items: Vec<u64>,
}

impl Raw {
    fn new() -> Raw {
        Raw {
            offsets: vec![0],
            ..Raw::default()
        }
    }
    fn close_user(&mut self, user: u64) {
        self.user_ids.push(user);
        self.offsets.push(self.items.len());
    }
}

/// The file a parser reads and, when `Format::Auto` chose the parser, why: every line error
/// then says what was assumed, since a wrong guess is the likeliest cause.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub detected: Option<&'a Detected>,
}

impl Source<'_> {
    fn at_line(&self, line: usize, m: impl fmt::Display) -> Error {
        match self.detected {
            Some(d) => Error::at_line(self.path, line, format!("{m} ({})", d.note())),
            None => Error::at_line(self.path, line, m),
        }
    }

    fn id(&self, line: usize, what: &str, f: &[u8]) -> Result<u64> {
        parse_u64(f).ok_or_else(|| self.at_line(line, bad_id(what, f)))
    }

    fn empty(&self) -> Error {
        Error::in_file(self.path, "empty file (no interactions)")
    }
}

/// Tracks the line where each user was first seen, to reject a user that comes back.
struct SeenUsers(HashMap<u64, usize>);

impl SeenUsers {
    fn check(&mut self, src: &Source, line: usize, user: u64, why: &str) -> Result<()> {
        if let Some(first) = self.0.insert(user, line) {
            return Err(src.at_line(
                line,
                format!("user {user} already appeared at line {first}; {why}"),
            ));
        }
        Ok(())
    }
}

/// SASRec pairs: `user item` per line, a user's lines contiguous and in time order.
pub(crate) fn pairs(src: &Source, data: &[u8]) -> Result<Raw> {
    let mut raw = Raw::new();
    let mut seen = SeenUsers(HashMap::new());
    let mut current: Option<u64> = None;
    for (line, l) in content_lines(data) {
        let mut f = ws_fields(l);
        let (u, i) = match (f.next(), f.next(), f.next()) {
            (Some(u), Some(i), None) => (u, i),
            _ => {
                let found = ws_fields(l).count();
                return Err(src.at_line(
                    line,
                    format!("expected 2 fields (user item), found {found}"),
                ));
            }
        };
        let user = src.id(line, "user id", u)?;
        let item = src.id(line, "item id", i)?;
        if current != Some(user) {
            if let Some(prev) = current {
                raw.close_user(prev);
            }
            seen.check(
                src,
                line,
                user,
                "a pairs file keeps each user's lines together",
            )?;
            current = Some(user);
        }
        raw.items.push(item);
    }
    match current {
        Some(u) => raw.close_user(u),
        None => return Err(src.empty()),
    }
    Ok(raw)
}

/// One user per line: `user i1 i2 …` in time order.
pub(crate) fn lines(src: &Source, data: &[u8]) -> Result<Raw> {
    let mut raw = Raw::new();
    let mut seen = SeenUsers(HashMap::new());
    for (line, l) in content_lines(data) {
        let mut f = ws_fields(l);
        let user = src.id(line, "user id", f.next().unwrap_or_default())?;
        let before = raw.items.len();
        for i in f {
            raw.items.push(src.id(line, "item id", i)?);
        }
        if raw.items.len() == before {
            return Err(src.at_line(line, "expected 'user item1 item2 …', found no items"));
        }
        seen.check(
            src,
            line,
            user,
            "a file with one user per line lists each user once",
        )?;
        raw.close_user(user);
    }
    if raw.user_ids.is_empty() {
        return Err(src.empty());
    }
    Ok(raw)
}

/// The expected `ratings.csv` header.
const CSV_HEADER: &[u8] = b"userId,movieId,rating,timestamp";

/// Timestamped ratings (`ratings.dat`, `u.data`, `ratings.csv`), sorted by (user, time).
pub(crate) fn timed(src: &Source, data: &[u8], format: Format) -> Result<Raw> {
    let (sep, shape): (&[u8], &str) = match format {
        Format::MlDat => (b"::", "'user::item::rating::timestamp'"),
        Format::UData => (b"\t", "'user<TAB>item<TAB>rating<TAB>timestamp'"),
        Format::Csv => (b",", "'userId,movieId,rating,timestamp'"),
        _ => unreachable!("not a timestamped format"),
    };
    let mut lines = content_lines(data);
    if format == Format::Csv {
        match lines.next() {
            Some((_, h)) if h.trim_ascii() == CSV_HEADER => {}
            Some((line, _)) => {
                return Err(src.at_line(
                    line,
                    "expected the header 'userId,movieId,rating,timestamp'",
                ))
            }
            None => return Err(src.empty()),
        }
    }
    // (user, time, item); the stable sort keeps file order for equal timestamps.
    let mut recs: Vec<(u64, i64, u64)> = Vec::with_capacity(data.len() / 20);
    let mut f: [&[u8]; 4] = [&[]; 4];
    for (line, l) in lines {
        let found = split_on(l, sep, &mut f);
        if found != 4 {
            return Err(src.at_line(line, format!("expected 4 fields {shape}, found {found}")));
        }
        let user = src.id(line, "user id", f[0].trim_ascii())?;
        let item = src.id(line, "item id", f[1].trim_ascii())?;
        if !is_number(f[2]) {
            return Err(src.at_line(
                line,
                format!("rating '{}' is not a number", escape::field(f[2])),
            ));
        }
        let time = parse_i64(f[3].trim_ascii()).ok_or_else(|| {
            src.at_line(
                line,
                format!("timestamp '{}' is not an integer", escape::field(f[3])),
            )
        })?;
        recs.push((user, time, item));
    }
    if recs.is_empty() {
        return Err(src.empty());
    }
    recs.sort_by_key(|&(u, t, _)| (u, t));
    let mut raw = Raw::new();
    raw.items.reserve(recs.len());
    for (k, &(u, _, i)) in recs.iter().enumerate() {
        if k > 0 && recs[k - 1].0 != u {
            raw.close_user(recs[k - 1].0);
        }
        raw.items.push(i);
    }
    raw.close_user(recs.last().unwrap().0);
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::temp_file;

    fn seqs(raw: &Raw) -> Vec<(u64, Vec<u64>)> {
        (0..raw.user_ids.len())
            .map(|u| {
                let s = &raw.items[raw.offsets[u]..raw.offsets[u + 1]];
                (raw.user_ids[u], s.to_vec())
            })
            .collect()
    }

    /// A file whose format was named, not detected.
    fn named<P: AsRef<Path> + ?Sized>(p: &P) -> Source<'_> {
        Source {
            path: p.as_ref(),
            detected: None,
        }
    }

    /// Parses `text` with `f` and returns the error, asserting it names the file and `line`.
    fn err_at(text: &str, line: usize, f: impl Fn(&Source, &[u8]) -> Result<Raw>) -> String {
        let p = temp_file("bad.txt", text.as_bytes());
        let e = f(&named(&p), text.as_bytes()).unwrap_err().0;
        let at = format!("{}:{line}: ", p.display());
        assert!(e.starts_with(&at), "{e:?} should start with {at:?}");
        assert!(!e.contains('\n'), "one line: {e:?}");
        e
    }

    #[test]
    fn pairs_group_contiguous_users() {
        let raw = pairs(&named("x"), b"1 10\n1 11\n\n2 10  \r\n3 12\n").unwrap();
        assert_eq!(
            seqs(&raw),
            vec![(1, vec![10, 11]), (2, vec![10]), (3, vec![12])]
        );
    }

    #[test]
    fn pairs_bad_inputs_name_file_and_line() {
        assert!(
            err_at("1 2\n1 2 3\n", 2, pairs).ends_with("expected 2 fields (user item), found 3")
        );
        assert!(err_at("1 2\n1\n", 2, pairs).ends_with("found 1"));
        assert!(err_at("1 2\n1 x\n", 2, pairs).contains("item id 'x'"));
        assert!(err_at("1 2\n-1 2\n", 2, pairs).contains("negative user id"));
        assert!(err_at("1 2\n2 2\n1 3\n", 3, pairs).contains("already appeared at line 1"));
    }

    #[test]
    fn a_detected_format_is_named_in_line_errors() {
        let text = b"1 2\n1 3\n1 4 5\n";
        let d = super::super::detect(text).unwrap();
        let src = Source {
            path: Path::new("d.txt"),
            detected: Some(&d),
        };
        assert_eq!(
            pairs(&src, text).unwrap_err().0,
            "d.txt:3: expected 2 fields (user item), found 3 (format auto-detected as pairs: 2 \
             of the first 3 lines have 2 fields; pass --format lines for one user per line)"
        );
        // A file-level error is not about the guess.
        let e = pairs(&src, b"\n").unwrap_err().0;
        assert_eq!(e, "d.txt: empty file (no interactions)");
    }

    #[test]
    fn bytes_from_the_file_are_escaped_in_errors() {
        let e = err_at("1 2\n1 \u{1b}[2J\n", 2, pairs);
        assert!(
            e.ends_with(r"item id '\u{1b}[2J' is not a non-negative integer"),
            "{e}"
        );
        let e = err_at("1 2\n1 2\0\n", 2, pairs);
        assert!(
            e.ends_with(r"item id '2\0' is not a non-negative integer"),
            "{e}"
        );
        let e = timed(&named("x"), b"1::2::\xff\x07::4\n", Format::MlDat)
            .unwrap_err()
            .0;
        assert_eq!(e, r"x:1: rating '\xff\u{7}' is not a number");
        let e = timed(&named("x"), b"1::2::3::\x00\n", Format::MlDat)
            .unwrap_err()
            .0;
        assert_eq!(e, r"x:1: timestamp '\0' is not an integer");
    }

    #[test]
    fn lines_one_user_per_line() {
        let raw = lines(&named("x"), b"5 1 2 3\n7 2\n").unwrap();
        assert_eq!(seqs(&raw), vec![(5, vec![1, 2, 3]), (7, vec![2])]);
        assert!(err_at("1 2 3\n2\n", 2, lines).contains("no items"));
        assert!(err_at("1 2 3\n2 4 -5\n", 2, lines).contains("negative item id"));
        assert!(err_at("1 2\n1 3\n", 2, lines).contains("already appeared"));
    }

    #[test]
    fn ratings_dat_sorted_by_user_then_time_stably() {
        let text = b"2::5::3::100\n1::7::4::50\n1::8::4::40\n1::9::1::50\n";
        let raw = timed(&named("x"), text, Format::MlDat).unwrap();
        assert_eq!(seqs(&raw), vec![(1, vec![8, 7, 9]), (2, vec![5])]);
        let bad = |p: &Source, d: &[u8]| timed(p, d, Format::MlDat);
        assert!(err_at("1::2::3::4\n1::2::3\n", 2, bad).contains("4 fields"));
        assert!(err_at("1::2::3::4\n1::b::3::4\n", 2, bad).contains("item id 'b'"));
        assert!(err_at("1::2::3::4\n1::2::x::4\n", 2, bad).contains("rating"));
        assert!(err_at("1::2::3::4\n1::2::3::t\n", 2, bad).contains("timestamp"));
    }

    #[test]
    fn u_data_tab_separated() {
        let text = b"3\t1\t5\t9\n3\t2\t5\t8\n1\t4\t2\t1\n";
        let raw = timed(&named("x"), text, Format::UData).unwrap();
        assert_eq!(seqs(&raw), vec![(1, vec![4]), (3, vec![2, 1])]);
        let bad = |p: &Source, d: &[u8]| timed(p, d, Format::UData);
        assert!(err_at("1\t2\t3\t4\n1 2 3 4\n", 2, bad).contains("4 fields"));
        assert!(err_at("1\t2\t3\t4\n\n-1\t2\t3\t4\n", 3, bad).contains("negative user id"));
    }

    #[test]
    fn csv_with_header_and_crlf() {
        let text = b"userId,movieId,rating,timestamp\r\n1,31,2.5,20\r\n1,10,3.0,10\r\n";
        let raw = timed(&named("x"), text, Format::Csv).unwrap();
        assert_eq!(seqs(&raw), vec![(1, vec![10, 31])]);
        let bad = |p: &Source, d: &[u8]| timed(p, d, Format::Csv);
        assert!(err_at("1,2,3,4\n", 1, bad).contains("header"));
        assert!(err_at("userId,movieId,rating,timestamp\n1,2,3\n", 2, bad).contains("4 fields"));
        assert!(err_at("userId,movieId,rating,timestamp\n1,2.5,3,4\n", 2, bad).contains("item id"));
    }

    #[test]
    fn empty_inputs_are_errors() {
        let p = &named("empty.txt");
        for e in [
            pairs(p, b"").unwrap_err(),
            lines(p, b"\n \n").unwrap_err(),
            timed(p, b"", Format::MlDat).unwrap_err(),
            timed(p, b"userId,movieId,rating,timestamp\n", Format::Csv).unwrap_err(),
        ] {
            assert_eq!(e.0, "empty.txt: empty file (no interactions)");
        }
    }
}
