//! `pasa data …` (and `pasa train --data`) on inputs that must not hurt the user: a convert that
//! would destroy its input or another file, a damaged binary file, a bad line in a detected
//! format. Each is exit code 2 with one clean `error: …` line naming the file (and line).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pasa::data::{write_binary, Sequences};

fn pasa(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pasa"))
        .args(args)
        .output()
        .expect("runs")
}

/// `pasa` with string arguments.
fn run(args: &[&str]) -> Output {
    let paths: Vec<&Path> = args.iter().map(Path::new).collect();
    pasa(&paths)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pasa-cli-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const PAIRS: &[u8] = b"1 1\n1 2\n1 3\n2 2\n2 3\n2 1\n3 1\n3 3\n3 2\n";

/// A fresh folder holding `data.txt` with [`PAIRS`]: (folder, file).
fn pairs_in(name: &str) -> (PathBuf, PathBuf) {
    let dir = tmp(name);
    let input = dir.join("data.txt");
    std::fs::write(&input, PAIRS).unwrap();
    (dir, input)
}

/// Exit code 2 and a stderr of exactly one line, `error: …`, with no control character (NUL,
/// escape…), no panic, and every needle in it. Returns the line.
fn assert_error(o: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8");
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err:?}");
    let line = err
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no final newline: {err:?}"));
    assert!(
        !line.chars().any(char::is_control),
        "not one clean line: {err:?}"
    );
    assert!(line.starts_with("error: "), "{line}");
    assert!(!line.contains("panicked"), "{line}");
    for n in needles {
        assert!(line.contains(n), "{n:?} not in {line:?}");
    }
    line.to_string()
}

/// The files in `dir`, sorted (to see that a refused convert left no temp file behind).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn convert_refuses_to_write_over_its_input() {
    let (dir, input) = pairs_in("same");
    let o = pasa(&[Path::new("data"), Path::new("convert"), &input, &input]);
    let line = assert_error(&o, &["the same file", "refusing"]);
    assert_eq!(
        line,
        format!(
            "error: {0}: is the input file {0} (the same file); refusing to write the output \
             over its own input, choose another output path",
            input.display()
        )
    );
    // Through another spelling of the path, and with --force: still refused.
    let dotted = dir.join(".").join("data.txt");
    let o = run(&["data", "convert", "--force", s(&input), s(&dotted)]);
    assert_error(&o, &["the same file"]);
    assert_eq!(std::fs::read(&input).unwrap(), PAIRS);
    assert_eq!(listing(&dir), ["data.txt"]);
}

