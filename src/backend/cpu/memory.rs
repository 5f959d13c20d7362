//! Buffers on the host: allocation, copies, fills, axpy and the sum of squares.

use super::real::Real;
use super::{s, sm, Cpu};
use crate::backend::{DeviceBuf, Memory, View, ViewMut};

impl<T> DeviceBuf for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

/// Σ x², in f64 and in index order (one sequential pass: no thread-dependent grouping).
pub fn sum_squares<T: Real>(x: &[T]) -> f64 {
    x.iter().map(|v| v.to_f64() * v.to_f64()).sum()
}

impl<T: Real> Memory for Cpu<T> {
    type Buf = Vec<T>;
    type IBuf = Vec<u32>;

    fn name(&self) -> String {
        format!(
            "cpu ({} threads, {})",
            rayon::current_num_threads(),
            std::any::type_name::<T>()
        )
    }
    fn zeros(&self, len: usize) -> Vec<T> {
        vec![T::ZERO; len]
    }
    fn upload(&self, data: &[f32]) -> Vec<T> {
        data.iter().map(|&x| T::from_f32(x)).collect()
    }
    fn upload_u32(&self, data: &[u32]) -> Vec<u32> {
        data.to_vec()
    }
    fn download(&self, x: View<Vec<T>>) -> Vec<f32> {
        s(x).iter().map(|x| x.to_f32()).collect()
    }
    fn fill(&self, x: ViewMut<Vec<T>>, value: f32) {
        sm(x).fill(T::from_f32(value));
    }
    fn copy(&self, src: View<Vec<T>>, dst: ViewMut<Vec<T>>) {
        assert_eq!(src.len, dst.len, "copy: lengths differ");
        sm(dst).copy_from_slice(s(src));
    }
    fn axpy(&self, alpha: f32, x: View<Vec<T>>, y: ViewMut<Vec<T>>) {
        let a = T::from_f32(alpha);
        for (y, &x) in sm(y).iter_mut().zip(s(x)) {
            *y += a * x;
        }
    }
    fn sum_squares(&self, x: View<Vec<T>>) -> f64 {
        sum_squares(s(x))
    }
}
