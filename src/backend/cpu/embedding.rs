//! Embedding lookups: a row-parallel gather and a sequential scatter-add.

use super::real::Real;
use super::{s, sm, Cpu, HostBuf, HostInts};
use crate::backend::{Embedding, View, ViewMut};
use rayon::prelude::*;

pub fn embedding_fwd<T: Real>(table: &[T], ids: &[u32], cols: usize, scale: f32, out: &mut [T]) {
    let s = T::from_f32(scale);
    out.par_chunks_mut(cols)
        .zip(ids.par_iter())
        .for_each(|(o, &id)| {
            let row = &table[id as usize * cols..(id as usize + 1) * cols];
            for (o, &t) in o.iter_mut().zip(row) {
                *o = t * s;
            }
        });
}

/// Scatter-add; sequential because ids repeat (the table is small next to the work around it).
pub fn embedding_bwd<T: Real>(ids: &[u32], dout: &[T], cols: usize, scale: f32, dtable: &mut [T]) {
    let s = T::from_f32(scale);
    for (r, &id) in ids.iter().enumerate() {
        let row = &mut dtable[id as usize * cols..(id as usize + 1) * cols];
        for (t, &g) in row.iter_mut().zip(&dout[r * cols..(r + 1) * cols]) {
            *t += g * s;
        }
    }
}

impl<T: Real> Embedding for Cpu<T> {
    fn embedding_fwd(
        &self,
        table: View<HostBuf<T>>,
        ids: &HostInts,
        cols: usize,
        scale: f32,
        out: ViewMut<HostBuf<T>>,
    ) {
        embedding_fwd(s(table), ids, cols, scale, sm(out));
    }
    fn embedding_bwd(
        &self,
        ids: &HostInts,
        dout: View<HostBuf<T>>,
        cols: usize,
        scale: f32,
        dtable: ViewMut<HostBuf<T>>,
    ) {
        embedding_bwd(ids, s(dout), cols, scale, sm(dtable));
    }
}