#[cfg(unix)]
#[test]
fn convert_refuses_links_to_its_input() {
    let (dir, input) = pairs_in("links");
    let sym = dir.join("sym.bin");
    std::os::unix::fs::symlink(&input, &sym).unwrap();
    let hard = dir.join("hard.bin");
    std::fs::hard_link(&input, &hard).unwrap();
    for out in [&sym, &hard] {
        let o = run(&["data", "convert", "--force", s(&input), s(out)]);
        let line = assert_error(&o, &["the same file", s(&input), s(out)]);
        assert!(
            line.starts_with(&format!("error: {}: ", out.display())),
            "{line}"
        );
    }
    assert_eq!(std::fs::read(&input).unwrap(), PAIRS);
    assert!(std::fs::symlink_metadata(&sym)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(listing(&dir), ["data.txt", "hard.bin", "sym.bin"]);
}

#[test]
fn convert_replaces_another_text_file_only_with_force() {
    let (dir, input) = pairs_in("force");
    let other = dir.join("notes.txt");
    std::fs::write(&other, b"my notes\n").unwrap();
    let o = run(&["data", "convert", s(&input), s(&other)]);
    let line = assert_error(&o, &["--force"]);
    assert_eq!(
        line,
        format!(
            "error: {}: exists and is not a pasa binary file; refusing to replace it (pass \
             --force to replace it anyway)",
            other.display()
        )
    );
    assert_eq!(std::fs::read(&other).unwrap(), b"my notes\n");
    let o = run(&["data", "convert", "--force", s(&input), s(&other)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&other).unwrap().starts_with(b"PASASEQ\0"));
    assert_eq!(std::fs::read(&input).unwrap(), PAIRS);
}

#[test]
fn convert_replaces_a_binary_or_empty_output() {
    let (dir, input) = pairs_in("replace");
    let out = dir.join("data.bin");
    write_binary(&Sequences::from_lists(&[vec![1]], 1), &out).unwrap();
    let empty = dir.join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    for target in [&out, &empty] {
        let o = run(&["data", "convert", s(&input), s(target)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        let st = run(&["data", "stats", s(target)]);
        let stdout = String::from_utf8_lossy(&st.stdout);
        assert!(stdout.contains("users") && stdout.contains('3'), "{stdout}");
    }
    assert_eq!(listing(&dir), ["data.bin", "data.txt", "empty.bin"]);
}

/// A valid binary file of 2 users and 3 items, its bytes patched at `at`.
fn patched_binary(dir: &Path, name: &str, at: usize, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let mut s = Sequences::from_lists(&[vec![1, 2, 3], vec![2]], 3);
    s.user_ids = vec![5, 6];
    write_binary(&s, &p).unwrap();
    let mut b = std::fs::read(&p).unwrap();
    b[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn a_damaged_magic_is_reported_not_parsed_as_text() {
    let dir = tmp("magic");
    let p = patched_binary(&dir, "damaged.bin", 0, b"X");
    let want = format!(
        "error: {}: not a text file and not a pasa binary file (its first 8 bytes are 58 41 53 \
         41 53 45 51 00, expected the magic PASASEQ\\0)",
        p.display()
    );
    let o = run(&["data", "stats", s(&p)]);
    assert_eq!(assert_error(&o, &[]), want);
    let out = dir.join("out.bin");
    let o = run(&["data", "convert", s(&p), s(&out)]);
    assert_eq!(assert_error(&o, &[]), want);
    assert!(!out.exists());
    // Named as text on purpose: the bytes it shows are escaped.
    let o = run(&["data", "stats", "--format", "lines", s(&p)]);
    assert_error(&o, &[&format!("{}:1: user id 'XASASEQ\\0", p.display())]);
    // Training reads data the same way.
    let run_dir = dir.join("run");
    let o = run(&[
        "train",
        "--data",
        s(&p),
        "--out",
        s(&run_dir),
        "--device",
        "cpu",
    ]);
    assert_eq!(assert_error(&o, &[]), want);
}

#[test]
fn binary_files_the_format_forbids_are_named_with_what_is_wrong() {
    let dir = tmp("strict");
    // Offsets at 40, items at 52, padding at 68, user ids at 72, item ids at 88.
    let cases = [
        (
            12,
            3u64.to_le_bytes()[..4].to_vec(),
            "the reserved header field (bytes 12..16) is 3, expected 0",
        ),
        (
            44,
            4u32.to_le_bytes().to_vec(),
            "user at index 1 (id 6) has no items (offsets 4, 4)",
        ),
        (
            80,
            5u64.to_le_bytes().to_vec(),
            "user id 5 appears twice, for the users at index 0 and 1",
        ),
        (
            104,
            1u64.to_le_bytes().to_vec(),
            "item id 1 appears twice, for dense items 1 and 3",
        ),
    ];
    for (k, (at, bytes, what)) in cases.iter().enumerate() {
        let p = patched_binary(&dir, &format!("bad{k}.bin"), *at, bytes);
        let o = run(&["data", "stats", s(&p)]);
        let line = assert_error(&o, &[]);
        assert_eq!(
            line,
            format!("error: {}: corrupt binary file: {what}", p.display())
        );
    }
}

#[test]
fn a_bad_line_in_a_detected_pairs_file_is_named_with_the_guess() {
    let dir = tmp("pairs");
    for (bad, found) in [("2 3 4", 3), ("2", 1)] {
        let mut lines: Vec<&str> = PAIRS
            .split(|&b| b == b'\n')
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        lines[4] = bad;
        let p = dir.join(format!("data{found}.txt"));
        std::fs::write(&p, lines.join("\n")).unwrap();
        let o = run(&["data", "stats", s(&p)]);
        let line = assert_error(&o, &[]);
        assert_eq!(
            line,
            format!(
                "error: {}:5: expected 2 fields (user item), found {found} (format \
                 auto-detected as pairs: 7 of the first 8 lines have 2 fields; pass --format \
                 lines for one user per line)",
                p.display()
            )
        );
        // Named, the error is the reader's alone.
        let o = run(&["data", "stats", "--format", "pairs", s(&p)]);
        let line = assert_error(&o, &[]);
        assert!(line.ends_with(&format!(":5: expected 2 fields (user item), found {found}")));
    }
}

#[test]
fn a_detected_text_format_is_noted_on_stderr() {
    let (dir, p) = pairs_in("note");
    let o = run(&["data", "stats", s(&p)]);
    assert!(o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(
        err,
        format!(
            "note: {}: format auto-detected as pairs: 8 of the first 8 lines have 2 fields \
             (--format overrides)\n",
            p.display()
        )
    );
    let o = run(&["data", "stats", "--format", "pairs", s(&p)]);
    assert!(o.status.success() && o.stderr.is_empty());
    // A binary file is not a guess.
    let bin = dir.join("data.bin");
    assert!(run(&["data", "convert", s(&p), s(&bin)]).status.success());
    let o = run(&["data", "stats", s(&bin)]);
    assert!(o.status.success() && o.stderr.is_empty(), "{:?}", o.stderr);
}

#[test]
fn convert_help_describes_the_guards_in_plain_text() {
    let o = run(&["data", "convert", "--help"]);
    assert!(o.status.success());
    let help = String::from_utf8(o.stdout).unwrap();
    assert!(help.contains("--force"), "{help}");
    assert!(help.contains("never the input file"), "{help}");
    for markup in ["`", "[`", "write_binary", "\\t"] {
        assert!(!help.contains(markup), "{markup:?} in:\n{help}");
    }
}
