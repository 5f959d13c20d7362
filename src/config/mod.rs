//! The full configuration of a training run: model, optimiser, data and schedule.
//!
//! Built in layers ([`TrainConfig::build`]): the `--model` preset's defaults, then an optional
//! TOML file, then the command-line flags ([`flags`]). The result is echoed at start, written to
//! the run's `config.toml` and saved in every checkpoint, so a run can be resumed or evaluated
//! from its directory alone. Every bad setting is reported under the name the user gave it: the
//! flag, or the file and the key.

pub mod flags;

use crate::backend::MAX_GRID_YZ as MAX_WINDOWS;
use crate::data::synthetic::{self, SyntheticConfig};
use crate::data::{self, Format, LoadOptions, Sequences};
use crate::error::{Error, Result};
use crate::eval::Protocol;
use crate::models::{ModelConfig, Preset};
use crate::optim::AdamConfig;
use flags::{flag_of, ConfigFlags};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Input file (absolute); None trains on the built-in synthetic dataset.
    pub path: Option<PathBuf>,
    /// Reader of `path`.
    pub format: Format,
    /// k-core filtering (None = off).
    pub kcore: Option<usize>,
    /// The synthetic dataset's shape, used when `path` is None.
    pub synthetic: SyntheticConfig,
}

impl DataConfig {
    /// Loads the interactions this configuration names (or generates the synthetic ones). A
    /// text format that was auto-detected is named in a one-line note on stderr.
    pub fn load(&self) -> Result<Sequences> {
        let Some(p) = &self.path else {
            return Ok(synthetic::generate(&self.synthetic));
        };
        let opts = LoadOptions {
            format: self.format,
            kcore: self.kcore,
            renumber: false,
        };
        let (seqs, detected) = data::load_detected(p, &opts)?;
        if let Some(note) = detected.and_then(|d| data::cli::format_note(p, &d)) {
            eprintln!("{note}");
        }
        Ok(seqs)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub optim: AdamConfig,
    pub data: DataConfig,
    pub epochs: usize,
    pub batch: usize,
    /// Evaluate on the validation split every this many epochs.
    pub eval_every: usize,
    /// Stop after this many evaluations without a better validation NDCG@10 (0 = never).
    pub patience: usize,
    /// Users per evaluation batch.
    pub eval_batch: usize,
    /// Ranking protocol of validation and test.
    pub protocol: Protocol,
    pub seed: u64,
}

/// A setting that cannot be used: its configuration key and why. Reported under the flag that
/// sets the key ([`From`] into [`Error`]) or under the file and the key ([`Invalid::in_file`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub key: &'static str,
    pub msg: String,
}

impl Invalid {
    pub fn new(key: &'static str, msg: impl Into<String>) -> Self {
        Invalid {
            key,
            msg: msg.into(),
        }
    }

    /// The error of a bad value that came from the configuration file `path`.
    pub fn in_file(self, path: &Path) -> Error {
        Error::in_file(path, format!("{}: {}", self.key, self.msg))
    }
}

impl From<Invalid> for Error {
    fn from(i: Invalid) -> Error {
        Error::arg(flag_of(i.key).unwrap_or(i.key), i.msg)
    }
}

/// A configuration built from the layers, and whether the window length was chosen (by the
/// file or a flag) rather than defaulted: a defaulted one is cut to the longest sequence.
#[derive(Debug, Clone)]
pub struct Built {
    pub cfg: TrainConfig,
    pub n_given: bool,
}

impl TrainConfig {
    /// Defaults for a named model (the catalogue size is set once the data is loaded).
    pub fn for_model(name: Preset) -> Self {
        TrainConfig {
            model: ModelConfig::of(name, 1),
            optim: AdamConfig::default(),
            data: DataConfig {
                path: None,
                format: Format::Auto,
                kcore: None,
                synthetic: SyntheticConfig::default(),
            },
            epochs: 200,
            batch: 128,
            eval_every: 1,
            patience: 20,
            eval_batch: 256,
            protocol: Protocol::Full,
            seed: 0,
        }
    }

