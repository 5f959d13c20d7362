//! Launchers of `kernels/loss.cu`: softmax cross-entropy and BCE with a sampled negative.

use super::launch::{blocks, int, Arg};
use super::Cuda;
use super::{GpuBuf, GpuInts};
use crate::backend::{Loss, View, ViewMut};

/// Logits per chunk of the fused classifier loss by default (512 MiB): the ml-1m training
/// batch (25 600 rows × 3417) is one chunk, so one GEMM each and one launch; a catalogue of
/// 100 000 items takes chunks of 1342 rows.
pub const CE_CHUNK_ELEMENTS: usize = 1 << 27;

type V<'a> = View<'a, GpuBuf>;
type VM<'a> = ViewMut<'a, GpuBuf>;

impl Loss for Cuda {
    fn cross_entropy_in_place(
        &self,
        logits: VM,
        targets: &GpuInts,
        first: usize,
        vocab: usize,
        scale: f32,
        loss: VM,
    ) {
        let rows = loss.len;
        assert_eq!(
            logits.len,
            rows * vocab,
            "cross_entropy_in_place: logits are not [rows, vocab]"
        );
        assert!(
            first + rows <= targets.len(),
            "cross_entropy_in_place: targets too short"
        );
        // Row r's target at targets[first + r]: the kernel gets the address of targets[first].
        let t = self.addr(targets) + (first * std::mem::size_of::<u32>()) as u64;
        self.launch(
            "cross_entropy_in_place",
            (blocks(rows, 1), 1, 1),
            (256, 1, 1),
            0,
            &[
                self.pm(&logits),
                Arg::Ptr(t),
                self.pm(&loss),
                int(rows),
                int(vocab),
                Arg::F32(scale),
            ],
        );
    }

    fn ce_chunk_elements(&self) -> usize {
        CE_CHUNK_ELEMENTS
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
