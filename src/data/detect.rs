//! `Format::Auto`: pick a reader from the first bytes and lines of a file, and say why (rule in
//! the `data` module docs).

use std::fmt;
use std::io::Read;
use std::path::Path;

use super::binary::MAGIC;
use super::escape::hex_head;
use super::scan::{content_lines, ws_fields};
use super::Format;
use crate::error::{Error, Result};

/// How many non-blank lines decide between pairs and one-user-per-line.
const SNIFF_LINES: usize = 8;

/// How many bytes of a file detection reads.
const HEAD_BYTES: u64 = 1 << 16;

/// What `Format::Auto` chose, and the evidence, so that messages can say what was assumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub format: Format,
    /// Why, e.g. "7 of the first 8 lines have 2 fields".
    pub reason: String,
}

impl Detected {
    fn new(format: Format, reason: impl Into<String>) -> Detected {
        Detected {
            format,
            reason: reason.into(),
        }
    }

    /// What a reader's error adds when the format was detected: "format auto-detected as pairs:
    /// 7 of the first 8 lines have 2 fields; pass --format lines for one user per line".
    pub fn note(&self) -> String {
        let hint = match self.format {
            Format::Pairs => "pass --format lines for one user per line",
            Format::Lines => "pass --format pairs for 'user item' pairs",
            _ => "pass --format to name the format",
        };
        format!("format auto-detected as {self}; {hint}")
    }
}

/// "pairs: 7 of the first 8 lines have 2 fields".
impl fmt::Display for Detected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.format.name(), self.reason)
    }
}

/// Detects the format of `data` (a whole file, or at least its first lines). `Err` says why
/// `data` is neither a binary file nor text.
pub fn detect(data: &[u8]) -> std::result::Result<Detected, String> {
    if data.starts_with(MAGIC) {
        return Ok(Detected::new(
            Format::Binary,
            "the file starts with the magic PASASEQ\\0",
        ));
    }
    if !is_text(data) {
        let n = data.len().min(MAGIC.len());
        return Err(format!(
            "not a text file and not a pasa binary file (its first {n} bytes are {}, expected \
             the magic PASASEQ\\0)",
            hex_head(data)
        ));
    }
    let mut lines = content_lines(data).map(|(_, l)| l);
    let Some(first) = lines.next() else {
        // Nothing to go on; the pairs reader reports the empty file.
        return Ok(Detected::new(
            Format::Pairs,
            "the file has no non-blank line",
        ));
    };
    if first.windows(2).any(|w| w == b"::") {
        return Ok(Detected::new(Format::MlDat, "the first line contains '::'"));
    }
    if first.contains(&b',') {
        return Ok(Detected::new(Format::Csv, "the first line contains ','"));
    }
    if first.contains(&b'\t') && ws_fields(first).count() == 4 {
        return Ok(Detected::new(
            Format::UData,
            "the first line has 4 tab-separated fields",
        ));
    }
    let sniffed: Vec<usize> = std::iter::once(first)
        .chain(lines.take(SNIFF_LINES - 1))
        .map(|l| ws_fields(l).count())
        .collect();
    let n = sniffed.len();
    let pairs = sniffed.iter().filter(|&&f| f == 2).count();
    let counted = match n {
        1 => format!("the first line has {}", fields(sniffed[0])),
        _ => {
            let verb = if pairs == 1 { "has" } else { "have" };
            format!("{pairs} of the first {n} lines {verb} 2 fields")
        }
    };
    // A strict majority, so that one bad line among pairs does not make them one user per line.
    if 2 * pairs > n {
        Ok(Detected::new(Format::Pairs, counted))
    } else {
        Ok(Detected::new(Format::Lines, counted))
    }
}

fn fields(n: usize) -> String {
    match n {
        1 => "1 field".into(),
        n => format!("{n} fields"),
    }
}

/// Whether `data` (the head of a file) reads as text: no NUL and valid UTF-8, except for a
/// character cut at its very end.
fn is_text(data: &[u8]) -> bool {
    if data.contains(&0) {
        return false;
    }
    match std::str::from_utf8(data) {
        Ok(_) => true,
        // `error_len() == None`: an incomplete character at the end, where the head was cut.
        Err(e) => e.error_len().is_none(),
    }
}