    /// The configuration of a new run: the preset (`--model`, else the file's `model.name`, else
    /// sasrec), then the TOML file `file`, then the flags. A relative data path is made absolute
    /// (against the current directory), so the run can be resumed from anywhere.
    pub fn build(file: Option<&Path>, flags: &ConfigFlags) -> Result<Built> {
        let file_layer = file.map(|p| read_toml(p).map(|v| (p, v))).transpose()?;
        let file_sets = |key: &str| {
            file_layer
                .as_ref()
                .is_some_and(|(_, v)| lookup(v, key).is_some())
        };
        let preset = match (flags.model, &file_layer) {
            (Some(m), _) => m,
            (None, Some((p, v))) => match lookup(v, "model.name") {
                Some(name) => decode::<Preset>(name.clone())
                    .map_err(|e| Error::in_file(p, format!("model.name: {e}")))?,
                None => Preset::Sasrec,
            },
            (None, None) => Preset::Sasrec,
        };
        let mut cfg = Self::for_model(preset);
        if let Some((path, v)) = &file_layer {
            cfg = cfg.overlay(v).map_err(|e| Error::in_file(path, e))?;
            if !file_sets("model.d_ff") {
                cfg.model.d_ff = cfg.model.d; // DESIGN §1: d_ff = d by default
            }
            cfg.check().map_err(|e| e.in_file(path))?;
        }

        let mut top = toml::Table::new();
        for g in flags.given() {
            insert(&mut top, g.key, g.value);
        }
        cfg = cfg
            .overlay(&toml::Value::Table(top))
            .map_err(|e| Error::msg(format!("a flag: {e}")))?;
        if flags.d_ff.is_none() && flags.d.is_some() && !file_sets("model.d_ff") {
            cfg.model.d_ff = cfg.model.d;
        }
        if flags.data.is_some()
            && (flags.synthetic_users.is_some() || flags.synthetic_items.is_some())
        {
            return Err(Error::arg(
                "--synthetic-users/--synthetic-items",
                "contradict --data: they shape the built-in dataset only",
            ));
        }
        if cfg.data.path.is_none() {
            for (given, flag) in [
                (flags.format.is_some(), "--format"),
                (flags.kcore.is_some(), "--kcore"),
            ] {
                if given {
                    return Err(Error::arg(flag, "needs --data"));
                }
            }
        }
        if let Some(p) = &cfg.data.path {
            let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
            cfg.data.path = Some(abs);
        }
        cfg.check()?;
        Ok(Built {
            n_given: flags.n.is_some() || file_sets("model.n"),
            cfg,
        })
    }

    /// Reads a run's `config.toml` (a whole configuration, as [`TrainConfig::to_toml`] wrote it).
    pub fn read(path: &Path) -> Result<Self> {
        let v = read_toml(path)?;
        let preset = lookup(&v, "model.name")
            .map(|n| decode::<Preset>(n.clone()))
            .transpose()
            .map_err(|e| Error::in_file(path, format!("model.name: {e}")))?
            .unwrap_or(Preset::Sasrec);
        let cfg = Self::for_model(preset)
            .overlay(&v)
            .map_err(|e| Error::in_file(path, e))?;
        cfg.check().map_err(|e| e.in_file(path))?;
        Ok(cfg)
    }

    /// These settings with `top` (a TOML table, any subset of the keys) laid over them. The
    /// error names the key whose value does not fit.
    fn overlay(&self, top: &toml::Value) -> std::result::Result<Self, String> {
        let mut base = toml::Value::try_from(self).expect("configurations are TOML");
        merge(&mut base, top.clone());
        decode(base)
    }

    /// The configuration as TOML, for the start-of-run echo and `config.toml`.
    pub fn to_toml(&self) -> String {
        // TOML has no null: unset options are left out (they read back as unset).
        let mut v = serde_json::to_value(self).expect("configs serialise");
        strip_nulls(&mut v);
        shortest_f32(&mut v);
        toml::to_string(&v).expect("configs are TOML-representable")
    }

