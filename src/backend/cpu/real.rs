//! The element type of the CPU backend: f32 for training, f64 for gradient checks.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// The arithmetic the CPU ops need, implemented for f32 and f64.
pub trait Real:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + Sum
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f32(x: f32) -> Self;
    fn from_f64(x: f64) -> Self;
    fn from_usize(x: usize) -> Self {
        Self::from_f64(x as f64)
    }
    fn to_f32(self) -> f32;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn cos(self) -> Self;
    fn sin(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn max(self, o: Self) -> Self;
    fn is_finite(self) -> bool;
    /// A softmax row's first pass: replaces every x by e^(x − m), m the row's maximum, and
    /// returns (m, Σ). In f32 the vectorised loops of [`super::vexp`]; in f64 (the gradient
    /// checks' precision) the library's exp.
    fn exp_shifted(row: &mut [Self]) -> (Self, Self);
    /// Replaces every x by e^(x − m) for a given m ≥ every x (up to rounding), e.g. a saved
    /// log-sum-exp: the same loops as [`Real::exp_shifted`] without the maximum.
    fn exp_minus(row: &mut [Self], m: Self);
    /// Row-major strided matrix product (matrixmultiply's sgemm / dgemm).
    ///
    /// # Safety
    /// The pointers and strides must describe valid m×k, k×n and m×n matrices, C not
    /// aliasing A or B.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

macro_rules! impl_real {
    ($t:ty, $gemm:path, $exp_shifted:path, $exp_minus:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            fn from_f32(x: f32) -> Self {
                x as $t
            }
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f32(self) -> f32 {
                self as f32
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            fn max(self, o: Self) -> Self {
                <$t>::max(self, o)
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            fn exp_shifted(row: &mut [Self]) -> (Self, Self) {
                $exp_shifted(row)
            }
            fn exp_minus(row: &mut [Self], m: Self) {
                $exp_minus(row, m)
            }
            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                $gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
            }
        }
    };
}

impl_real!(f32, matrixmultiply::sgemm, exp_shifted_f32, exp_minus_f32);
impl_real!(
    f64,
    matrixmultiply::dgemm,
    exp_shifted_exact,
    exp_minus_exact
);

fn exp_shifted_f32(row: &mut [f32]) -> (f32, f32) {
    let m = super::vexp::max(row);
    (m, super::vexp::exp_shifted_sum(row, m))
}

fn exp_minus_f32(row: &mut [f32], m: f32) {
    super::vexp::exp_shifted(row, m);
}

fn exp_shifted_exact(row: &mut [f64]) -> (f64, f64) {
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - m).exp();
        sum += *x;
    }
    (m, sum)
}

fn exp_minus_exact(row: &mut [f64], m: f64) {
    for x in row.iter_mut() {
        *x = (*x - m).exp();
    }
}
