//! The softmax's inner loops in f32, written so that the compiler vectorises them: the row
//! maximum and Σ exp(x − m) over 8 fixed lanes, with an exp of pure f32 arithmetic (the
//! library's `expf` is a call per element, and the classifier's softmax takes |I| of them per
//! row: 87 million a step at the ml-1m shape). The lanes are combined in a fixed order, so
//! the result does not depend on the thread count or the machine.

const LANES: usize = 8;

/// e^x for x ≤ 0 (a shifted logit), to about 2 ulp: x = k·ln2 + r with |r| ≤ ln2/2, e^r by a
/// degree-6 polynomial (the minimax coefficients of Cephes' expf), 2^k from the exponent
/// bits. x below −87.3 gives the smallest normal (about 1e-38) instead of a denormal or 0;
/// NaN stays NaN.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round-to-nearest by adding 1.5·2²³: the sum's low mantissa bits hold k.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.3 { -87.3 } else { x };
    let t = x * LOG2E + ROUND;
    let k = t - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = ((((1.987_569_2e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let er = p * (r * r) + r + 1.0;
    let k_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let two_k = f32::from_bits(k_bits.wrapping_add(127) << 23);
    er * two_k
}

/// Defines `$name`, which runs `$body` (an `#[inline(always)]` function) compiled for AVX2
/// where the CPU has it: the 8 lanes are then one 256-bit register instead of two SSE ones.
/// The operations and their order are the same either way (Rust never fuses a multiply and an
/// add by itself), so are the results.
macro_rules! dispatch_avx2 {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $body:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just now.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

dispatch_avx2!(
    /// The largest element (−∞ for an empty slice; NaNs are passed over, as `f32::max` does).
    max(xs: &[f32]) -> f32 = max_body
);

dispatch_avx2!(
    /// Replaces every x by e^(x − m), m ≥ every x (a row maximum or a saved log-sum-exp).
    exp_shifted(xs: &mut [f32], m: f32) -> () = exp_shifted_body
);

dispatch_avx2!(
    /// Replaces every x by e^(x − m), m ≥ every x (the row maximum), and returns their sum
    /// (8 lane sums, then the tail, added in a fixed order).
    exp_shifted_sum(xs: &mut [f32], m: f32) -> f32 = exp_shifted_sum_body
);

#[inline(always)]
fn max_body(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = if x > *l { x } else { *l };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    lanes.iter().copied().fold(tail, f32::max)
}

#[inline(always)]
fn exp_shifted_body(xs: &mut [f32], m: f32) {
    for x in xs.iter_mut() {
        *x = exp_nonpositive(*x - m);
    }
}

#[inline(always)]
fn exp_shifted_sum_body(xs: &mut [f32], m: f32) -> f32 {
    // Two passes: a plain loop over the elements is what the loop vectoriser turns into full
    // 8-wide (AVX2) code; with the sum in the same loop it came out 2 and 4 wide.
    exp_shifted_body(xs, m);
    let mut lanes = [0.0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += *x;
        }
    }
    let tail: f32 = chunks.remainder().iter().sum();
    let pairs = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    ((pairs[0] + pairs[2]) + (pairs[1] + pairs[3])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn exp_is_within_2_ulp_of_f64_over_the_range_a_softmax_uses() {
        let mut worst = 0.0f64;
        let mut x = 0.0f32;
        while x > -87.0 {
            let want = (x as f64).exp();
            let got = exp_nonpositive(x) as f64;
            worst = worst.max((got - want).abs() / want);
            x -= 1.7e-3;
        }
        // One f32 ulp is 2^-23 ≈ 1.19e-7 relative.
        assert!(worst <= 2.5e-7, "largest relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
        assert!(exp_nonpositive(-1e4) < 1.3e-38 && exp_nonpositive(-1e4) >= 0.0);
    }

    #[test]
    fn max_and_sum_equal_plain_loops_at_every_length() {
        let mut rng = Rng::new(3);
        for len in [0usize, 1, 7, 8, 9, 17, 3417] {
            let xs: Vec<f32> = (0..len).map(|_| 20.0 * rng.normal()).collect();
            let m = max(&xs);
            assert_eq!(m, xs.iter().copied().fold(f32::NEG_INFINITY, f32::max));
            let mut ys = xs.clone();
            let s = exp_shifted_sum(&mut ys, m);
            let want: f64 = xs.iter().map(|&x| ((x - m) as f64).exp()).sum();
            assert!(
                (s as f64 - want).abs() <= 1e-6 * want.max(1e-30),
                "len {len}"
            );
            for (y, x) in ys.iter().zip(&xs) {
                let e = ((x - m) as f64).exp();
                assert!((*y as f64 - e).abs() <= 2.5e-7 * e + 1.3e-38, "len {len}");
            }
        }
        // The AVX2 build of the loops (taken where the CPU has it) and the plain one agree
        // to the bit.
        let xs: Vec<f32> = (0..3417).map(|_| 20.0 * rng.normal()).collect();
        let (mut a, mut b) = (xs.clone(), xs.clone());
        assert_eq!(max(&xs).to_bits(), max_body(&xs).to_bits());
        let m = max(&xs);
        let (sa, sb) = (exp_shifted_sum(&mut a, m), exp_shifted_sum_body(&mut b, m));
        assert_eq!(sa.to_bits(), sb.to_bits());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        // Without the sum, the same values.
        let mut c = xs.clone();
        exp_shifted(&mut c, m);
        assert!(a.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()));
        let mut nan = vec![0.0, f32::NAN, -1.0];
        assert!(
            exp_shifted_sum(&mut nan, 0.0).is_nan(),
            "a NaN logit makes the loss NaN"
        );
    }
}
