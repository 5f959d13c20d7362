//! The real datasets of ../shared/datasets: the README's counts, format detection, numbering,
//! the 5-core and the binary round trip at scale.
//!
//! A libtest-mimic harness (`harness = false`), so that without the datasets folder each trial
//! is reported as ignored, with the reason, instead of passing without having run.
//! `PASA_DATASETS` points at another folder (a git worktree has no ../shared next to it);
//! `PASA_REQUIRE_DATASETS=1` (CI) makes an absent folder a failure. The harness does not
//! capture output, so the trials print nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use pasa::data::{
    detect, load, read_binary, write_binary, Format, LoadOptions, Sequences, Split, Stats,
};

const DATASETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets");

fn main() {
    let args = Arguments::from_args();
    let mut trials = vec![];
    for (name, users, items, inter, min, max) in REAL {
        trials.push(trial(&format!("readme_counts::{name}"), move |dir| {
            readme_counts(&dir.join(name), (users, items, inter, min, max))
        }));
    }
    trials.push(trial("detected_as_expected", detected_as_expected));
    trials.push(trial(
        "dense_ids_are_kept_and_sparse_ones_renumbered",
        dense_ids_are_kept_and_sparse_ones_renumbered,
    ));
    trials.push(trial(
        "five_core_of_original_ml1m_is_ml1m_txt",
        five_core_of_original_ml1m_is_ml1m_txt,
    ));
    trials.push(trial("ml1m_binary_round_trip", ml1m_binary_round_trip));
    trials.push(trial(
        "committed_grids_plan_on_the_datasets",
        committed_grids_plan_on_the_datasets,
    ));
    trials.push(Trial::test(
        "an_absent_folder_is_ignored_unless_required",
        an_absent_folder_is_ignored_unless_required,
    ));
    libtest_mimic::run(&args, trials).exit();
}

/// What a trial does about the datasets folder.
#[derive(Debug, PartialEq)]
enum Folder {
    /// Run on it.
    Run(PathBuf),
    /// It is absent: be reported as ignored, with this reason.
    Ignore(String),
    /// It is absent and required (`PASA_REQUIRE_DATASETS`): fail with this message.
    Fail(String),
}

/// The folder `PASA_DATASETS` names, else ../shared/datasets.
fn datasets() -> Folder {
    let dir = std::env::var_os("PASA_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DATASETS));
    let required = std::env::var("PASA_REQUIRE_DATASETS").is_ok_and(|v| !v.is_empty() && v != "0");
    folder(dir, required)
}

fn folder(dir: PathBuf, required: bool) -> Folder {
    match (dir.is_dir(), required) {
        (true, _) => Folder::Run(dir),
        (false, false) => Folder::Ignore(format!(
            "datasets folder {} not found (PASA_DATASETS names another)",
            dir.display()
        )),
        (false, true) => Folder::Fail(format!(
            "PASA_REQUIRE_DATASETS is set but {} is not found",
            dir.display()
        )),
    }
}

/// A trial that runs `body` on the datasets folder, or is ignored (or fails, when required)
/// without it. `body` fails by panicking, as a `#[test]` does.
fn trial(name: &str, body: impl FnOnce(&Path) + Send + 'static) -> Trial {
    Trial::ignorable_test(name, move || match datasets() {
        Folder::Run(dir) => {
            body(&dir);
            Ok(Completion::Completed)
        }
        Folder::Ignore(reason) => Ok(Completion::ignored_with(reason)),
        Folder::Fail(m) => Err(Failed::from(m)),
    })
}

/// Runs with or without the datasets: the decision above.
fn an_absent_folder_is_ignored_unless_required() -> Result<(), Failed> {
    let absent = temp_path("no-such-folder");
    let reason = format!(
        "datasets folder {} not found (PASA_DATASETS names another)",
        absent.display()
    );
    assert_eq!(folder(absent.clone(), false), Folder::Ignore(reason));
    let m = format!(
        "PASA_REQUIRE_DATASETS is set but {} is not found",
        absent.display()
    );
    assert_eq!(folder(absent, true), Folder::Fail(m));
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(folder(here.clone(), true), Folder::Run(here));
    Ok(())
}

fn auto() -> LoadOptions {
    LoadOptions::default()
}

fn temp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("pasa-ds-{}-{n}-{name}", std::process::id()))
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

