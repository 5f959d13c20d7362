//! The flags of `pasa train` that set a configuration field, listed once: each with its type,
//! the configuration key it sets (a dotted path into [`TrainConfig`]), its default and its help.
//! The clap arguments, the overlay onto a configuration, the check that a flag does not
//! contradict `--resume` and the naming of a bad value all come from this one list.

use std::path::PathBuf;

use crate::backend::{Activation, KernelKind};
use crate::data::Format;
use crate::eval::Protocol;
use crate::models::{LossKind, Preset, Reading, Scores};

#[cfg(doc)]
use super::TrainConfig;

/// One flag that was given: its name, the key it sets and the value, as TOML.
#[derive(Debug, Clone, PartialEq)]
pub struct Given {
    pub flag: &'static str,
    pub key: &'static str,
    pub value: toml::Value,
}

macro_rules! config_flags {
    ($( $field:ident: $ty:ty => $key:literal, $flag:literal, default $default:literal, $help:literal; )*) => {
        /// Every configuration flag of `pasa train` (all optional: what is not given comes from
        /// the `--config` file, else from the `--model` preset).
        #[derive(Debug, Default, Clone, clap::Args)]
        pub struct ConfigFlags {
            $(
                #[arg(long, help = concat!($help, " [default: ", $default, "]"))]
                pub $field: Option<$ty>,
            )*
        }

        /// (flag, configuration key, default as shown in the help) of every configuration flag.
        pub const FLAGS: &[(&str, &str, &str)] = &[ $( ($flag, $key, $default), )* ];

        impl ConfigFlags {
            /// The flags given, in the order of the list.
            pub fn given(&self) -> Vec<Given> {
                let mut v = vec![];
                $(
                    if let Some(x) = &self.$field {
                        v.push(Given {
                            flag: $flag,
                            key: $key,
                            value: toml::Value::try_from(x)
                                .expect("every flag's type serialises to TOML"),
                        });
                    }
                )*
                v
            }
        }
    };
}

config_flags! {
    data: PathBuf => "data.path", "--data", default "the built-in synthetic dataset",
        "Interactions file, in any format of `pasa data`";
    format: Format => "data.format", "--format", default "auto",
        "Format of --data";
    kcore: usize => "data.kcore", "--kcore", default "off",
        "Keep only users and items with at least this many interactions (iterated until stable)";
    model: Preset => "model.name", "--model", default "sasrec",
        "Named configuration; the flags below change any of its settings";
    n: usize => "model.n", "--n", default "200, or the longest sequence when shorter",
        "Window length: the last n items of each sequence";
    d: usize => "model.d", "--d", default "64",
        "Model width";
    blocks: usize => "model.blocks", "--blocks", default "2",
        "Transformer blocks";
    heads: usize => "model.heads", "--heads", default "1",
        "Attention heads per block (must divide --d)";
    d_ff: usize => "model.d_ff", "--d-ff", default "--d",
        "Width of the feed-forward layer";
    dropout: f32 => "model.dropout", "--dropout", default "0.2",
        "Dropout on the embeddings, the attention probabilities and the residual branches";
    act: Activation => "model.act", "--act", default "relu",
        "Activation of the feed-forward layer";
    pos_emb: bool => "model.pos_emb", "--pos-emb", default "by --model",
        "Learned additive position embedding (true/false)";
    scores: Scores => "model.scores", "--scores", default "by --model",
        "Where the attention scores come from";
    rank: usize => "model.rank", "--rank", default "32",
        "Rank of FPARec's factors (--scores factorised)";
    u: KernelKind => "model.u", "--u", default "by --model",
        "Parametrisation of U, which scales the causal attention scores";
    l: KernelKind => "model.l", "--l", default "by --model",
        "Parametrisation of L, which weights the aggregation of the values";
    reading: Reading => "model.reading", "--reading", default "weight",
        "How L enters the aggregation";
    kernel_shared: bool => "model.kernel_shared", "--kernel-shared", default "false",
        "One U and one L shared by all blocks, instead of one per block (true/false)";
    kernel_per_head: bool => "model.kernel_per_head", "--kernel-per-head", default "false",
        "Each head its own U and L, instead of one per block (true/false)";
    loss: LossKind => "model.loss", "--loss", default "ce",
        "Training loss";
    ce_chunk: usize => "model.ce_chunk", "--ce-chunk", default "sized from the catalogue",
        "Rows per chunk of the cross-entropy loss, whose logits take chunk × (items + 1) floats; the default fills a per-device budget (CPU: 2 MiB of logits, GPU: 512 MiB), at least 64 rows";
    epochs: usize => "epochs", "--epochs", default "200",
        "Epochs to train in all (with --resume: the new total, counting the epochs done)";
    batch: usize => "batch", "--batch", default "128",
        "Training windows per step";
    lr: f32 => "optim.lr", "--lr", default "0.001",
        "Adam's learning rate (β 0.9/0.98)";
    weight_decay: f32 => "optim.weight_decay", "--weight-decay", default "0",
        "Decoupled weight decay (AdamW)";
    clip: f32 => "optim.clip", "--clip", default "off",
        "Clip the global gradient norm to this value";
    eval_every: usize => "eval_every", "--eval-every", default "1",
        "Validate every this many epochs (and after the last)";
    patience: usize => "patience", "--patience", default "20",
        "Validations without a better NDCG@10 before stopping early, 0 for never (with --resume: the new value)";
    eval_batch: usize => "eval_batch", "--eval-batch", default "256",
        "Users per evaluation batch";
    protocol: Protocol => "protocol", "--protocol", default "full",
        "Ranking protocol of validation and test";
    seed: u64 => "seed", "--seed", default "0",
        "Seed of the initialisation, the shuffles, dropout and negative sampling";
    synthetic_users: usize => "data.synthetic.users", "--synthetic-users", default "2000",
        "Users of the built-in synthetic dataset";
    synthetic_items: usize => "data.synthetic.items", "--synthetic-items", default "500",
        "Items of the built-in synthetic dataset";
}

