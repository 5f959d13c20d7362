//! Counter-based randomness: a value is a pure function of (seed, index).
//!
//! The same function is in `kernels/common.cuh`, so the CPU and the GPU draw the same dropout
//! masks and negatives, and a backward pass regenerates a mask instead of storing it.

/// SplitMix64 finaliser of `seed + idx·φ`: 32 well-mixed bits.
#[inline]
pub fn hash_u32(seed: u64, idx: u64) -> u32 {
    let mut z = seed.wrapping_add(idx.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 32) as u32
}

/// Uniform in [0, 1) with 24 bits of resolution (exact in f32).
#[inline]
pub fn uniform(seed: u64, idx: u64) -> f32 {
    (hash_u32(seed, idx) >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Dropout keep-decision for element `idx`: kept when its uniform draw is ≥ `p`.
#[inline]
pub fn keep(seed: u64, idx: u64, p: f32) -> bool {
    uniform(seed, idx) >= p
}

/// The keep-decisions of a run of elements: `out[j] = keep(seed, first + j, p)`. The same
/// integer arithmetic as [`keep`], so the same decisions, but compiled for AVX-512 where the
/// CPU has it: its 64-bit vector multiply (avx512dq) hashes 8 indices at once, where plain
/// x86-64 takes them one by one (the attention's dropout draws one per score).
pub fn keep_run(seed: u64, first: u64, p: f32, out: &mut [bool]) {
    #[inline(always)]
    fn body(seed: u64, first: u64, p: f32, out: &mut [bool]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = keep(seed, first.wrapping_add(j as u64), p);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw")]
        unsafe fn avx512(seed: u64, first: u64, p: f32, out: &mut [bool]) {
            body(seed, first, p, out)
        }
        if std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the CPU has these features, checked just now (avx512dq implies avx512f).
            return unsafe { avx512(seed, first, p, out) };
        }
    }
    body(seed, first, p, out)
}

/// Derive an independent stream seed from a base seed and a tag (layer, step, purpose).
#[inline]
pub fn derive(seed: u64, tag: u64) -> u64 {
    ((hash_u32(seed, tag) as u64) << 32) | hash_u32(seed ^ 0xA5A5_A5A5_A5A5_A5A5, tag) as u64
}

/// A small sequential generator over the counter hash, for host-side shuffles and inits.
#[derive(Debug, Clone)]
pub struct Rng {
    seed: u64,
    counter: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { seed, counter: 0 }
    }
    pub fn next_u32(&mut self) -> u32 {
        self.counter += 1;
        hash_u32(self.seed, self.counter)
    }
    pub fn uniform(&mut self) -> f32 {
        self.counter += 1;
        uniform(self.seed, self.counter)
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u32() as u64 * n as u64) >> 32) as usize
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_roughly_flat() {
        let n = 100_000;
        let mut buckets = [0usize; 10];
        for i in 0..n {
            let u = uniform(42, i);
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((b as f64 - 10_000.0).abs() < 500.0, "bucket {b}");
        }
    }

    #[test]
    fn keep_run_decides_as_keep() {
        // Odd lengths and offsets, so that vector bodies and their remainders are both used.
        for (first, len, p) in [(0u64, 1usize, 0.2f32), (5, 37, 0.5), (1 << 40, 203, 0.1)] {
            let mut out = vec![false; len];
            keep_run(9, first, p, &mut out);
            for (j, &o) in out.iter().enumerate() {
                assert_eq!(
                    o,
                    keep(9, first + j as u64, p),
                    "element {j} of {first}+{len}"
                );
            }
        }
    }

    #[test]
    fn different_seeds_differ() {
        assert_ne!(hash_u32(1, 7), hash_u32(2, 7));
        assert_eq!(hash_u32(1, 7), hash_u32(1, 7));
    }
}
