//! `Format::Auto`: pick a reader from the first bytes and lines of a file (rule in `data` docs).

use std::io::Read;
use std::path::Path;

use super::binary::MAGIC;
use super::scan::{content_lines, ws_fields};
use super::Format;
use crate::error::{Error, Result};

/// How many non-blank lines decide between pairs and one-user-per-line.
const SNIFF_LINES: usize = 8;

/// Detects the format of `data` (a whole file, or at least its first lines).
pub fn detect(data: &[u8]) -> Format {
    if data.starts_with(MAGIC) {
        return Format::Binary;
    }
    let mut lines = content_lines(data).map(|(_, l)| l);
    let Some(first) = lines.next() else {
        // Nothing to go on; the pairs reader reports the empty file.
        return Format::Pairs;
    };
    if first.windows(2).any(|w| w == b"::") {
        return Format::MlDat;
    }
    if first.contains(&b',') {
        return Format::Csv;
    }
    if first.contains(&b'\t') && ws_fields(first).count() == 4 {
        return Format::UData;
    }
    let two_fields = |l: &[u8]| ws_fields(l).count() == 2;
    if two_fields(first) && lines.take(SNIFF_LINES - 1).all(two_fields) {
        Format::Pairs
    } else {
        Format::Lines
    }
}

/// Detects the format of the file at `path` from its first 64 KiB.
pub(crate) fn detect_file(path: &Path) -> Result<Format> {
    let mut head = Vec::with_capacity(1 << 16);
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 16).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    // Drop a last line that may have been cut by the 64 KiB limit.
    if head.len() == 1 << 16 {
        if let Some(nl) = head.iter().rposition(|&b| b == b'\n') {
            head.truncate(nl + 1);
        }
    }
    Ok(detect(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_recognised() {
        assert_eq!(detect(b"PASASEQ\0\x01\0\0\0"), Format::Binary);
        assert_eq!(detect(b"\n1::1193::5::978300760\n"), Format::MlDat);
        assert_eq!(
            detect(b"userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n"),
            Format::Csv
        );
        assert_eq!(detect(b"196\t242\t3\t881250949\n"), Format::UData);
        assert_eq!(detect(b"1 1\n1 2\n2 3\n"), Format::Pairs);
        assert_eq!(detect(b"1\t1\n1\t2\n"), Format::Pairs);
        assert_eq!(detect(b"1 1 2 3\n2 3 4\n"), Format::Lines);
        // A many-column line anywhere in the first 8 makes it one user per line.
        assert_eq!(detect(b"1 1\n2 2\n3 3 4\n"), Format::Lines);
        assert_eq!(detect(b""), Format::Pairs);
    }
}