/// The flag that sets configuration `key`, if any.
pub fn flag_of(key: &str) -> Option<&'static str> {
    FLAGS.iter().find(|(_, k, _)| *k == key).map(|(f, _, _)| *f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;

    /// The value at a dotted key of a TOML table.
    fn at<'a>(v: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
        key.split('.').try_fold(v, |v, k| v.get(k))
    }

    #[test]
    fn help_defaults_are_the_real_defaults() {
        let cfg = toml::Value::try_from(TrainConfig::for_model(Preset::Sasrec)).unwrap();
        let mut checked = 0;
        for (flag, key, default) in FLAGS {
            let Some(v) = at(&cfg, key) else {
                // Optional settings (unset by default) say so.
                assert!(
                    [
                        "off",
                        "the built-in synthetic dataset",
                        "sized from the catalogue"
                    ]
                    .contains(default),
                    "{flag}: default {default:?} but {key} is unset"
                );
                continue;
            };
            let shown = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Float(x) => (*x as f32).to_string(),
                other => other.to_string(),
            };
            if default.starts_with("by --model") || default.starts_with("--") {
                continue;
            }
            let first = default.split(',').next().unwrap();
            let same = shown == first
                || first
                    .parse::<f32>()
                    .is_ok_and(|d| shown.parse::<f32>() == Ok(d));
            assert!(same, "{flag}: help says {default:?}, {key} is {shown}");
            checked += 1;
        }
        assert!(checked > 20, "only {checked} defaults checked");
    }

    #[test]
    fn every_flag_names_a_real_key() {
        let cfg = toml::Value::try_from(TrainConfig::for_model(Preset::Pasa)).unwrap();
        for (flag, key, _) in FLAGS {
            let (parent, last) = key.rsplit_once('.').unwrap_or(("", key));
            let table = if parent.is_empty() {
                Some(&cfg)
            } else {
                at(&cfg, parent)
            };
            let table = table.and_then(|t| t.as_table()).unwrap();
            // Unset options are absent from the TOML form: they must be Option fields.
            assert!(
                table.contains_key(last)
                    || ["data.path", "data.kcore", "optim.clip", "model.ce_chunk"].contains(key),
                "{flag}: no key {key}"
            );
        }
        assert_eq!(flag_of("optim.lr"), Some("--lr"));
        assert_eq!(flag_of("model.items"), None);
    }

    #[test]
    fn given_flags_become_toml_values() {
        let f = ConfigFlags {
            u: Some(KernelKind::Toeplitz),
            lr: Some(0.5),
            format: Some(Format::MlDat),
            ..Default::default()
        };
        let g = f.given();
        let keys: Vec<_> = g.iter().map(|g| (g.flag, g.key)).collect();
        assert_eq!(
            keys,
            [
                ("--format", "data.format"),
                ("--u", "model.u"),
                ("--lr", "optim.lr")
            ]
        );
        assert_eq!(g[0].value, toml::Value::String("ml-dat".into()));
        assert_eq!(g[1].value, toml::Value::String("toeplitz".into()));
        assert_eq!(g[2].value, toml::Value::Float(0.5));
    }
}
