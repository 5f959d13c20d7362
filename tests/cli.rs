//! The binary end to end on tiny data: train, eval, resume, and every kind of bad input
//! giving a one-line error (exit code 2) that names the file, line or flag.

use pasa::checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pasa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pasa"))
        .args(args)
        .output()
        .expect("runs")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pasa-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 40 users over 12 items, lengths 5..12, in `user item` pairs.
fn tiny_data(dir: &Path) -> PathBuf {
    let mut s = String::new();
    for u in 1..=40u32 {
        let len = 5 + u % 8;
        for t in 0..len {
            s += &format!("{u} {}\n", 1 + (u * 7 + t * 3 + t * t) % 12);
        }
    }
    let p = dir.join("tiny.txt");
    std::fs::write(&p, s).unwrap();
    p
}

const SMALL: &[&str] = &[
    "--device",
    "cpu",
    "--d",
    "8",
    "--n",
    "6",
    "--batch",
    "8",
    "--eval-batch",
    "16",
];

fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    pasa(&args)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// A usage error from clap: exit code 2, no panic, stderr naming every `needle`.
fn assert_clap_error(o: &Output, needles: &[&str]) {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}: {err}");
    }
}

/// Exit code 2, no panic, and a last stderr line `error: …` containing every `needle`.
fn assert_error(o: &Output, needles: &[&str]) {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr:\n{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "a panic:\n{err}"
    );
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: "),
        "last line is not an error: {last}"
    );
    for n in needles {
        assert!(last.contains(n), "error does not mention {n:?}: {last}");
    }
}

