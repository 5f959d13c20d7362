//! `pasa sweep` and `pasa report` on a tiny grid (synthetic data, 2 models × 2 seeds, 2
//! epochs): the sweep runs every run, a sweep killed mid-way (at a commit point, and by
//! SIGKILL) and continued ends with the very files of an uninterrupted one, `command.txt`
//! reproduces its run, the page's numbers are the runs' own, the pictures are PNGs of the
//! expected size, and bad grids are named.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const GRID: &str = r#"
seeds = [0, 1]
[base]
synthetic_users = 150
synthetic_items = 40
n = 10
d = 8
batch = 32
epochs = 2
patience = 0
[[dataset]]
name = "synthetic"
[[run]]
name = "sasrec"
model = "sasrec"
[[run]]
name = "pasa"
model = "pasa"
"#;

/// (dataset/name/seed directory, in the sweep's order)
const RUNS: [&str; 4] = [
    "synthetic/sasrec/seed0",
    "synthetic/pasa/seed0",
    "synthetic/sasrec/seed1",
    "synthetic/pasa/seed1",
];

fn pasa(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pasa"));
    c.args(args)
        .current_dir(dir)
        .env("RAYON_NUM_THREADS", "2")
        .env_remove("PASA_FAILPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("pasa runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A fresh directory with the grid file `grid.toml` in it.
fn scratch(tag: &str, grid: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pasa-sweep-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("grid.toml"), grid).unwrap();
    d
}

/// `pasa sweep grid.toml --root runs --device cpu` in `dir`.
fn sweep(dir: &Path) -> Command {
    pasa(
        dir,
        &["sweep", "grid.toml", "--root", "runs", "--device", "cpu"],
    )
}

/// The files of a run that must not depend on interruptions.
const SAME: [&str; 5] = [
    "metrics.jsonl",
    "test.json",
    "test-exclude-seen.json",
    "config.toml",
    "command.txt",
];

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The uninterrupted sweep, run once for the tests that read it.
fn reference() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("ref", GRID);
        let o = run(sweep(&dir));
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}\n{err}");
        // One line per finished run, with the grid's progress.
        for (k, r) in RUNS.iter().enumerate() {
            let parts: Vec<&str> = r.split('/').collect();
            let seed = parts[2].trim_start_matches("seed");
            let line = format!(
                "[{}/4] synthetic {} seed {seed}: test NDCG@10 ",
                k + 1,
                parts[1]
            );
            assert!(out.contains(&line), "no {line:?} in\n{out}");
        }
        assert!(
            out.contains("4 runs trained, 0 already finished, 0 failed"),
            "{out}"
        );
        dir
    })
}

fn assert_same_runs(a: &Path, b: &Path) {
    for r in RUNS {
        for f in SAME {
            assert_eq!(
                read(&a.join("runs").join(r).join(f)),
                read(&b.join("runs").join(r).join(f)),
                "{r}/{f}"
            );
        }
    }
}

#[test]
fn a_finished_sweep_skips_every_run() {
    let dir = reference();
    let o = run(sweep(dir));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for (k, r) in RUNS.iter().enumerate() {
        let line = format!("[{}/4] skip runs/{r}: finished", k + 1);
        assert!(out.contains(&line), "no {line:?} in\n{out}");
    }
    // Every run directory has the command, the exclude-seen metrics and the curves.
    for r in RUNS {
        let d = dir.join("runs").join(r);
        let cmd = read(&d.join("command.txt"));
        assert!(
            cmd.starts_with("pasa train --model ")
                && cmd.contains(&format!(" --out runs/{r} --device cpu")),
            "{cmd}"
        );
        let (w, h) = png_size(&d.join("curves.png"));
        let label = if r.contains("pasa") { "pasa" } else { "sasrec" };
        assert_eq!((w, h), figure_size(2, &[label]), "{r}");
    }
}