    /// Validates every setting; the error names the key (and so the flag).
    pub fn check(&self) -> std::result::Result<(), Invalid> {
        self.model.validate()?;
        let pos = |key: &'static str, v: usize| {
            if v == 0 {
                Err(Invalid::new(key, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        // The GPU kernels put the windows of a batch on one grid dimension (y or z), which
        // CUDA limits to 65535 blocks; the cap is the same on the CPU so a run moves freely.
        let windows = |key: &'static str, v: usize| {
            pos(key, v)?;
            if v > MAX_WINDOWS {
                return Err(Invalid::new(
                    key,
                    format!(
                        "must be at most {MAX_WINDOWS} windows per batch (the CUDA grid limit)"
                    ),
                ));
            }
            Ok(())
        };
        pos("epochs", self.epochs)?;
        windows("batch", self.batch)?;
        pos("eval_every", self.eval_every)?;
        windows("eval_batch", self.eval_batch)?;
        if !(self.optim.lr > 0.0 && self.optim.lr.is_finite()) {
            return Err(Invalid::new(
                "optim.lr",
                format!("must be a positive number, not {}", self.optim.lr),
            ));
        }
        if let Some(c) = self.optim.clip {
            if c.is_nan() || c <= 0.0 {
                return Err(Invalid::new(
                    "optim.clip",
                    format!("must be positive, not {c}"),
                ));
            }
        }
        if !(self.optim.weight_decay >= 0.0 && self.optim.weight_decay.is_finite()) {
            return Err(Invalid::new(
                "optim.weight_decay",
                format!(
                    "must be a non-negative number, not {}",
                    self.optim.weight_decay
                ),
            ));
        }
        if self.data.path.is_none() {
            let s = &self.data.synthetic;
            pos("data.synthetic.users", s.users)?;
            pos("data.synthetic.items", s.items)?;
            if s.items > u32::MAX as usize {
                return Err(Invalid::new("data.synthetic.items", "too many for u32 ids"));
            }
            if s.min_len == 0 || s.min_len > s.max_len {
                return Err(Invalid::new(
                    "data.synthetic.min_len",
                    format!(
                        "lengths must satisfy 1 <= min_len <= max_len, got {}..{}",
                        s.min_len, s.max_len
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Reads a TOML file; errors name the file (and toml's own message names the line).
fn read_toml(path: &Path) -> Result<toml::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: toml::Table = toml::from_str(&text).map_err(|e| {
        Error::in_file(
            path,
            format!("not valid TOML: {}", one_line(&e.to_string())),
        )
    })?;
    Ok(toml::Value::Table(v))
}

/// A multi-line message (toml's errors quote the line) on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Deserialises `v`; the error names the dotted key that failed ("model.name: unknown
/// variant ...").
fn decode<T: serde::de::DeserializeOwned>(v: toml::Value) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let key = e.path().to_string();
        let inner = one_line(&e.into_inner().to_string());
        if key == "." {
            inner
        } else {
            format!("{key}: {inner}")
        }
    })
}

/// The value at a dotted key of a TOML table.
fn lookup<'a>(v: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

/// Sets the value at a dotted key, creating the tables on the way.
fn insert(t: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            t.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let sub = t
                .entry(head.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(sub) = sub {
                insert(sub, rest, value);
            }
        }
    }
}

/// Recursively overlay `top` on `base` (tables merge key by key; anything else replaces).
fn merge(base: &mut toml::Value, top: toml::Value) {
    match (base, top) {
        (toml::Value::Table(b), toml::Value::Table(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, t) => *b = t,
    }
}

/// Every float of a configuration is an f32: print it as the shortest decimal that reads
/// back to the same f32 (0.2, not 0.20000000298023224).
fn shortest_f32(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(x) if x.is_f64() => {
            let short: f64 = (x.as_f64().unwrap_or(0.0) as f32)
                .to_string()
                .parse()
                .unwrap_or(0.0);
            if let Some(n) = serde_json::Number::from_f64(short) {
                *x = n;
            }
        }
        serde_json::Value::Object(m) => m.values_mut().for_each(shortest_f32),
        serde_json::Value::Array(a) => a.iter_mut().for_each(shortest_f32),
        _ => {}
    }
}

fn strip_nulls(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        m.retain(|_, x| !x.is_null());
        m.values_mut().for_each(strip_nulls);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::KernelKind;

    /// A TOML file with `text` under the temp dir, removed when dropped.
    struct TomlFile(PathBuf);

    impl Drop for TomlFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn toml_file(tag: &str, text: &str) -> TomlFile {
        let p = std::env::temp_dir().join(format!("pasa-cfg-{tag}-{}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        TomlFile(p)
    }

    fn build(file: &TomlFile, flags: &ConfigFlags) -> Result<Built> {
        TrainConfig::build(Some(&file.0), flags)
    }

    #[test]
    fn toml_overlay_changes_only_what_it_names() {
        let f = toml_file(
            "overlay",
            "epochs = 7\n[model]\nname = \"pasa\"\nd = 32\nl = \"toeplitz\"\n[optim]\nclip = 1.0\n",
        );
        let c = build(&f, &ConfigFlags::default()).unwrap().cfg;
        let base = TrainConfig::for_model(Preset::Pasa);
        assert_eq!((c.epochs, c.model.d, c.optim.clip), (7, 32, Some(1.0)));
        assert_eq!(c.model.l, KernelKind::Toeplitz);
        assert_eq!(c.model.u, base.model.u);
        // d_ff follows the file's d, as it follows --d.
        assert_eq!(c.model.d_ff, 32);
    }

    #[test]
    fn flags_override_the_file() {
        let f = toml_file("flags", "epochs = 7\nseed = 3\n[model]\nd = 32\n");
        let flags = ConfigFlags {
            epochs: Some(9),
            d: Some(48),
            ..Default::default()
        };
        let b = build(&f, &flags).unwrap();
        assert_eq!((b.cfg.epochs, b.cfg.seed, b.cfg.model.d), (9, 3, 48));
        assert_eq!(b.cfg.model.d_ff, 48);
        assert!(!b.n_given);
    }

    #[test]
    fn file_errors_name_the_file_and_the_key() {
        let cases = [
            (
                "[model]\nname = \"bogus\"\n",
                "model.name: unknown variant `bogus`",
            ),
            (
                "[optim]\nlr = nan\n",
                "optim.lr: must be a positive number, not NaN",
            ),
            ("[model]\ndepth = 3\n", "depth"),
            ("[model]\nd = \"wide\"\n", "model.d: invalid type"),
            ("protocol = \"best\"\n", "protocol: unknown variant `best`"),
            (
                "[data]\nformat = \"xml\"\n",
                "data.format: unknown variant `xml`",
            ),
            (
                "[model]\nheads = 5\n",
                "model.heads: d = 64 is not divisible by 5 heads",
            ),
            ("epochs = 0\n", "epochs: must be at least 1"),
            ("epochs = \n", "not valid TOML"),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let f = toml_file(&format!("err{i}"), text);
            let e = build(&f, &ConfigFlags::default()).unwrap_err().0;
            assert!(
                e.starts_with(&f.0.display().to_string()) && e.contains(want),
                "{text:?}: {e}"
            );
            assert!(!e.contains('\n'), "{e}");
            assert!(!e.contains("--"), "a file error names a flag: {e}");
        }
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let flags = ConfigFlags {
            lr: Some(f32::NAN),
            ..Default::default()
        };
        let e = TrainConfig::build(None, &flags).unwrap_err().0;
        assert!(e.starts_with("--lr: must be a positive number"), "{e}");
        let flags = ConfigFlags {
            format: Some(Format::Pairs),
            ..Default::default()
        };
        let e = TrainConfig::build(None, &flags).unwrap_err().0;
        assert_eq!(e, "--format: needs --data");
        let flags = ConfigFlags {
            heads: Some(3),
            ..Default::default()
        };
        let e = TrainConfig::build(None, &flags).unwrap_err().0;
        assert!(e.starts_with("--heads:"), "{e}");
    }

    #[test]
    fn a_relative_data_path_becomes_absolute() {
        let flags = ConfigFlags {
            data: Some(PathBuf::from("some/dir/data.txt")),
            ..Default::default()
        };
        let c = TrainConfig::build(None, &flags).unwrap().cfg;
        let p = c.data.path.unwrap();
        assert!(p.is_absolute(), "{}", p.display());
        assert!(p.ends_with("some/dir/data.txt"));
    }

    #[test]
    fn toml_echo_reads_back_identically() {
        let mut c = TrainConfig::for_model(Preset::Fparec);
        c.optim.clip = Some(5.0);
        c.data.format = Format::UData;
        c.protocol = Protocol::ExcludeSeen;
        let f = toml_file("echo", &c.to_toml());
        assert_eq!(TrainConfig::read(&f.0).unwrap(), c);
    }
}
