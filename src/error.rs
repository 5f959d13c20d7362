//! One error type for the whole crate: a message a user can act on.
//!
//! Every error names what went wrong and where (file and line, or the flag). The binary
//! prints it on one line and exits with code 2; nothing in the library panics on bad input.

use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn msg(m: impl Into<String>) -> Self {
        Error(m.into())
    }
    /// An error in an input file, at a 1-based line.
    pub fn at_line(path: &Path, line: usize, m: impl fmt::Display) -> Self {
        Error(format!("{}:{}: {}", shown(path), line, m))
    }
    /// An error about a whole file.
    pub fn in_file(path: &Path, m: impl fmt::Display) -> Self {
        Error(format!("{}: {}", shown(path), m))
    }
    /// An error about a command-line argument or configuration field.
    pub fn arg(flag: &str, m: impl fmt::Display) -> Self {
        Error(format!("{flag}: {m}"))
    }
    /// The same error with a note in parentheses at its end (where a value came from).
    pub fn note(self, note: impl fmt::Display) -> Self {
        Error(format!("{} ({note})", self.0))
    }
    /// An I/O error on a path.
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        Error(format!("{}: {}", shown(path), e))
    }
}

/// `path` as a message shows it: control characters (a newline in a file name) escaped, so that
/// the message stays one line.
pub fn shown(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.contains(char::is_control) {
        return s;
    }
    s.chars()
        .map(|c| match c.is_control() {
            true => c.escape_debug().to_string(),
            false => c.to_string(),
        })
        .collect()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Early return with a formatted [`Error`].
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::error::Error(format!($($t)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_control_characters_stay_on_one_line() {
        let e = Error::in_file(Path::new("a\nb\u{1b}.txt"), "bad");
        assert_eq!(e.0, "a\\nb\\u{1b}.txt: bad");
        assert_eq!(shown(Path::new("plain/x.txt")), "plain/x.txt");
    }
}