#[test]
fn a_sweep_stopped_at_commit_points_continues_to_the_same_runs() {
    let reference = reference();
    let dir = scratch("failpoint", GRID);
    // Stopped in the first run after its last epoch's commit (before the best checkpoint's
    // rename), then in the second run at its first epoch, before anything was committed.
    let mut errs = vec![];
    for point in ["last-committed:2", "best-saved:1"] {
        let o = run({
            let mut c = sweep(&dir);
            c.env("PASA_FAILPOINT", point);
            c
        });
        assert_eq!(o.status.code(), Some(137), "{point}: {}", text(&o).1);
        errs.push(text(&o).1);
    }
    // The second sweep resumed the first run and finished it.
    assert!(
        errs[1].contains("[1/4] resume runs/synthetic/sasrec/seed0"),
        "{}",
        errs[1]
    );
    let o = run(sweep(&dir));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    // The third skips the first run, resumes the second (from its first epoch), starts two.
    assert!(
        out.contains("[1/4] skip runs/synthetic/sasrec/seed0: finished"),
        "{out}"
    );
    assert!(
        err.contains("[2/4] resume runs/synthetic/pasa/seed0"),
        "{err}"
    );
    assert!(
        err.contains("[3/4] start runs/synthetic/sasrec/seed1"),
        "{err}"
    );
    assert!(
        out.contains("3 runs trained, 1 already finished, 0 failed"),
        "{out}"
    );
    assert_same_runs(reference, &dir);
}

#[test]
fn a_sweep_killed_mid_run_continues_to_the_same_runs() {
    let reference = reference();
    let dir = scratch("sigkill", GRID);
    let mut child = sweep(&dir).spawn().unwrap();
    // Kill it as soon as the second run has written its first epoch.
    let watched = dir.join("runs").join(RUNS[1]).join("metrics.jsonl");
    let t0 = Instant::now();
    while !watched.exists() && t0.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let unfinished = RUNS
        .iter()
        .filter(|r| !dir.join("runs").join(r).join("test.json").exists())
        .count();
    assert!(
        unfinished >= 2,
        "the kill came too late: {unfinished} unfinished"
    );
    let o = run(sweep(&dir));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("[1/4] skip runs/synthetic/sasrec/seed0: finished"),
        "{out}"
    );
    assert_same_runs(reference, &dir);
}

#[test]
fn command_txt_reproduces_its_run() {
    let reference = reference();
    let run_dir = reference.join("runs").join(RUNS[1]);
    let cmd = read(&run_dir.join("command.txt"));
    let mut args: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    assert_eq!(&args[..2], ["pasa", "train"], "{cmd}");
    assert!(!cmd.contains('\''), "no quoting expected here: {cmd}");
    let out = args.iter().position(|a| a == "--out").unwrap() + 1;
    args[out] = "again".into();
    let o = run({
        let mut c = Command::new(env!("CARGO_BIN_EXE_pasa"));
        c.args(&args[1..])
            .current_dir(reference)
            .env("RAYON_NUM_THREADS", "2")
            .env_remove("PASA_FAILPOINT");
        c
    });
    assert!(o.status.success(), "{}", text(&o).1);
    for f in ["metrics.jsonl", "test.json", "config.toml"] {
        assert_eq!(
            read(&reference.join("again").join(f)),
            read(&run_dir.join(f)),
            "{f}"
        );
    }
    std::fs::remove_dir_all(reference.join("again")).unwrap();
}

#[test]
fn exclude_seen_metrics_are_pasa_evals() {
    let reference = reference();
    let run_dir = reference.join("runs").join(RUNS[3]);
    let o = run(pasa(
        reference,
        &[
            "eval",
            run_dir.to_str().unwrap(),
            "--protocol",
            "exclude-seen",
            "--json",
            "--device",
            "cpu",
        ],
    ));
    assert!(o.status.success(), "{}", text(&o).1);
    let eval: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ours: Value = serde_json::from_str(&read(&run_dir.join("test-exclude-seen.json"))).unwrap();
    assert_eq!(ours["test"], eval["metrics"][0]);
    assert_eq!(ours["epoch"], eval["epoch"]);
    assert_eq!(ours["test"]["protocol_key"], "exclude-seen");
}

