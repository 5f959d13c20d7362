//! Launchers of `kernels/loss.cu`: softmax cross-entropy and BCE with a sampled negative.

use super::launch::{blocks, int, Arg};
use super::Cuda;
use super::{GpuBuf, GpuInts};
use crate::backend::{Loss, View, ViewMut};

type V<'a> = View<'a, GpuBuf>;
type VM<'a> = ViewMut<'a, GpuBuf>;

impl Loss for Cuda {
    fn cross_entropy_fwd(&self, logits: V, targets: &GpuInts, vocab: usize, loss: VM, lse: VM) {
        let rows = loss.len.min(lse.len).min(targets.len());
        self.launch(
            "cross_entropy_fwd",
            (blocks(rows, 1), 1, 1),
            (256, 1, 1),
            0,
            &[
                self.p(logits),
                self.pb(targets),
                self.pm(&loss),
                self.pm(&lse),
                int(rows),
                int(vocab),
            ],
        );
    }

    fn cross_entropy_bwd(
        &self,
        logits: V,
        lse: V,
        targets: &GpuInts,
        vocab: usize,
        scale: f32,
        dlogits: VM,
    ) {
        if vocab == 0 {
            return;
        }
        let rows = (dlogits.len / vocab).min(targets.len());
        self.launch(
            "cross_entropy_bwd",
            (blocks(rows, 1), 1, 1),
            (256, 1, 1),
            0,
            &[
                self.p(logits),
                self.pb(targets),
                self.p(lse),
                self.pm(&dlogits),
                int(rows),
                int(vocab),
                Arg::F32(scale),
            ],
        );
    }

    fn bce_fwd(&self, h: V, table: V, targets: &GpuInts, vocab: usize, seed: u64, loss: VM) {
        let rows = targets.len();
        let d = h.len / rows.max(1);
        self.launch(
            "bce_fwd",
            (blocks(rows, 8), 1, 1),
            (256, 1, 1),
            0,
            &[
                self.p(h),
                self.p(table),
                self.pb(targets),
                self.pm(&loss),
                int(rows),
                int(d),
                int(vocab),
                Arg::U64(seed),
            ],
        );
    }

    fn bce_bwd(
        &self,
        h: V,
        table: V,
        targets: &GpuInts,
        vocab: usize,
        seed: u64,
        scale: f32,
        dh: VM,
        dtable: VM,
    ) {
        let rows = targets.len();
        let d = h.len / rows.max(1);
        self.launch(
            "bce_bwd",
            (blocks(rows, 8), 1, 1),
            (256, 1, 1),
            0,
            &[
                self.p(h),
                self.p(table),
                self.pb(targets),
                self.pm(&dh),
                self.pm(&dtable),
                int(rows),
                int(d),
                int(vocab),
                Arg::U64(seed),
                Arg::F32(scale),
            ],
        );
    }
}
