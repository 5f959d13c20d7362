//! Shared test helpers: finite-difference gradient checks in f64 through the tape.
#![allow(dead_code)]

use pasa::backend::cpu::{Cpu, HostBuf};
use pasa::params::{Init, ParamSet};
use pasa::rng::Rng;
use pasa::tape::{Tape, Tid};

pub type B64 = Cpu<f64>;

/// Σ out·r of a tensor on an f64 tape.
fn dot_out(tape: &Tape<B64>, out: Tid, r: &[f64]) -> f64 {
    let v = tape.view(out);
    v.buf[v.off..v.off + v.len]
        .iter()
        .zip(r)
        .map(|(a, b)| a * b)
        .sum()
}

fn run_tape<'a>(
    b: &'a B64,
    theta: &'a HostBuf<f64>,
    params: &ParamSet,
    record: bool,
    build: &dyn Fn(&mut Tape<B64>, &[Tid]) -> Tid,
) -> (Tape<'a, B64>, Tid) {
    let mut tape = Tape::new(b, theta, record);
    let ids: Vec<Tid> = params
        .specs
        .iter()
        .map(|s| tape.param(s.off, &s.shape))
        .collect();
    let out = build(&mut tape, &ids);
    (tape, out)
}

/// The worst violation of |analytic − numeric| ≤ atol + rtol·|numeric| over the checked
/// coordinates, as (ratio to the bound, coordinate, analytic, numeric); ≤ 1 passes.
pub struct GradReport {
    pub worst: f64,
    pub at: usize,
    pub analytic: f64,
    pub numeric: f64,
    pub checked: usize,
}

/// Check the gradient of L = Σ build(θ)·r w.r.t. every coordinate of θ (or `max_coords` of
/// them, chosen at random) by central differences with step `h`, everything in f64.
pub fn gradcheck(
    params: &ParamSet,
    init: &[f32],
    seed: u64,
    h: f64,
    max_coords: usize,
    build: &dyn Fn(&mut Tape<B64>, &[Tid]) -> Tid,
) -> GradReport {
    let b = B64::new();
    let theta: Vec<f64> = init.iter().map(|&x| x as f64).collect();
    let theta_buf = b.adopt(theta.clone());
    let (mut tape, out) = run_tape(&b, &theta_buf, params, true, build);
    let n_out = tape.shape(out).iter().product::<usize>();
    let mut rng = Rng::new(seed);
    let r: Vec<f64> = (0..n_out).map(|_| rng.normal() as f64).collect();
    let mut grads = b.adopt(vec![0.0f64; theta.len()]);
    tape.backward_from(out, b.adopt(r.clone()), &mut grads);
    drop(tape);

    let mut coords: Vec<usize> = (0..theta.len()).collect();
    if coords.len() > max_coords {
        rng.shuffle(&mut coords);
        coords.truncate(max_coords);
    }
    let mut rep = GradReport {
        worst: 0.0,
        at: 0,
        analytic: 0.0,
        numeric: 0.0,
        checked: 0,
    };
    for &c in &coords {
        let mut t = theta.clone();
        t[c] = theta[c] + h;
        let lp = {
            let t = b.adopt(t.clone());
            let (tp, op) = run_tape(&b, &t, params, false, build);
            dot_out(&tp, op, &r)
        };
        t[c] = theta[c] - h;
        let lm = {
            let t = b.adopt(t.clone());
            let (tm, om) = run_tape(&b, &t, params, false, build);
            dot_out(&tm, om, &r)
        };
        let num = (lp - lm) / (2.0 * h);
        let bound = 1e-6 + 1e-5 * num.abs();
        let ratio = (grads[c] - num).abs() / bound;
        assert!(grads[c].is_finite(), "gradient {c} is not finite");
        if ratio > rep.worst {
            rep = GradReport {
                worst: ratio,
                at: c,
                analytic: grads[c],
                numeric: num,
                checked: 0,
            };
        }
    }
    rep.checked = coords.len();
    rep
}

/// Assert a report passes, naming the parameter that failed.
pub fn assert_grad_ok(what: &str, params: &ParamSet, rep: &GradReport) {
    let name = params
        .specs
        .iter()
        .find(|s| rep.at >= s.off && rep.at < s.off + s.len())
        .map(|s| format!("{}[{}]", s.name, rep.at - s.off))
        .unwrap_or_default();
    assert!(
        rep.worst <= 1.0,
        "{what}: gradient of {name} analytic {:.9e} vs numeric {:.9e} \
         (bound |a−n| ≤ 1e-6 + 1e-5·|n| exceeded {:.1}×; {} coordinates checked)",
        rep.analytic,
        rep.numeric,
        rep.worst,
        rep.checked
    );
}

/// A parameter set of the given named shapes, initialised N(0, 1) from `seed`.
pub fn random_params(shapes: &[(&str, &[usize])], seed: u64) -> (ParamSet, Vec<f32>) {
    let mut ps = ParamSet::default();
    for (name, shape) in shapes {
        ps.add(*name, shape, Init::Normal(1.0));
    }
    let init = ps.init(seed);
    (ps, init)
}