/// Width and height of a PNG (and that it decodes).
fn png_size(p: &Path) -> (u32, u32) {
    let file = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("decodes");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    (info.width, info.height)
}

/// The size of a `pasa::plot::figure` of `panels` charts whose legend lists `labels`.
fn figure_size(panels: u32, labels: &[&str]) -> (u32, u32) {
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap() as u32;
    let (w, h) = pasa::plot::PANEL;
    (w * panels + 48 + 8 * longest, h + 36)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt(),
    )
}

#[test]
fn report_page_holds_the_runs_numbers_and_pictures() {
    let reference = reference();
    let report = |out: &str| {
        let o = run(pasa(
            reference,
            &[
                "report", "runs", "--out", out, "--notes", "notes.md", "--device", "cpu",
            ],
        ));
        let (stdout, err) = text(&o);
        assert!(o.status.success(), "{stdout}\n{err}");
        assert!(
            !err.contains("scoring"),
            "the sweep's exclude-seen files are used: {err}"
        );
        read(&reference.join(out))
    };
    std::fs::write(
        reference.join("notes.md"),
        "Read me first.\n## synthetic\nBlock 0 is flat.\n",
    )
    .unwrap();
    let page = report("doc/RESULTS.md");
    // The rows: one per model, n = 2 seeds each, test metrics = the runs' test.json.
    let test = |r: &str| -> Value {
        serde_json::from_str(&read(&reference.join("runs").join(r).join("test.json"))).unwrap()
    };
    let ex = |r: &str| -> Value {
        serde_json::from_str(&read(
            &reference
                .join("runs")
                .join(r)
                .join("test-exclude-seen.json"),
        ))
        .unwrap()
    };
    for (name, a, b) in [("sasrec", RUNS[0], RUNS[2]), ("pasa", RUNS[1], RUNS[3])] {
        let (m, s) = mean_std(&[
            test(a)["test"]["NDCG@10"].as_f64().unwrap(),
            test(b)["test"]["NDCG@10"].as_f64().unwrap(),
        ]);
        let (em, es) = mean_std(&[
            ex(a)["test"]["HR@10"].as_f64().unwrap(),
            ex(b)["test"]["HR@10"].as_f64().unwrap(),
        ]);
        let row = page
            .lines()
            .find(|l| l.starts_with(&format!("| {name} | 2 | ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{page}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[3], format!("{m:.4} ± {s:.4}"), "{row}");
        assert_eq!(cells[7], format!("{em:.4} ± {es:.4}"), "{row}");
        assert!(row.contains("cpu"), "{row}");
    }
    // Every command, the kernels of the best pasa run with the automatic description.
    for r in RUNS {
        let cmd = read(&reference.join("runs").join(r).join("command.txt"));
        assert!(page.contains(cmd.trim()), "missing {cmd}");
    }
    assert!(
        page.contains("## Where the runs ran")
            && page.contains("| synthetic | `runs/synthetic` | 4 of 4 |")
    );
    assert!(page.contains("**Automatic description**"));
    // Hand-written notes go where they belong, marked as such.
    let intro = page
        .find("Read me first.")
        .expect("the introduction's note");
    assert!(intro < page.find("## Where the runs ran").unwrap());
    let note = page.find("Block 0 is flat.").expect("the dataset's note");
    assert!(note > page.find("## synthetic").unwrap());
    assert!(page.contains("(written by hand in `notes.md`)"));
    for stem in ["block0.U", "block0.L", "block1.U", "block1.L"] {
        assert!(page.contains(&format!("| {stem} (")), "{stem}");
        let heat = reference.join(format!("doc/results/synthetic/kernels/{stem}.png"));
        let lay = pasa::heatmap::layout(10, 10, 64);
        assert_eq!(png_size(&heat), (lay.width as u32, lay.height as u32));
        assert!(page.contains(&format!("(results/synthetic/kernels/{stem}.png)")));
        let prof = reference.join(format!("doc/results/synthetic/kernels/{stem}.profile.png"));
        assert_eq!(png_size(&prof), figure_size(1, &[stem]));
    }
    let curves = reference.join("doc/results/synthetic/curves.png");
    assert_eq!(png_size(&curves), figure_size(2, &["sasrec", "pasa"]));
    assert!(page.contains("](results/synthetic/curves.png)"));
    let profiles = reference.join("doc/results/synthetic/kernels/profiles.png");
    assert_eq!(png_size(&profiles), figure_size(2, &["block 0", "block 1"]));
    // The same runs give the same page.
    let again = report("doc2/RESULTS.md");
    assert_eq!(
        again.replace("doc2/RESULTS.md", "doc/RESULTS.md"),
        page,
        "the page is a function of the runs"
    );
}

#[test]
fn a_failing_run_is_listed_and_the_sweep_goes_on() {
    // n = 100 is longer than every synthetic sequence (at most 80 items): an error at run time.
    let grid = GRID.replace(
        "[[run]]\nname = \"pasa\"\nmodel = \"pasa\"\n",
        "[[run]]\nname = \"long\"\nmodel = \"pasa\"\nn = 100\nseeds = [0]\n",
    );
    let dir = scratch("fail", &grid);
    let o = run(sweep(&dir));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(
        out.contains("[2/3] FAILED runs/synthetic/long/seed0: --n: window of 100"),
        "{out}"
    );
    assert!(
        out.contains("[3/3] synthetic sasrec seed 1: test NDCG@10"),
        "{out}"
    );
    assert!(out.contains("failed: runs/synthetic/long/seed0"), "{out}");
    assert!(
        err.contains("error: 1 of 3 runs of grid.toml failed"),
        "{err}"
    );

    // A grid changed under finished runs: they are not taken for the new settings.
    let changed = grid.replace("epochs = 2", "epochs = 3");
    std::fs::write(dir.join("grid.toml"), changed).unwrap();
    let o = run(sweep(&dir));
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        out.contains(
            "[1/3] FAILED runs/synthetic/sasrec/seed0: command.txt says the run was started \
             as `pasa train --model sasrec"
        ),
        "{out}"
    );
}

#[test]
fn bad_grids_are_named_before_anything_runs() {
    let cases = [
        (
            GRID.replace("model = \"pasa\"", "model = \"pasa\"\nreadng = \"mix\""),
            "grid.toml: run 'pasa': unknown key 'readng'",
        ),
        (
            GRID.replace(
                "model = \"pasa\"",
                "model = \"pasa\"\nreading = \"sideways\"",
            ),
            "grid.toml: run 'pasa' on dataset 'synthetic': invalid value 'sideways' for '--reading",
        ),
        (
            GRID.replace(
                "name = \"synthetic\"",
                "name = \"ml\"\ndata = \"no/such/file.txt\"",
            )
            .replace("synthetic_users = 150\nsynthetic_items = 40\n", ""),
            "grid.toml: dataset 'ml': data: no/such/file.txt is not a file",
        ),
        (
            GRID.replace("patience = 0", "patience = 0\nlr = -1.0"),
            "grid.toml: run 'sasrec' on dataset 'synthetic': --lr: must be a positive number",
        ),
    ];
    for (i, (grid, want)) in cases.iter().enumerate() {
        let dir = scratch(&format!("bad{i}"), grid);
        let o = run(sweep(&dir));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{want}: {out}{err}");
        assert!(err.contains(want), "want {want:?}, got {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!dir.join("runs").exists(), "nothing is started: {want}");
    }
    let dir = scratch("missing", GRID);
    let o = run(pasa(&dir, &["sweep", "nowhere.toml"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("nowhere.toml"));
    let o = run(pasa(&dir, &["report", "nowhere"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("nowhere: is not a directory of runs"));
}
