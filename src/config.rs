//! The full configuration of a training run: model, optimiser, data and schedule.
//!
//! Built in layers: the model preset's defaults, then an optional TOML file, then the
//! command-line flags. The result is echoed at start and saved with every checkpoint, so
//! a run can be resumed or evaluated from its directory alone.

use crate::backend::MAX_GRID_YZ as MAX_WINDOWS;
use crate::data::synthetic::SyntheticConfig;
use crate::error::{Error, Result};
use crate::models::ModelConfig;
use crate::optim::AdamConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Input file; None trains on the built-in synthetic dataset.
    pub path: Option<PathBuf>,
    /// Reader: auto, pairs, lines, ml-dat, u-data, csv, binary.
    pub format: String,
    /// k-core filtering (None = off).
    pub kcore: Option<usize>,
    /// The synthetic dataset's shape, used when `path` is None.
    pub synthetic: SyntheticConfig,
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
    /// Ranking protocol: full, exclude-seen or sampled100.
    pub protocol: String,
    pub seed: u64,
}

impl TrainConfig {
    /// Defaults for a named model (the catalogue size is set once the data is loaded).
    pub fn for_model(name: &str) -> Result<Self> {
        Ok(TrainConfig {
            model: ModelConfig::preset(name, 1)?,
            optim: AdamConfig::default(),
            data: DataConfig {
                path: None,
                format: "auto".into(),
                kcore: None,
                synthetic: SyntheticConfig::default(),
            },
            epochs: 200,
            batch: 128,
            eval_every: 1,
            patience: 20,
            eval_batch: 256,
            protocol: "full".into(),
            seed: 0,
        })
    }

    /// Overlay a TOML file on these settings. Every key is optional; unknown keys are errors.
    pub fn overlay_toml(&self, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let file: toml::Value = toml::from_str(&text)
            .map_err(|e| Error::in_file(path, format!("not valid TOML: {e}")))?;
        let mut base = serde_json::to_value(self).expect("configs serialise");
        let file = serde_json::to_value(file).map_err(|e| Error::in_file(path, e))?;
        merge(&mut base, file);
        serde_json::from_value(base).map_err(|e| Error::in_file(path, e))
    }

    /// The configuration as TOML, for the start-of-run echo and `config.toml`.
    pub fn to_toml(&self) -> String {
        // TOML has no null: unset options are left out (they read back as unset).
        let mut v = serde_json::to_value(self).expect("configs serialise");
        strip_nulls(&mut v);
        shortest_f32(&mut v);
        toml::to_string(&v).expect("configs are TOML-representable")
    }

    /// Validates every setting; the error names the flag.
    pub fn check(&self) -> Result<()> {
        self.model.validate()?;
        let pos = |flag: &str, v: usize| {
            if v == 0 {
                Err(Error::arg(flag, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        // The GPU kernels put the windows of a batch on one grid dimension (y or z), which
        // CUDA limits to 65535 blocks; the cap is the same on the CPU so a run moves freely.
        let windows = |flag: &str, v: usize| {
            pos(flag, v)?;
            if v > MAX_WINDOWS {
                return Err(Error::arg(
                    flag,
                    format!(
                        "must be at most {MAX_WINDOWS} windows per batch (the CUDA grid limit)"
                    ),
                ));
            }
            Ok(())
        };
        pos("--epochs", self.epochs)?;
        windows("--batch", self.batch)?;
        pos("--eval-every", self.eval_every)?;
        windows("--eval-batch", self.eval_batch)?;
        self.protocol.parse::<crate::eval::Protocol>()?;
        if !(self.optim.lr > 0.0 && self.optim.lr.is_finite()) {
            return Err(Error::arg("--lr", "must be a positive number"));
        }
        if let Some(c) = self.optim.clip {
            if c.is_nan() || c <= 0.0 {
                return Err(Error::arg("--clip", "must be positive"));
            }
        }
        if self.optim.weight_decay < 0.0 {
            return Err(Error::arg("--weight-decay", "must not be negative"));
        }
        Ok(())
    }
}

/// Recursively overlay `top` on `base` (objects merge key by key; anything else replaces).
fn merge(base: &mut serde_json::Value, top: serde_json::Value) {
    match (base, top) {
        (serde_json::Value::Object(b), serde_json::Value::Object(t)) => {
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

    #[test]
    fn toml_overlay_changes_only_what_it_names() {
        let base = TrainConfig::for_model("pasa").unwrap();
        let p = std::env::temp_dir().join(format!("pasa-cfg-{}.toml", std::process::id()));
        std::fs::write(
            &p,
            "epochs = 7\n[model]\nd = 32\nl = \"toeplitz\"\n[optim]\nclip = 1.0\n",
        )
        .unwrap();
        let c = base.overlay_toml(&p).unwrap();
        assert_eq!((c.epochs, c.model.d, c.optim.clip), (7, 32, Some(1.0)));
        assert_eq!(c.model.l, crate::backend::KernelKind::Toeplitz);
        assert_eq!(c.model.u, base.model.u);
        std::fs::write(&p, "[model]\ndepth = 3\n").unwrap();
        let err = base.overlay_toml(&p).unwrap_err().to_string();
        assert!(
            err.contains(p.to_str().unwrap()) && err.contains("depth"),
            "{err}"
        );
        std::fs::remove_file(&p).ok();
    }

    #[test]
    fn toml_echo_reads_back_identically() {
        let mut c = TrainConfig::for_model("fparec").unwrap();
        c.optim.clip = Some(5.0);
        let p = std::env::temp_dir().join(format!("pasa-echo-{}.toml", std::process::id()));
        std::fs::write(&p, c.to_toml()).unwrap();
        let back = TrainConfig::for_model("sasrec")
            .unwrap()
            .overlay_toml(&p)
            .unwrap();
        assert_eq!(back, c);
        std::fs::remove_file(&p).ok();
    }
}
