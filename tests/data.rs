//! The data module end to end on small files: `load` with every format and its errors, the
//! binary file through `load`. The real datasets are in tests/datasets.rs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use pasa::data::{load, write_binary, Format, LoadOptions, Sequences};

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
