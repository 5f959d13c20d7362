//! The model's parameters: named views into one contiguous buffer (DESIGN §5).

use crate::rng::Rng;

/// How a parameter starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    /// N(0, std²).
    Normal(f32),
    /// N(0, std²) with row 0 (the padding item) zero.
    NormalPadZero(f32),
    /// A packed lower-triangular n×n identity (per head): the `mix` reading's L = I.
    PackedIdentity(usize),
    /// A Toeplitz identity: t[0] = 1, the rest 0.
    ToeplitzIdentity(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub off: usize,
    pub init: Init,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The layout of the flat parameter buffer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamSet {
    pub specs: Vec<ParamSpec>,
    pub len: usize,
}

/// Index of a parameter in its [`ParamSet`].
pub type ParamId = usize;

impl ParamSet {
    pub fn add(&mut self, name: impl Into<String>, shape: &[usize], init: Init) -> ParamId {
        let spec = ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
            off: self.len,
            init,
        };
        self.len += spec.len();
        self.specs.push(spec);
        self.specs.len() - 1
    }

    pub fn find(&self, name: &str) -> Option<&ParamSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// Initial values of the whole buffer, seeded.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut out = vec![0.0f32; self.len];
        for (i, sp) in self.specs.iter().enumerate() {
            let mut rng = Rng::new(crate::rng::derive(seed, i as u64));
            let dst = &mut out[sp.off..sp.off + sp.len()];
            match sp.init {
                Init::Zeros => {}
                Init::Ones => dst.fill(1.0),
                Init::Normal(std) => dst.iter_mut().for_each(|x| *x = std * rng.normal()),
                Init::NormalPadZero(std) => {
                    let cols = *sp.shape.last().unwrap_or(&1);
                    for (k, x) in dst.iter_mut().enumerate() {
                        *x = if k < cols { 0.0 } else { std * rng.normal() };
                    }
                }
                Init::PackedIdentity(n) => {
                    let per_head = n * (n + 1) / 2;
                    for head in dst.chunks_mut(per_head) {
                        (0..n).for_each(|i| head[i * (i + 1) / 2 + i] = 1.0);
                    }
                }
                Init::ToeplitzIdentity(n) => dst.chunks_mut(n).for_each(|h| h[0] = 1.0),
            }
        }
        out
    }
}