fn readme_counts(p: &Path, want: (usize, usize, usize, usize, usize)) {
    let (users, items, inter, min, max) = want;
    let s = load(p, &auto()).unwrap_or_else(|e| panic!("{e}"));
    let st = Stats::of(&s);
    assert_eq!((st.users, st.items, st.interactions), (users, items, inter));
    assert_eq!(st.len_min, min);
    // The README does not give max lengths for u.data and ratings.csv; these are ours.
    assert_eq!(st.len_max, max);
    s.validate().unwrap();
    Split::new(&s).unwrap();
}

fn detected_as_expected(dir: &Path) {
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
        let head: Vec<u8> = std::fs::read(dir.join(name))
            .unwrap()
            .into_iter()
            .take(4096)
            .collect();
        assert_eq!(detect(&head).unwrap().format, format, "{name}");
    }
}

fn dense_ids_are_kept_and_sparse_ones_renumbered(dir: &Path) {
    let p = dir.join("ml-100k-u.data");
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

    let c = load(&dir.join("ml-latest-small-ratings.csv"), &auto()).unwrap();
    assert_eq!(*c.item_ids.iter().max().unwrap(), 193_609);
}

/// The README built ml-1m.txt from the original ids by dropping movies with fewer than 5
/// ratings and numbering by first appearance; our 5-core does the same.
fn five_core_of_original_ml1m_is_ml1m_txt(dir: &Path) {
    let core = load(
        &dir.join("ml-1m-seq-origids.txt"),
        &LoadOptions {
            kcore: Some(5),
            ..auto()
        },
    )
    .unwrap();
    let sasrec = load(&dir.join("ml-1m.txt"), &auto()).unwrap();
    assert_eq!(core.offsets, sasrec.offsets);
    assert_eq!(core.items, sasrec.items);
    assert_eq!(core.user_ids, sasrec.user_ids);
    assert_eq!(core.num_items, 3416);
}

fn ml1m_binary_round_trip(dir: &Path) {
    let s = load(&dir.join("ml-1m.txt"), &auto()).unwrap();
    let bin = temp_path("ml-1m.bin");
    write_binary(&s, &bin).unwrap();
    let back = read_binary(&bin).unwrap();
    assert_eq!(back, s);
    assert_eq!(load(&bin, &auto()).unwrap(), s);
    std::fs::remove_file(&bin).unwrap();
}

/// The grids of experiments/ name files that are there and settings that build: `pasa sweep
/// --dry-run` checks every run (its flags, its configuration, its data file) and lists them.
/// The grids' data paths (../shared/datasets beside the repository) are pointed at the
/// datasets folder in use.
fn committed_grids_plan_on_the_datasets(dir: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = temp_path("grids");
    std::fs::create_dir_all(&tmp).unwrap();
    for (grid, runs, datasets) in [("cpu-ml100k", 40, 2), ("gpu", 120, 6)] {
        let text =
            std::fs::read_to_string(repo.join("experiments").join(format!("{grid}.toml"))).unwrap();
        let text = text.replace("../../shared/datasets/", &format!("{}/", dir.display()));
        let file = tmp.join(format!("{grid}.toml"));
        std::fs::write(&file, text).unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_pasa"))
            .args(["sweep", file.to_str().unwrap(), "--dry-run", "--root"])
            .arg(tmp.join("runs"))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{grid}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            out.starts_with(&format!(
                "sweep {}: {runs} runs ({datasets} datasets)",
                file.display()
            )),
            "{out}"
        );
        assert_eq!(out.matches(": pasa train ").count(), runs, "{out}");
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}