#[test]
fn train_then_eval_end_to_end() {
    let dir = tmp("e2e");
    let data = tiny_data(&dir);
    let run = dir.join("run");
    let o = train(&data, &run, &["--model", "pasa", "--epochs", "2"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "train failed:\n{err}");
    assert!(
        out.contains("full ranking") && out.contains("NDCG"),
        "{out}"
    );
    let mut files: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "best.safetensors",
            "config.toml",
            "last.safetensors",
            "metrics.jsonl",
            "test.json",
            "times.jsonl"
        ],
        "one file per checkpoint, nothing else"
    );
    let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count(),
        3,
        "two epochs and the test line:\n{lines}"
    );
    for l in lines.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON");
    }
    // The run's config is the echoed one and names the model.
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        cfg.contains("name = \"pasa\"") && cfg.contains("u = \"toeplitz\""),
        "{cfg}"
    );

    let o = pasa(&[
        "eval",
        run.to_str().unwrap(),
        "--protocol",
        "all",
        "--device",
        "cpu",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "eval failed:\n{err}");
    for p in [
        "full ranking",
        "seen items excluded",
        "sampled: 1 positive + 100 negatives",
    ] {
        assert!(out.contains(p), "eval output lacks {p}:\n{out}");
    }
    let o = pasa(&[
        "eval",
        run.join("best.safetensors").to_str().unwrap(),
        "--json",
        "--split",
        "valid",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(v["split"], "valid");
    assert!(v["metrics"][0]["NDCG@10"].is_number(), "{v}");
}

#[test]
fn resume_ends_at_the_same_parameters() {
    let dir = tmp("resume");
    let data = tiny_data(&dir);
    let (a, b) = (dir.join("a"), dir.join("b"));
    let common = ["--model", "sasrec", "--seed", "5", "--patience", "0"];
    let o = train(&data, &a, &[&common[..], &["--epochs", "3"]].concat());
    assert!(o.status.success(), "{}", text(&o).1);
    let o = train(&data, &b, &[&common[..], &["--epochs", "1"]].concat());
    assert!(o.status.success(), "{}", text(&o).1);
    let o = pasa(&[
        "train",
        "--resume",
        b.to_str().unwrap(),
        "--epochs",
        "3",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let (ta, ma) = checkpoint::load(&a.join("last.safetensors")).unwrap();
    let (tb, mb) = checkpoint::load(&b.join("last.safetensors")).unwrap();
    assert_eq!(ma["step"], mb["step"]);
    assert_eq!(ma["epoch"], 3);
    assert_eq!(ta.len(), tb.len());
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x.name, y.name);
        let same = x
            .data
            .iter()
            .zip(&y.data)
            .all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(
            same,
            "{} differs between the resumed and the uninterrupted run",
            x.name
        );
    }
}

#[test]
fn bad_data_files_name_the_file_and_line() {
    let dir = tmp("bad-data");
    let cases: &[(&str, &str, &[&str])] = &[
        ("malformed.txt", "1 2\n1 3\n1 x\n", &["malformed.txt:3"]),
        ("negative.txt", "1 2\n1 -3\n1 4\n", &["negative.txt:2"]),
        ("empty.txt", "", &["empty.txt"]),
        ("short.txt", "1 2\n1 3\n2 4\n2 5\n", &["3 items"]),
    ];
    for (name, body, needles) in cases {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let o = train(&p, &dir.join(format!("run-{name}")), &["--epochs", "1"]);
        assert_error(&o, needles);
    }
    let o = train(&dir.join("missing.txt"), &dir.join("r"), &["--epochs", "1"]);
    assert_error(&o, &["missing.txt"]);
    let o = train(&dir, &dir.join("r2"), &["--epochs", "1"]);
    assert_error(&o, &["directory"]);
}

#[test]
fn bad_flags_are_named() {
    let dir = tmp("bad-flags");
    let data = tiny_data(&dir);
    let d = data.to_str().unwrap();
    // Window longer than every sequence (the longest has 12 items).
    let o = pasa(&[
        "train",
        "--data",
        d,
        "--n",
        "50",
        "--device",
        "cpu",
        "--out",
        dir.join("r1").to_str().unwrap(),
    ]);
    assert_error(&o, &["--n", "longer than every sequence"]);
    let o = train(&data, &dir.join("r2"), &["--heads", "3"]);
    assert_error(&o, &["--heads"]);
    let o = train(&data, &dir.join("r3"), &["--synthetic-users", "10"]);
    assert_error(&o, &["--synthetic-users", "--data"]);
    let o = pasa(&["train", "--format", "pairs", "--device", "cpu"]);
    assert_error(&o, &["--format", "needs --data"]);
    let o = train(&data, &dir.join("r4"), &["--model", "bert4rec"]);
    assert_clap_error(&o, &["--model", "bert4rec", "sasrec"]);
    let o = train(&data, &dir.join("r5"), &["--protocol", "sampled7"]);
    assert_clap_error(&o, &["--protocol", "sampled7", "exclude-seen"]);
    let o = train(&data, &dir.join("r6"), &["--lr=-1"]);
    assert_error(&o, &["--lr"]);
    let o = train(&data, &dir.join("r7"), &["--ce-chunk", "0"]);
    assert_error(&o, &["--ce-chunk", "at least 1"]);
    // Past the GPU's grid limit, on every device alike.
    for (flag, value) in [("--batch", "65536"), ("--eval-batch", "100000")] {
        let out = dir.join(&flag[2..]);
        let o = pasa(&[
            "train",
            "--data",
            d,
            "--device",
            "cpu",
            flag,
            value,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_error(&o, &[flag, "65535"]);
    }
    // A diverging run stops with the steps where the loss stopped being finite.
    let o = train(&data, &dir.join("r9"), &["--lr", "1e30", "--epochs", "3"]);
    assert_error(&o, &["the loss became", "at a step between", "--lr"]);
    // clap's own errors also exit with 2.
    let o = pasa(&["train", "--epochs", "many"]);
    assert_eq!(o.status.code(), Some(2));

    // An existing run is never overwritten, and --resume takes no model flags.
    let run = dir.join("run");
    // (A chunk of the CE loss that divides nothing: recorded in the configuration.)
    assert!(train(&data, &run, &["--epochs", "1", "--ce-chunk", "7"])
        .status
        .success());
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("ce_chunk = 7"), "{config}");
    let o = train(&data, &run, &["--epochs", "1"]);
    assert_error(&o, &["--out", "already holds a run"]);
    let o = pasa(&["train", "--resume", run.to_str().unwrap(), "--d", "16"]);
    assert_error(&o, &["--d", "contradicts --resume"]);
    let o = pasa(&["train", "--resume", dir.to_str().unwrap(), "--epochs", "2"]);
    assert_error(&o, &["holds no run to resume", "config.toml"]);
}

#[test]
fn bad_checkpoints_are_named() {
    let dir = tmp("bad-ckpt");
    let data = tiny_data(&dir);
    let run = dir.join("run");
    // (A chunk of the CE loss that divides nothing: recorded in the configuration.)
    assert!(train(&data, &run, &["--epochs", "1", "--ce-chunk", "7"])
        .status
        .success());
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("ce_chunk = 7"), "{config}");
    let best = run.join("best.safetensors");

    // Shapes that do not match the configuration: the metadata claims d = 16.
    let (tensors, mut meta) = checkpoint::load(&best).unwrap();
    meta["config"]["model"]["d"] = 16.into();
    meta["config"]["model"]["d_ff"] = 16.into();
    let wrong = dir.join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|t| (t.name.as_str(), &t.shape[..], &t.data[..]))
        .collect();
    checkpoint::save(&wrong.join("best.safetensors"), &refs, &meta).unwrap();
    let o = pasa(&["eval", wrong.to_str().unwrap(), "--device", "cpu"]);
    assert_error(&o, &["best.safetensors", "shape"]);

    // A truncated checkpoint.
    let cut = dir.join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    let bytes = std::fs::read(&best).unwrap();
    std::fs::write(cut.join("best.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let o = pasa(&["eval", cut.to_str().unwrap(), "--device", "cpu"]);
    assert_error(&o, &["best.safetensors", "damaged"]);

    // Flipped bytes inside the tensor data: damage, not a NaN loss later.
    let flip = dir.join("flip");
    std::fs::create_dir_all(&flip).unwrap();
    let mut b = bytes.clone();
    let at = b.len() - 10;
    b[at] ^= 0x40;
    std::fs::write(flip.join("best.safetensors"), &b).unwrap();
    let o = pasa(&["eval", flip.to_str().unwrap(), "--device", "cpu"]);
    assert_error(&o, &["best.safetensors", "checksum mismatch", "damaged"]);

    let o = pasa(&["eval", dir.join("nothing").to_str().unwrap()]);
    assert_error(&o, &["nothing"]);
}

#[test]
fn data_stats_and_convert() {
    let dir = tmp("data");
    let data = tiny_data(&dir);
    let bin = dir.join("tiny.bin");
    let o = pasa(&[
        "data",
        "convert",
        data.to_str().unwrap(),
        bin.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let o = pasa(&["data", "stats", bin.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("40") && out.contains("12"), "{out}");
    // Training reads the binary file as well.
    let o = train(&bin, &dir.join("run"), &["--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o).1);
}

#[test]
fn toml_config_is_applied_and_flags_override_it() {
    let dir = tmp("toml");
    let data = tiny_data(&dir);
    let cfg = dir.join("exp.toml");
    // The file picks the model (so its preset's knobs apply), the epochs and a kernel.
    std::fs::write(
        &cfg,
        "epochs = 2\n[model]\nname = \"pasa\"\nl = \"toeplitz\"\nd = 16\n",
    )
    .unwrap();
    let run = dir.join("run");
    let o = train(&data, &run, &["--config", cfg.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("# configuration"),
        "the configuration is echoed:\n{err}"
    );
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    // pasa's preset (toeplitz U, no PE), the file's L and epochs, the flag's d (8 beats 16).
    for want in [
        "name = \"pasa\"",
        "u = \"toeplitz\"",
        "l = \"toeplitz\"",
        "pos_emb = false",
        "epochs = 2",
        "d = 8",
    ] {
        assert!(saved.contains(want), "config.toml lacks {want}:\n{saved}");
    }
    std::fs::write(&cfg, "[model]\ndepth = 3\n").unwrap();
    let o = train(
        &data,
        &dir.join("run2"),
        &["--config", cfg.to_str().unwrap()],
    );
    assert_error(&o, &["exp.toml", "depth"]);
}

/// Width, height and RGB bytes of a PNG.
fn read_png(p: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("decodes");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn kernels_export_csv_and_png() {
    let dir = tmp("kernels");
    let data = tiny_data(&dir);
    let run = dir.join("run");
    let per_head = ["--heads", "2", "--kernel-per-head", "true"];
    let o = train(
        &data,
        &run,
        &[&["--model", "pasa", "--epochs", "1"][..], &per_head].concat(),
    );
    assert!(o.status.success(), "{}", text(&o).1);

    let out = dir.join("k");
    let o = pasa(&[
        "kernels",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    // 2 blocks × (U, L) × 2 heads, a CSV, a heatmap and a profile each; then profiles.png.
    assert_eq!(stdout.matches("wrote ").count(), 25, "{stdout}");
    assert!(stdout.contains("profiles.png"), "{stdout}");
    assert!(stdout.contains("by distance"), "toeplitz U: {stdout}");

    let n = 6;
    let (tensors, _) = checkpoint::load(&run.join("best.safetensors")).unwrap();
    for b in 0..2 {
        for (role, toeplitz) in [("U", true), ("L", false)] {
            let name = format!("block{b}.{role}");
            let t = tensors.iter().find(|t| t.name == name).expect(&name);
            let per_head = t.data.len() / 2;
            for h in 0..2 {
                let stem = format!("{name}.h{h}");
                let csv = std::fs::read_to_string(out.join(format!("{stem}.csv"))).unwrap();
                let rows: Vec<&str> = csv.lines().collect();
                assert_eq!(rows.len(), n, "{stem}: {csv}");
                for (i, row) in rows.iter().enumerate() {
                    let cells: Vec<&str> = row.split(',').collect();
                    assert_eq!(cells.len(), n, "{stem} row {i}: {row}");
                    for (j, cell) in cells.iter().enumerate() {
                        if j > i {
                            assert!(cell.is_empty(), "{stem} [{i}][{j}] above the diagonal");
                            continue;
                        }
                        let at = if toeplitz { i - j } else { i * (i + 1) / 2 + j };
                        let want = t.data[h * per_head + at];
                        let got: f32 = cell.parse().unwrap();
                        assert_eq!(got.to_bits(), want.to_bits(), "{stem} [{i}][{j}]");
                    }
                }
                // Default scale: ceil(800 / 6) = 134 px per cell, in a frame (title, axes,
                // colour bar): the cells where the layout puts them, grey above the diagonal.
                let (w, hgt, px) = read_png(&out.join(format!("{stem}.png")));
                let lay = pasa::heatmap::layout(6, 6, 134);
                assert_eq!(
                    (w as usize, hgt as usize),
                    (lay.width, lay.height),
                    "{stem}"
                );
                let at = |i: usize, j: usize| {
                    let (x, y) = (lay.x0 + j * 134 + 67, lay.y0 + i * 134 + 67);
                    let o = (y * lay.width + x) * 3;
                    [px[o], px[o + 1], px[o + 2]]
                };
                assert_eq!(at(0, 5), pasa::heatmap::NO_DATA, "{stem}");
                assert_ne!(at(5, 0), pasa::heatmap::NO_DATA, "{stem}");
                let (pw, ph, _) = read_png(&out.join(format!("{stem}.profile.png")));
                assert!(pw > 400 && ph > 300, "{stem}: profile {pw}×{ph}");
            }
        }
    }

    // The last checkpoint, a chosen scale, the default directory beside the checkpoint.
    let o = pasa(&[
        "kernels",
        run.to_str().unwrap(),
        "--which",
        "last",
        "--scale",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let (w, h, _) = read_png(&run.join("kernels-last").join("block1.L.h1.png"));
    let lay = pasa::heatmap::layout(6, 6, 2);
    assert_eq!((w as usize, h as usize), (lay.width, lay.height));

    // A model without positional matrices says so and succeeds.
    let plain = dir.join("plain");
    assert!(train(&data, &plain, &["--epochs", "1"]).status.success());
    let o = pasa(&["kernels", plain.to_str().unwrap()]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(stdout.contains("nothing to export"), "{stdout}");
    assert!(!plain.join("kernels-best").exists());

    // Bad paths are named.
    let o = pasa(&["kernels", dir.join("nowhere").to_str().unwrap()]);
    assert_error(&o, &["nowhere"]);
    let bad_out = run.join("config.toml").join("k");
    let o = pasa(&[
        "kernels",
        run.to_str().unwrap(),
        "--out",
        bad_out.to_str().unwrap(),
    ]);
    assert_error(&o, &["config.toml"]);
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let o = pasa(&["kernels", garbage.to_str().unwrap()]);
    assert_error(&o, &["garbage.safetensors"]);
    let best = run.join("best.safetensors");
    let o = pasa(&["kernels", best.to_str().unwrap(), "--which", "last"]);
    assert_error(&o, &["--which", "best.safetensors"]);
    let o = pasa(&["kernels", run.to_str().unwrap(), "--scale", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `pasa bench` at a shape that runs in milliseconds; tests add `--iters`.
const TINY_BENCH: &[&str] = &[
    "bench", "--device", "cpu", "--batch", "2", "--n", "8", "--d", "8", "--warmup", "1",
];

#[test]
fn bench_json_has_every_case_with_positive_medians() {
    let mut args = TINY_BENCH.to_vec();
    args.extend(["--iters", "2", "--json"]);
    let o = pasa(&args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "bench failed:\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("stdout is one JSON document");
    assert!(v["device"].as_str().unwrap().starts_with("cpu"), "{v}");
    assert_eq!(
        (v["shape"]["n"].as_u64(), v["iters"].as_u64()),
        (Some(8), Some(2))
    );
    let rows = v["results"].as_array().expect("results");
    let cases: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["model"].as_str().unwrap(), r["case"].as_str().unwrap()))
        .collect();
    let want: Vec<(&str, &str)> = ["sasrec", "pasa"]
        .into_iter()
        .flat_map(|m| ["attention_fwd", "attention_bwd", "train_step"].map(|c| (m, c)))
        .collect();
    assert_eq!(cases, want);
    for r in rows {
        for k in ["median_ms", "min_ms", "max_ms"] {
            let x = r[k].as_f64().unwrap_or(f64::NAN);
            assert!(x.is_finite() && x > 0.0, "{k} of {r}");
        }
        let rate = if r["case"] == "train_step" {
            "tokens_per_s"
        } else {
            "gflop_per_s"
        };
        assert!(r[rate].as_f64().is_some_and(|x| x > 0.0), "{rate} of {r}");
    }
}

#[test]
fn bench_table_starts_with_device_and_shape() {
    let mut args = TINY_BENCH.to_vec();
    args.extend(["--model", "parec", "--iters", "1"]);
    let o = pasa(&args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "bench failed:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("device: cpu"), "{out}");
    assert!(lines[1].starts_with("shape: batch 2, n 8, d 8"), "{out}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("parec ")).count(),
        3,
        "{out}"
    );
}

#[test]
fn bad_bench_flags_are_named() {
    let bad = |extra: &[&str], needles: &[&str]| {
        let mut args = vec!["bench", "--device", "cpu"];
        args.extend_from_slice(extra);
        assert_error(&pasa(&args), needles);
    };
    bad(&["--heads", "3"], &["--heads", "--d"]);
    bad(&["--iters", "0"], &["--iters"]);
    bad(&["--batch", "0"], &["--batch"]);
    bad(&["--batch", "70000"], &["--batch", "65535"]);
    bad(&["--items", "0"], &["--items"]);
    bad(&["--ce-chunk", "0"], &["--ce-chunk"]);
    bad(&["--model", "bert"], &["--model", "bert"]);
}

/// The bytes of a run's files that a resume of a finished run must leave alone.
fn run_files(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn resume_run(run: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    pasa(&args)
}

#[test]
fn resume_of_a_finished_run_says_so_and_changes_nothing() {
    let dir = tmp("finished");
    let data = tiny_data(&dir);
    let run = dir.join("run");
    assert!(train(&data, &run, &["--epochs", "2", "--patience", "0"])
        .status
        .success());
    let before = run_files(&run);
    for extra in [&[][..], &["--epochs", "1"], &["--epochs", "2"]] {
        let o = resume_run(&run, extra);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert!(out.contains("is finished"), "{extra:?}: {out}");
        assert!(!err.contains("# configuration"), "{err}");
        assert!(run_files(&run) == before, "{extra:?} changed the run");
    }
    // Raising --epochs trains on to the new total; config.toml follows.
    let o = resume_run(&run, &["--epochs", "3"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(cfg.contains("epochs = 3"), "{cfg}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let epochs: Vec<_> = lines.iter().map(|l| l["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs.len(), 4, "{metrics}");
    assert_eq!(&epochs[..3], [1, 2, 3]);
    assert!(lines[3].get("test").is_some(), "one test line, last");
    assert_eq!(lines.iter().filter(|l| l.get("test").is_some()).count(), 1);
}

#[test]
fn same_seed_gives_identical_metrics() {
    let dir = tmp("repro");
    let data = tiny_data(&dir);
    let (a, b) = (dir.join("a"), dir.join("b"));
    let args = ["--model", "pasa", "--epochs", "2", "--seed", "4"];
    assert!(train(&data, &a, &args).status.success());
    assert!(train(&data, &b, &args).status.success());
    for f in ["metrics.jsonl", "test.json", "config.toml"] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between two runs of one seed");
    }
}

#[test]
fn errors_come_before_the_configuration_is_printed() {
    let dir = tmp("early");
    let data = tiny_data(&dir);
    // Every user too short for the leave-one-out split: the error names the file.
    let short = dir.join("short.txt");
    std::fs::write(&short, "1 2\n1 3\n2 4\n2 5\n").unwrap();
    let o = train(&short, &dir.join("r1"), &["--epochs", "1"]);
    assert_error(&o, &["short.txt", "3 items"]);
    assert!(!text(&o).1.contains("# configuration"));
    // A window longer than every sequence.
    let r2 = dir.join("r2");
    let o = pasa(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--n",
        "40",
        "--device",
        "cpu",
        "--out",
        r2.to_str().unwrap(),
    ]);
    assert_error(&o, &["--n", "longer than every sequence", "tiny.txt"]);
    assert!(!text(&o).1.contains("# configuration"));
    assert!(!r2.exists(), "nothing written for a refused run");
    // A damaged checkpoint stops a resume before anything runs.
    let run = dir.join("run");
    // (A chunk of the CE loss that divides nothing: recorded in the configuration.)
    assert!(train(&data, &run, &["--epochs", "1", "--ce-chunk", "7"])
        .status
        .success());
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("ce_chunk = 7"), "{config}");
    let last = run.join("last.safetensors");
    let mut b = std::fs::read(&last).unwrap();
    let at = b.len() - 4;
    b[at] ^= 0x01;
    std::fs::write(&last, &b).unwrap();
    let o = resume_run(&run, &["--epochs", "2"]);
    assert_error(&o, &["last.safetensors", "checksum mismatch", "damaged"]);
    assert!(!text(&o).1.contains("# configuration"));
}

#[test]
fn runs_started_in_the_same_second_get_their_own_directories() {
    let dir = tmp("same-second");
    let data = tiny_data(&dir);
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_pasa"))
                .current_dir(&dir)
                .args(["train", "--data", data.to_str().unwrap(), "--epochs", "1"])
                .args(SMALL)
                .output()
        })
        .collect();
    for c in children {
        let o = c.unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
    }
    let runs: Vec<_> = std::fs::read_dir(dir.join("runs")).unwrap().collect();
    assert_eq!(runs.len(), 3, "three runs, three directories");
}

#[test]
fn a_relative_data_path_works_from_anywhere() {
    let dir = tmp("relative");
    tiny_data(&dir);
    let o = Command::new(env!("CARGO_BIN_EXE_pasa"))
        .current_dir(&dir)
        .args([
            "train", "--data", "tiny.txt", "--out", "run", "--epochs", "1",
        ])
        .args(SMALL)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let run = dir.join("run");
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let abs = dir.join("tiny.txt");
    assert!(cfg.contains(abs.to_str().unwrap()), "{cfg}");
    // From another directory: resume and eval find the data.
    let elsewhere = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pasa"))
            .current_dir("/")
            .args(args)
            .output()
            .unwrap()
    };
    let r = run.to_str().unwrap();
    let o = elsewhere(&["train", "--resume", r, "--epochs", "2", "--device", "cpu"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let o = elsewhere(&["eval", r, "--device", "cpu"]);
    assert!(o.status.success(), "{}", text(&o).1);
    // When the data is gone, the error says where the path came from.
    std::fs::rename(&abs, dir.join("moved.txt")).unwrap();
    let o = elsewhere(&["train", "--resume", r, "--epochs", "3", "--device", "cpu"]);
    assert_error(
        &o,
        &["tiny.txt", "the data file of the run's configuration"],
    );
    let o = elsewhere(&["eval", r, "--device", "cpu"]);
    assert_error(&o, &["tiny.txt", "configuration"]);
}

#[test]
fn train_help_gives_every_flag_a_line_and_its_default() {
    let o = pasa(&["train", "--help"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    // Each option's entry: from its `--flag` line to the next one.
    let mut entries: Vec<(String, String)> = vec![];
    for line in out.lines() {
        let t = line.trim_start();
        if t.starts_with("--") || t.starts_with("-h,") {
            let flag = t
                .trim_start_matches("-h, ")
                .split([' ', '='])
                .next()
                .unwrap()
                .to_string();
            entries.push((flag, t.to_string()));
        } else if let Some(e) = entries.last_mut() {
            e.1 += " ";
            e.1 += t;
        }
    }
    assert!(entries.len() > 30, "{out}");
    let mut texts = std::collections::HashSet::new();
    for (flag, entry) in &entries {
        if flag == "--help" || flag == "--version" {
            continue;
        }
        let words = entry.split_whitespace().count();
        assert!(words >= 4, "{flag} has no description: {entry}");
        assert!(
            entry.contains("[default: "),
            "{flag} shows no default: {entry}"
        );
        assert!(
            !entry.contains("[`"),
            "{flag}: an intra-doc link leaks: {entry}"
        );
        let description = entry.split_once(' ').map_or("", |x| x.1).trim();
        assert!(
            texts.insert(description.to_string()),
            "{flag} repeats: {entry}"
        );
    }
}

#[test]
fn toml_errors_name_the_file_and_the_key() {
    let dir = tmp("toml-errors");
    let data = tiny_data(&dir);
    let cfg = dir.join("bad.toml");
    for (body, key) in [
        ("[model]\nname = \"bogus\"\n", "model.name"),
        ("[optim]\nlr = nan\n", "optim.lr"),
        ("epochs = -1\n", "epochs"),
    ] {
        std::fs::write(&cfg, body).unwrap();
        let o = train(&data, &dir.join("r"), &["--config", cfg.to_str().unwrap()]);
        assert_error(&o, &["bad.toml", key]);
        let last = text(&o).1;
        assert!(
            !last.contains("--model") && !last.contains("--lr"),
            "{last}"
        );
    }
}

/// `--precision` other than fp32 is the GPU's: asked of the CPU it is an error naming the flag
/// (the run does not start), and an unknown mode is clap's error listing the modes.
#[test]
fn precision_other_than_fp32_on_the_cpu_is_an_error() {
    for mode in ["tf32", "bf16"] {
        for cmd in [
            &[
                "train",
                "--device",
                "cpu",
                "--precision",
                mode,
                "--epochs",
                "1",
            ][..],
            &[
                "bench",
                "--device",
                "cpu",
                "--precision",
                mode,
                "--iters",
                "1",
            ][..],
        ] {
            assert_error(
                &pasa(cmd),
                &[
                    "--precision",
                    mode,
                    "--device cuda",
                    "the CPU computes in f32",
                ],
            );
        }
    }
    assert_clap_error(
        &pasa(&["train", "--precision", "fp16"]),
        &["--precision", "fp32", "tf32", "bf16"],
    );
}
