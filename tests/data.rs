//! The data module end to end: `load` on files, the real datasets of ../shared/datasets, the
//! binary round trip at scale.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use pasa::data::{
    detect, load, read_binary, write_binary, Format, LoadOptions, Sequences, Split, Stats,
};

const DATASETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets");

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

/// The dataset file, or `None` (with a note) when the folder is absent. `PASA_DATASETS`
/// overrides the folder (a git worktree has no ../shared next to it).
fn dataset(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("PASA_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DATASETS));
    if !dir.is_dir() {
        eprintln!("skipping {name}: {} not found", dir.display());
        return None;
    }
    Some(dir.join(name))
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

/// (file, users, items, interactions, min length, max length), from the datasets README.
const REAL: [(&str, usize, usize, usize, usize, usize); 10] = [
    ("ml-1m.txt", 6040, 3416, 999_611, 18, 2277),
    ("ml-1m-seq-origids.txt", 6040, 3706, 1_000_209, 20, 2314),
    ("video.txt", 31_013, 23_715, 287_107, 1, 860),
    ("beauty-bert4rec.txt", 40_226, 54_542, 353_962, 5, 293),
    ("beauty-s3rec.txt", 22_363, 12_101, 198_502, 5, 204),
    ("sports-s3rec.txt", 35_598, 18_357, 296_337, 5, 296),
    ("toys-s3rec.txt", 19_412, 11_924, 167_597, 5, 550),
    ("yelp-s3rec.txt", 30_431, 20_033, 316_354, 5, 350),
    ("ml-100k-u.data", 943, 1682, 100_000, 20, 737),
    ("ml-latest-small-ratings.csv", 610, 9724, 100_836, 20, 2698),
];

#[test]
fn real_datasets_have_the_readme_counts() {
    for (name, users, items, inter, min, max) in REAL {
        let Some(p) = dataset(name) else { return };
        let t = Instant::now();
        let s = load(&p, &auto()).unwrap_or_else(|e| panic!("{e}"));
        let took = t.elapsed();
        let st = Stats::of(&s);
        eprintln!("{name}: {users} users loaded in {took:.2?}");
        assert_eq!(
            (st.users, st.items, st.interactions),
            (users, items, inter),
            "{name}"
        );
        assert_eq!(st.len_min, min, "{name}");
        // The README does not give max lengths for u.data and ratings.csv; these are ours.
        assert_eq!(st.len_max, max, "{name}");
        s.validate().unwrap();
        Split::new(&s).unwrap();
    }
}

#[test]
fn real_datasets_are_detected_as_expected() {
    let want = [
        ("ml-1m.txt", Format::Pairs),
        ("video.txt", Format::Pairs),
        ("beauty-bert4rec.txt", Format::Pairs),
        ("beauty-s3rec.txt", Format::Lines),
        ("yelp-s3rec.txt", Format::Lines),
        ("ml-100k-u.data", Format::UData),
        ("ml-latest-small-ratings.csv", Format::Csv),
    ];
    for (name, format) in want {
        let Some(p) = dataset(name) else { return };
        let head: Vec<u8> = std::fs::read(&p).unwrap().into_iter().take(4096).collect();
        assert_eq!(detect(&head), format, "{name}");
    }
}

#[test]
fn dense_ids_are_kept_and_sparse_ones_renumbered() {
    let Some(p) = dataset("ml-100k-u.data") else {
        return;
    };
    let s = load(&p, &auto()).unwrap();
    assert_eq!(s.item_ids, (1..=1682).collect::<Vec<u64>>());
    assert_eq!(s.user_ids, (1..=943).collect::<Vec<u64>>());
    let r = load(
        &p,
        &LoadOptions {
            renumber: true,
            ..auto()
        },
    )
    .unwrap();
    assert_eq!(r.num_items, 1682);
    // Renumbering is a relabelling: mapping back through item_ids gives the same originals.
    let orig = |s: &Sequences| -> Vec<u64> {
        s.items
            .iter()
            .map(|&i| s.item_ids[i as usize - 1])
            .collect()
    };
    assert_eq!(orig(&r), orig(&s));
    assert_eq!(r.items[0], 1);

    let Some(csv) = dataset("ml-latest-small-ratings.csv") else {
        return;
    };
    let c = load(&csv, &auto()).unwrap();
    assert_eq!(*c.item_ids.iter().max().unwrap(), 193_609);
}

/// The README built ml-1m.txt from the original ids by dropping movies with fewer than 5
/// ratings and numbering by first appearance; our 5-core does the same.
#[test]
fn five_core_of_original_ml1m_is_ml1m_txt() {
    let (Some(orig), Some(txt)) = (dataset("ml-1m-seq-origids.txt"), dataset("ml-1m.txt")) else {
        return;
    };
    let core = load(
        &orig,
        &LoadOptions {
            kcore: Some(5),
            ..auto()
        },
    )
    .unwrap();
    let sasrec = load(&txt, &auto()).unwrap();
    assert_eq!(core.offsets, sasrec.offsets);
    assert_eq!(core.items, sasrec.items);
    assert_eq!(core.user_ids, sasrec.user_ids);
    assert_eq!(core.num_items, 3416);
}

#[test]
fn ml1m_binary_round_trip() {
    let Some(p) = dataset("ml-1m.txt") else {
        return;
    };
    let s = load(&p, &auto()).unwrap();
    let bin = temp_path("ml-1m.bin");
    write_binary(&s, &bin).unwrap();
    let t = Instant::now();
    let back = read_binary(&bin).unwrap();
    eprintln!("ml-1m binary read in {:.2?}", t.elapsed());
    assert_eq!(back, s);
    assert_eq!(load(&bin, &auto()).unwrap(), s);
    std::fs::remove_file(&bin).unwrap();
}
