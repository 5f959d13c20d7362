//! Adam over the flat parameter buffer, with optional global-norm gradient clipping.

use crate::backend::{AdamStep, Backend, DeviceBuf};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Clip the global gradient norm to this value (None = no clipping).
    pub clip: Option<f32>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 0.0,
            clip: None,
        }
    }
}

/// Parameters, gradients and the two Adam moments: four flat buffers of equal length.
pub struct OptState<B: Backend> {
    pub params: B::Buf,
    pub grads: B::Buf,
    pub m: B::Buf,
    pub v: B::Buf,
    /// Adam steps taken so far.
    pub step: u32,
}

impl<B: Backend> OptState<B> {
    pub fn new(b: &B, init: &[f32]) -> Self {
        OptState {
            params: b.upload(init),
            grads: b.zeros(init.len()),
            m: b.zeros(init.len()),
            v: b.zeros(init.len()),
            step: 0,
        }
    }

    /// Zero every gradient: one fill.
    pub fn zero_grad(&mut self, b: &B) {
        b.fill(self.grads.view_mut(), 0.0);
    }

    /// One Adam step over all parameters. With clipping, returns the global gradient norm
    /// before clipping; without, None (the norm costs a device reduction and a host sync).
    pub fn step(&mut self, b: &B, cfg: &AdamConfig) -> Option<f32> {
        let _range = crate::tape::Range::open(b, "optimizer");
        let norm = cfg
            .clip
            .map(|_| b.sum_squares(self.grads.view()).sqrt() as f32);
        let grad_scale = match (cfg.clip, norm) {
            (Some(max), Some(norm)) if norm > max && norm.is_finite() => max / norm,
            _ => 1.0,
        };
        self.step += 1;
        let st = AdamStep {
            lr: cfg.lr,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
            step: self.step,
            grad_scale,
        };
        b.adam(
            &st,
            self.params.view_mut(),
            self.grads.view(),
            self.m.view_mut(),
            self.v.view_mut(),
        );
        norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Cpu;

    /// Hyperparameters are f32: the hand computations use their f32-rounded values.
    const LR: f64 = 0.1f32 as f64;
    const B1: f64 = 0.9f32 as f64;
    const B2: f64 = 0.99f32 as f64;

    /// Two steps of Adam on three numbers, against values worked out by hand.
    #[test]
    fn adam_matches_hand_computed_steps() {
        let b = Cpu::<f64>::new();
        let mut st = OptState::new(&b, &[1.0, -2.0, 0.5]);
        let cfg = AdamConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            ..Default::default()
        };
        st.grads.copy_from_slice(&[0.5, -1.0, 0.0]);
        st.step(&b, &cfg);
        // Step 1: m̂ = g, v̂ = g², so each moved parameter moves by lr·sign(g).
        let want1 = [
            1.0 - LR * 0.5 / (0.5 + 1e-8),
            -2.0 + LR * 1.0 / (1.0 + 1e-8),
            0.5,
        ];
        for (p, w) in st.params.iter().zip(want1) {
            assert!((p - w).abs() < 1e-12, "step 1: {p} vs {w}");
        }
        st.grads.copy_from_slice(&[1.0, 0.0, 2.0]);
        st.step(&b, &cfg);
        // Step 2 for p0: m = β1·(1−β1)·0.5 + (1−β1)·1, v = β2·(1−β2)·0.25 + (1−β2)·1.
        let m = B1 * (1.0 - B1) * 0.5 + (1.0 - B1) * 1.0;
        let v = B2 * (1.0 - B2) * 0.25 + (1.0 - B2) * 1.0;
        let (mh, vh) = (m / (1.0 - B1 * B1), v / (1.0 - B2 * B2));
        let want_p0 = want1[0] - LR * mh / (vh.sqrt() + 1e-8);
        assert!(
            (st.params[0] - want_p0).abs() < 1e-9,
            "{} vs {want_p0}",
            st.params[0]
        );
        // p2 had no gradient at step 1: m = (1−β1)·2, v = (1−β2)·4 at step 2.
        let (mh, vh) = (
            (1.0 - B1) * 2.0 / (1.0 - B1 * B1),
            (1.0 - B2) * 4.0 / (1.0 - B2 * B2),
        );
        let want_p2 = 0.5 - LR * mh / (f64::sqrt(vh) + 1e-8);
        assert!(
            (st.params[2] - want_p2).abs() < 1e-9,
            "{} vs {want_p2}",
            st.params[2]
        );
    }

    #[test]
    fn clipping_scales_gradients_to_the_max_norm() {
        let b = Cpu::<f64>::new();
        let cfg = AdamConfig {
            lr: 0.1,
            clip: Some(1.0),
            ..Default::default()
        };
        let mut st = OptState::new(&b, &[0.0, 0.0]);
        st.grads.copy_from_slice(&[3.0, 4.0]);
        let norm = st.step(&b, &cfg).expect("clipping reports the norm");
        assert!((norm - 5.0).abs() < 1e-6);
        // The clipped gradient (0.6, 0.8) sits in the first moment: m = 0.1·g.
        let b1c = 1.0 - B1;
        assert!(
            (st.m[0] - 0.6 * b1c).abs() < 1e-7 && (st.m[1] - 0.8 * b1c).abs() < 1e-7,
            "{:?}",
            st.m
        );
    }

    #[test]
    fn weight_decay_shrinks_parameters_without_gradient() {
        let b = Cpu::<f64>::new();
        let cfg = AdamConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        };
        let mut st = OptState::new(&b, &[2.0]);
        st.step(&b, &cfg);
        assert!(
            (st.params[0] - (2.0 - LR * 0.5 * 2.0)).abs() < 1e-7,
            "{}",
            st.params[0]
        );
    }
}
