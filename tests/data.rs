//! The data module end to end on small files: `load` with every format, auto-detection and
//! what its errors say, the binary file's strictness. The real datasets are in
//! tests/datasets.rs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use pasa::data::{load, load_detected, write_binary, Format, LoadOptions, Sequences, MAGIC};

fn temp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("pasa-it-{}-{n}-{name}", std::process::id()))
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let p = temp_path(name);
    std::fs::write(&p, contents).unwrap();
    p
}

fn auto() -> LoadOptions {
    LoadOptions::default()
}

fn lists(s: &Sequences) -> Vec<Vec<u32>> {
    s.iter().map(<[u32]>::to_vec).collect()
}

/// (file name, contents, expected sequences)
type Inline = (&'static str, &'static [u8], Vec<Vec<u32>>);

#[test]
fn load_auto_detects_every_text_format() {
    let cases: [Inline; 5] = [
        ("p.txt", b"1 1\n1 2\n2 2\n", vec![vec![1, 2], vec![2]]),
        ("l.txt", b"1 2 1 3\n2 3\n", vec![vec![2, 1, 3], vec![3]]),
        (
            "r.dat",
            b"2::9::1::5\n1::9::1::7\n1::8::1::3\n",
            vec![vec![1, 2], vec![2]],
        ),
        ("u.data", b"1\t2\t3\t20\n1\t1\t3\t10\n", vec![vec![1, 2]]),
        (
            "r.csv",
            b"userId,movieId,rating,timestamp\r\n1,5,4.0,2\r\n1,6,4.5,1\r\n",
            vec![vec![1, 2]],
        ),
    ];
    for (name, text, want) in cases {
        let p = temp_file(name, text);
        let s = load(&p, &auto()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(lists(&s), want, "{name}");
        s.validate().unwrap();
    }
}

#[test]
fn file_level_errors_name_the_file() {
    let missing = temp_path("missing.txt");
    let dir = std::env::temp_dir();
    let empty = temp_file("empty.txt", b"");
    let blank = temp_file("blank.txt", b"\n\n");
    for (p, what) in [
        (&missing, "No such file"),
        (&dir, "is a directory"),
        (&empty, "empty file"),
        (&blank, "empty file"),
    ] {
        for format in [Format::Auto, Format::Pairs, Format::Binary] {
            let e = load(p, &LoadOptions { format, ..auto() }).unwrap_err().0;
            assert!(e.starts_with(&format!("{}: ", p.display())), "{e}");
            // A binary read of an empty file reports the truncation instead.
            let ok = e.contains(what) || (format == Format::Binary && e.contains("truncated"));
            assert!(ok, "{format:?} on {}: {e}", p.display());
            assert!(!e.contains('\n'));
        }
    }
}

#[test]
fn line_errors_through_load_name_file_and_line() {
    let p = temp_file("bad.txt", b"1 2\n1 3\n\n2 -4\n");
    let e = load(&p, &auto()).unwrap_err().0;
    // Auto-detected, so the error also says what was assumed.
    let note = "format auto-detected as pairs: 3 of the first 3 lines have 2 fields; pass \
                --format lines for one user per line";
    assert_eq!(
        e,
        format!("{}:4: negative item id '-4' ({note})", p.display())
    );
    let named = LoadOptions {
        format: Format::Pairs,
        ..auto()
    };
    let e = load(&p, &named).unwrap_err().0;
    assert_eq!(e, format!("{}:4: negative item id '-4'", p.display()));
}

#[test]
fn binary_through_load_with_kcore_and_renumber() {
    let mut s = Sequences::from_lists(&[vec![1, 2, 3], vec![2, 3], vec![3, 4]], 5);
    s.item_ids = vec![11, 12, 13, 14, 15];
    let p = temp_path("k.bin");
    write_binary(&s, &p).unwrap();
    // Stored as is: item 5 stays in the catalogue though unused.
    assert_eq!(load(&p, &auto()).unwrap(), s);
    // 2-core: item 1 and item 4 go, then user 3 ([3]) goes; ids 2, 3 are not 1..=2 → renumber.
    let k = load(
        &p,
        &LoadOptions {
            kcore: Some(2),
            ..auto()
        },
    )
    .unwrap();
    assert_eq!(lists(&k), vec![vec![1, 2], vec![1, 2]]);
    assert_eq!(k.item_ids, vec![12, 13]);
    assert_eq!(k.user_ids, vec![1, 2]);
}

/// The bytes of `s` as written by `write_binary`.
fn binary_bytes(s: &Sequences) -> Vec<u8> {
    let p = temp_path("src.bin");
    write_binary(s, &p).unwrap();
    let b = std::fs::read(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    b
}

fn with_format(format: Format) -> LoadOptions {
    LoadOptions { format, ..auto() }
}

/// An error message fit for one terminal line: no control character (NUL, newline, escape…).
fn assert_one_clean_line(e: &str) {
    assert!(
        !e.chars().any(char::is_control),
        "control characters in {e:?}"
    );
}

#[test]
fn a_binary_file_with_a_damaged_magic_is_not_read_as_text() {
    let mut b = binary_bytes(&Sequences::from_lists(&[vec![1, 2], vec![2]], 2));
    b[0] = b'X';
    let p = temp_file("damaged.bin", &b);
    let e = load(&p, &auto()).unwrap_err().0;
    assert_eq!(
        e,
        format!(
            "{}: not a text file and not a pasa binary file (its first 8 bytes are 58 41 53 41 \
             53 45 51 00, expected the magic PASASEQ\\0)",
            p.display()
        )
    );
    let e = load(&p, &with_format(Format::Binary)).unwrap_err().0;
    assert!(
        e.contains("not a pasa binary file (its first 8 bytes are 58 41"),
        "{e}"
    );
    // Read as text on purpose: still one clean line.
    let e = load(&p, &with_format(Format::Lines)).unwrap_err().0;
    assert!(
        e.starts_with(&format!("{}:1: user id 'XASASEQ\\0", p.display())),
        "{e}"
    );
    assert_one_clean_line(&e);
}

/// 9 pairs, line 5 replaced by `bad`.
fn pairs_with_line_5(bad: &str) -> Vec<u8> {
    let mut lines: Vec<&str> = vec![
        "1 10", "1 11", "1 12", "2 10", "", "2 13", "3 10", "3 11", "3 14",
    ];
    lines[4] = bad;
    (lines.join("\n") + "\n").into_bytes()
}

#[test]
fn one_bad_line_in_a_pairs_file_is_reported_where_it_is() {
    for (bad, found) in [("2 11 12", 3), ("2", 1)] {
        let p = temp_file("data.txt", &pairs_with_line_5(bad));
        let e = load(&p, &auto()).unwrap_err().0;
        assert_eq!(
            e,
            format!(
                "{}:5: expected 2 fields (user item), found {found} (format auto-detected as \
                 pairs: 7 of the first 8 lines have 2 fields; pass --format lines for one user \
                 per line)",
                p.display()
            )
        );
    }
}

#[test]
fn load_detected_says_what_was_assumed() {
    let p = temp_file("p.txt", b"1 1\n1 2\n2 2\n");
    let (s, d) = load_detected(&p, &auto()).unwrap();
    assert_eq!(s.num_users(), 2);
    let d = d.unwrap();
    assert_eq!(d.format, Format::Pairs);
    assert_eq!(d.reason, "3 of the first 3 lines have 2 fields");
    let (_, d) = load_detected(&p, &with_format(Format::Pairs)).unwrap();
    assert_eq!(d, None);
    // A one-user-per-line file whose first users have a single item: the guess is pairs, and
    // the first longer line says so.
    let p = temp_file("l.txt", b"1 5\n2 6\n3 7 8\n");
    let e = load(&p, &auto()).unwrap_err().0;
    assert!(
        e.starts_with(&format!("{}:3: expected 2 fields", p.display())),
        "{e}"
    );
    assert!(
        e.ends_with("pass --format lines for one user per line)"),
        "{e}"
    );
    let s = load(&p, &with_format(Format::Lines)).unwrap();
    assert_eq!(lists(&s), vec![vec![1], vec![2], vec![3, 4]]);
}

#[test]
fn the_binary_reader_rejects_what_the_format_forbids() {
    // 2 users, 3 items, 4 interactions: offsets at 40, items at 52, 4 bytes of padding at 68,
    // user ids at 72, item ids at 88.
    let mut s = Sequences::from_lists(&[vec![1, 2, 3], vec![2]], 3);
    s.user_ids = vec![5, 6];
    s.item_ids = vec![100, 200, 300];
    let good = binary_bytes(&s);
    let patched = |at: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        temp_file("strict.bin", &b)
    };
    let cases = [
        (
            patched(12, &1u32.to_le_bytes()),
            "the reserved header field (bytes 12..16) is 1, expected 0",
        ),
        // offsets 0, 3, 4 → 0, 4, 4
        (
            patched(44, &4u32.to_le_bytes()),
            "user at index 1 (id 6) has no items (offsets 4, 4)",
        ),
        (
            patched(80, &5u64.to_le_bytes()),
            "user id 5 appears twice, for the users at index 0 and 1",
        ),
        (
            patched(104, &200u64.to_le_bytes()),
            "item id 200 appears twice, for dense items 2 and 3",
        ),
    ];
    for (p, what) in cases {
        for format in [Format::Auto, Format::Binary] {
            let e = load(&p, &with_format(format)).unwrap_err().0;
            assert_eq!(e, format!("{}: corrupt binary file: {what}", p.display()));
        }
    }
    assert_eq!(load(&temp_file("good.bin", &good), &auto()).unwrap(), s);
}

#[test]
fn the_writer_refuses_what_the_reader_would_reject() {
    let mut s = Sequences::from_lists(&[vec![1], vec![], vec![2]], 2);
    let p = temp_path("refused.bin");
    let e = write_binary(&s, &p).unwrap_err().0;
    assert!(
        e.ends_with("user at index 1 (id 2) has no items (offsets 1, 1)"),
        "{e}"
    );
    s = Sequences::from_lists(&[vec![1], vec![2]], 2);
    s.item_ids = vec![9, 9];
    let e = write_binary(&s, &p).unwrap_err().0;
    assert!(
        e.ends_with("item id 9 appears twice, for dense items 1 and 2"),
        "{e}"
    );
    assert!(!p.exists());
}

/// A tiny deterministic byte source, for the garbage below.
fn lcg(seed: u64) -> impl FnMut() -> u8 {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 56) as u8
    }
}