/// Detects the format of the file at `path` from its first 64 KiB.
pub(crate) fn detect_file(path: &Path) -> Result<Detected> {
    let mut head = Vec::with_capacity(HEAD_BYTES as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(HEAD_BYTES).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    // Drop a last line that may have been cut by the limit.
    if head.len() as u64 == HEAD_BYTES {
        if let Some(nl) = head.iter().rposition(|&b| b == b'\n') {
            head.truncate(nl + 1);
        }
    }
    detect(&head).map_err(|m| Error::in_file(path, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(data: &[u8]) -> Format {
        detect(data).unwrap().format
    }

    #[test]
    fn each_format_is_recognised() {
        assert_eq!(format(b"PASASEQ\0\x01\0\0\0"), Format::Binary);
        assert_eq!(format(b"\n1::1193::5::978300760\n"), Format::MlDat);
        assert_eq!(
            format(b"userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n"),
            Format::Csv
        );
        assert_eq!(format(b"196\t242\t3\t881250949\n"), Format::UData);
        assert_eq!(format(b"1 1\n1 2\n2 3\n"), Format::Pairs);
        assert_eq!(format(b"1\t1\n1\t2\n"), Format::Pairs);
        assert_eq!(format(b"1 1 2 3\n2 3 4\n"), Format::Lines);
        assert_eq!(format(b""), Format::Pairs);
    }

    #[test]
    fn pairs_or_lines_by_majority_of_the_first_8_lines() {
        // One bad line among pairs does not make them one user per line.
        let d = detect(b"1 1\n1 2\n1 3 4\n2 3\n2 4\n2 5\n3 1\n3 2\n3 7 8\n").unwrap();
        assert_eq!(d.format, Format::Pairs);
        assert_eq!(d.reason, "7 of the first 8 lines have 2 fields");
        assert_eq!(format(b"1 1\n2 2\n3 3 4\n"), Format::Pairs);
        assert_eq!(format(b"1\n1 2\n1 3\n"), Format::Pairs);
        // Half is not a majority.
        let d = detect(b"1 1\n2 2 3\n").unwrap();
        assert_eq!(d.format, Format::Lines);
        assert_eq!(d.reason, "1 of the first 2 lines has 2 fields");
        let d = detect(b"1 2 3 4\n").unwrap();
        assert_eq!(d.reason, "the first line has 4 fields");
        // Only the first 8 non-blank lines count.
        let mut many = "1 2 3\n".repeat(8);
        many += &"1 2\n".repeat(100);
        assert_eq!(format(many.as_bytes()), Format::Lines);
    }

    #[test]
    fn the_note_says_what_was_assumed_and_how_to_override_it() {
        let d = detect(b"1 1\n1 2\n").unwrap();
        assert_eq!(
            d.note(),
            "format auto-detected as pairs: 2 of the first 2 lines have 2 fields; pass \
             --format lines for one user per line"
        );
        let d = detect(b"1 1 2\n").unwrap();
        assert!(d
            .note()
            .ends_with("pass --format pairs for 'user item' pairs"));
        let d = detect(b"1::2::3::4\n").unwrap();
        assert_eq!(d.to_string(), "ml-dat: the first line contains '::'");
    }

    #[test]
    fn binary_data_without_the_magic_is_not_read_as_text() {
        let e = detect(b"XASASEQ\0\x01\0\0\0\0\0\0\0").unwrap_err();
        assert_eq!(
            e,
            "not a text file and not a pasa binary file (its first 8 bytes are 58 41 53 41 \
             53 45 51 00, expected the magic PASASEQ\\0)"
        );
        let e = detect(b"1 2\n\xff\xfe").unwrap_err();
        assert!(e.contains("its first 6 bytes are 31 20 32 0a ff fe"), "{e}");
        // UTF-16 text has NULs.
        assert!(detect(b"1\0 \x002\0\n\0").is_err());
    }

    #[test]
    fn text_or_not() {
        assert!(is_text(b"1 2\n"));
        assert!(is_text("é\n".as_bytes()));
        assert!(is_text(&"é".as_bytes()[..1]), "cut at the end of the head");
        assert!(!is_text(b"1 2\n\0"));
        assert!(!is_text(b"\xff1 2\n"));
        assert!(!is_text(b"\xc3x"));
    }
}
