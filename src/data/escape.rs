//! Bytes from an input file, made safe for a one-line error message.
//!
//! Input files can hold anything (a binary file read as text, a UTF-16 file, a stray escape
//! sequence): a message that printed such bytes raw could break the line, ring the terminal or
//! hide its own text. Everything shown from a file goes through here.

use std::fmt::Write;

/// At most this many characters of a field are shown; longer ones end in `…`.
const MAX_CHARS: usize = 40;

/// `bytes` as text: valid UTF-8 kept, control characters and backslashes escaped the way Rust
/// writes them (`\0`, `\t`, `\u{1b}`, `\\`), invalid UTF-8 bytes as `\xNN`; cut at
/// [`MAX_CHARS`].
pub(crate) fn field(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut shown = 0;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown == MAX_CHARS {
                out.push('…');
                return out;
            }
            if c.is_control() || c == '\\' {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
            shown += 1;
        }
        for b in chunk.invalid() {
            if shown == MAX_CHARS {
                out.push('…');
                return out;
            }
            let _ = write!(out, "\\x{b:02x}");
            shown += 1;
        }
    }
    out
}

/// The first (up to) 8 bytes of `data` in hex, `50 41 53 41 53 45 51 00`.
pub(crate) fn hex_head(data: &[u8]) -> String {
    let head = &data[..data.len().min(8)];
    head.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invalid_bytes_are_escaped() {
        assert_eq!(field(b"12"), "12");
        assert_eq!(field("é€".as_bytes()), "é€");
        assert_eq!(field(b"a\0b"), "a\\0b");
        assert_eq!(field(b"\x1b[31m"), "\\u{1b}[31m");
        assert_eq!(field(b"\r\x0b\x7f"), "\\r\\u{b}\\u{7f}");
        assert_eq!(field(b"a\\b"), "a\\\\b");
        assert_eq!(field(b"\xff\xfe1"), "\\xff\\xfe1");
        for s in [
            field(b"\0\x01\x02\n\r\t\x1b\x7f\xc2\x85"),
            field(&[0u8; 100]),
        ] {
            assert!(!s.chars().any(char::is_control), "{s:?}");
        }
    }

    #[test]
    fn long_fields_are_cut() {
        let s = field(&[b'7'; 100]);
        assert_eq!(s, format!("{}…", "7".repeat(MAX_CHARS)));
        assert_eq!(field(&[b'7'; MAX_CHARS]), "7".repeat(MAX_CHARS));
    }

    #[test]
    fn hex_of_the_first_bytes() {
        assert_eq!(hex_head(b"PASASEQ\0\x01"), "50 41 53 41 53 45 51 00");
        assert_eq!(hex_head(b"\x01"), "01");
        assert_eq!(hex_head(b""), "");
    }
}
