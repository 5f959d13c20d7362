//! Byte-level scanning of text inputs: lines and integer fields, with no allocation per line.

use super::escape;

/// Lines of a byte buffer with 1-based numbers; strips `\n`, a trailing `\r` and a leading BOM.
pub(crate) struct Lines<'a> {
    data: &'a [u8],
    pos: usize,
    line: usize,
}

pub(crate) fn lines(data: &[u8]) -> Lines<'_> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    Lines {
        data,
        pos: 0,
        line: 0,
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        self.pos += end + 1;
        self.line += 1;
        let l = &rest[..end];
        Some((self.line, l.strip_suffix(b"\r").unwrap_or(l)))
    }
}

/// Non-blank lines only.
pub(crate) fn content_lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    lines(data).filter(|(_, l)| !is_blank(l))
}

pub(crate) fn is_blank(l: &[u8]) -> bool {
    l.iter().all(|b| b.is_ascii_whitespace())
}

/// Fields separated by runs of spaces or tabs.
pub(crate) fn ws_fields(l: &[u8]) -> impl Iterator<Item = &[u8]> {
    l.split(|&b| b == b' ' || b == b'\t')
        .filter(|f| !f.is_empty())
}

/// Splits `l` on `sep` into `out`; returns the number of fields (which may exceed `out.len()`).
pub(crate) fn split_on<'a>(l: &'a [u8], sep: &[u8], out: &mut [&'a [u8]]) -> usize {
    let mut n = 0;
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= l.len() {
        if &l[i..i + sep.len()] == sep {
            if n < out.len() {
                out[n] = &l[start..i];
            }
            n += 1;
            i += sep.len();
            start = i;
        } else {
            i += 1;
        }
    }
    if n < out.len() {
        out[n] = &l[start..];
    }
    n + 1
}

/// A non-negative decimal integer; `None` on anything else (sign, letters, overflow, empty).
pub(crate) fn parse_u64(f: &[u8]) -> Option<u64> {
    if f.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in f {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// A signed decimal integer (timestamps).
pub(crate) fn parse_i64(f: &[u8]) -> Option<i64> {
    match f.strip_prefix(b"-") {
        Some(rest) => parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        None => parse_u64(f).and_then(|v| i64::try_from(v).ok()),
    }
}

/// A decimal number (ratings), checked only for being one.
pub(crate) fn is_number(f: &[u8]) -> bool {
    std::str::from_utf8(f)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .is_some()
}

/// Why `f` is not a valid id, for the error message (the field escaped, see [`escape`]).
pub(crate) fn bad_id(what: &str, f: &[u8]) -> String {
    let shown = escape::field(f);
    if f.is_empty() {
        format!("missing {what}")
    } else if f.starts_with(b"-") && parse_u64(&f[1..]).is_some() {
        format!("negative {what} '{shown}'")
    } else if f.iter().all(u8::is_ascii_digit) {
        format!("{what} '{shown}' is too large")
    } else {
        format!("{what} '{shown}' is not a non-negative integer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_strip_crlf_and_bom_and_number_from_one() {
        let v: Vec<_> = lines(b"\xEF\xBB\xBFa\r\n\nb").collect();
        assert_eq!(v, vec![(1, &b"a"[..]), (2, &b""[..]), (3, &b"b"[..])]);
    }

    #[test]
    fn split_counts_all_fields() {
        let mut out = [&b""[..]; 4];
        assert_eq!(split_on(b"1::2::3::4", b"::", &mut out), 4);
        assert_eq!(out, [&b"1"[..], b"2", b"3", b"4"]);
        assert_eq!(split_on(b"1::2::3::4::5", b"::", &mut out), 5);
        assert_eq!(split_on(b"1", b"::", &mut out), 1);
    }

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0012"), Some(12));
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
        assert_eq!(parse_i64(b"-5"), Some(-5));
        assert!(bad_id("item id", b"-3").contains("negative"));
        assert!(bad_id("item id", b"x1").contains("not a non-negative integer"));
    }
}
