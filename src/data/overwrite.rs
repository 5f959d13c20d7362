//! Whether `pasa data convert` may write its output where it was asked to.
//!
//! The output is written atomically (a temp file renamed over it), so replacing a file is
//! always complete, but it is also final. Two mistakes would lose a user's data: naming the input
//! as the output (`convert x x`, or a link to it), and naming some other text file.

use std::io::Read;
use std::path::Path;

use super::binary::MAGIC;
use crate::error::{shown, Error, Result};

/// Checks that writing `output` cannot destroy the input or an unrelated file: it must not
/// exist, be empty, or be a pasa binary file; anything else needs `force`. The input is never
/// replaced, not even with `force`.
pub(crate) fn check(input: &Path, output: &Path, force: bool) -> Result<()> {
    let meta = match std::fs::metadata(output) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(output, e)),
    };
    if meta.is_dir() {
        return Err(Error::in_file(
            output,
            "is a directory, expected the output file's path",
        ));
    }
    if same_file(input, output) {
        return Err(Error::in_file(
            output,
            format!(
                "is the input file {} (the same file); refusing to write the output over its \
                 own input, choose another output path",
                shown(input)
            ),
        ));
    }
    if force || meta.len() == 0 || is_pasa_binary(output)? {
        return Ok(());
    }
    Err(Error::in_file(
        output,
        "exists and is not a pasa binary file; refusing to replace it (pass --force to replace \
         it anyway)",
    ))
}

/// Whether `a` and `b` name one file: the same canonical path or, on Unix, the same (device,
/// inode), which also catches hard links.
fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(ca), Ok(cb)) = (a.canonicalize(), b.canonicalize()) {
        if ca == cb {
            return true;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return (ma.dev(), ma.ino()) == (mb.dev(), mb.ino());
        }
    }
    false
}

/// Whether the file starts with the binary magic.
fn is_pasa_binary(path: &Path) -> Result<bool> {
    let mut head = Vec::with_capacity(MAGIC.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(MAGIC.len() as u64).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    Ok(head == MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{temp_file, temp_path};

    #[test]
    fn a_new_or_empty_output_or_a_binary_one_may_be_written() {
        let input = temp_file("in.txt", b"1 2\n");
        check(&input, &temp_path("new.bin"), false).unwrap();
        check(&input, &temp_file("empty.bin", b""), false).unwrap();
        check(&input, &temp_file("old.bin", b"PASASEQ\0rest"), false).unwrap();
    }

    #[test]
    fn the_input_is_never_the_output() {
        let input = temp_file("in.txt", b"1 2\n");
        for force in [false, true] {
            let e = check(&input, &input, force).unwrap_err().0;
            let want = format!(
                "{0}: is the input file {0} (the same file); refusing to write the output over \
                 its own input, choose another output path",
                input.display()
            );
            assert_eq!(e, want);
        }
        // The same file through another path.
        let dotted = input
            .parent()
            .unwrap()
            .join(".")
            .join(input.file_name().unwrap());
        assert!(check(&input, &dotted, true).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn links_to_the_input_are_the_input() {
        let input = temp_file("in.txt", b"1 2\n");
        let sym = temp_path("sym.bin");
        std::os::unix::fs::symlink(&input, &sym).unwrap();
        let hard = temp_path("hard.bin");
        std::fs::hard_link(&input, &hard).unwrap();
        for out in [&sym, &hard] {
            let e = check(&input, out, true).unwrap_err().0;
            assert!(e.contains("the same file"), "{e}");
        }
        // And the other way round: the input is a link to the output.
        assert!(check(&sym, &input, true).is_err());
    }

    #[test]
    fn another_text_file_needs_force() {
        let input = temp_file("in.txt", b"1 2\n");
        let other = temp_file("other.txt", b"3 4\n");
        let e = check(&input, &other, false).unwrap_err().0;
        assert_eq!(
            e,
            format!(
                "{}: exists and is not a pasa binary file; refusing to replace it (pass \
                 --force to replace it anyway)",
                other.display()
            )
        );
        check(&input, &other, true).unwrap();
        let dir = std::env::temp_dir();
        assert!(check(&input, &dir, true)
            .unwrap_err()
            .0
            .contains("is a directory"));
    }
}