/// Whatever the bytes and the format: either data that pass `validate`, or an error that names
/// the file and fits on one clean line. Never a panic.
#[test]
fn garbage_in_any_format_gives_a_clean_error() {
    let formats = [
        Format::Auto,
        Format::Pairs,
        Format::Lines,
        Format::MlDat,
        Format::UData,
        Format::Csv,
        Format::Binary,
    ];
    let good = binary_bytes(&Sequences::from_lists(&[vec![1, 2, 3], vec![2]], 3));
    let mut inputs: Vec<Vec<u8>> = (0..=good.len()).map(|n| good[..n].to_vec()).collect();
    for seed in 0..40 {
        let mut byte = lcg(seed);
        let len = (seed as usize * 7) % 90;
        inputs.push((0..len).map(|_| byte()).collect());
        // Mostly digits and separators, some control bytes.
        let alphabet = b"0123456789 \t\n::,\r\x00\x1b\x07\xff-";
        inputs.push(
            (0..len)
                .map(|_| alphabet[byte() as usize % alphabet.len()])
                .collect(),
        );
    }
    inputs.push("1 2\n".encode_utf16().flat_map(u16::to_le_bytes).collect());
    for (k, bytes) in inputs.iter().enumerate() {
        let p = temp_file("garbage", bytes);
        for format in formats {
            match load(&p, &with_format(format)) {
                Ok(s) => s.validate().unwrap(),
                Err(e) => {
                    assert!(e.0.starts_with(&p.display().to_string()), "{}", e.0);
                    assert_one_clean_line(&e.0);
                }
            }
        }
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("input {k}: {e}"));
    }
}

#[test]
fn the_magic_is_what_the_messages_say() {
    assert_eq!(MAGIC, b"PASASEQ\0");
}
