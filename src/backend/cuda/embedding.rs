//! Launchers of `kernels/embedding.cu`: gather forward, atomic scatter-add backward.

use super::launch::{int, Arg};
use super::Cuda;
use super::{GpuBuf, GpuInts};
use crate::backend::{Embedding, View, ViewMut};

impl Embedding for Cuda {
    fn embedding_fwd(
        &self,
        table: View<GpuBuf>,
        ids: &GpuInts,
        cols: usize,
        scale: f32,
        out: ViewMut<GpuBuf>,
    ) {
        if cols == 0 {
            return;
        }
        let rows = (out.len / cols).min(ids.len());
        self.launch_flat(
            "embedding_fwd",
            rows * cols,
            &[
                self.pb(ids),
                self.p(table),
                self.pm(&out),
                int(rows),
                int(cols),
                Arg::F32(scale),
            ],
        );
    }

    fn embedding_bwd(
        &self,
        ids: &GpuInts,
        dout: View<GpuBuf>,
        cols: usize,
        scale: f32,
        dtable: ViewMut<GpuBuf>,
    ) {
        if cols == 0 {
            return;
        }
        let rows = (dout.len / cols).min(ids.len());
        self.launch_flat(
            "embedding_bwd",
            rows * cols,
            &[
                self.pb(ids),
                self.p(dout),
                self.pm(&dtable),
                int(rows),
                int(cols),
                Arg::F32(scale),
            ],
        );
    }
}
