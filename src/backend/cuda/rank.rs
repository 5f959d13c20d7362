//! Launchers of `kernels/rank.cu`: each row's rank, NaN count and top-K ids, one block a row.

use super::launch::{int, Arg};
use super::{Cuda, GpuBuf, GpuInts};
use crate::backend::{Candidates, Rank, View, RANK_ROW};
use crate::error::Result;
use cudarc::driver::sys::CUfunction_attribute;

/// Dynamic shared memory a kernel may use without opting in.
const DEFAULT_SMEM: usize = 48 * 1024;

impl Rank for Cuda {
    fn rank(
        &self,
        scores: View<GpuBuf>,
        vocab: usize,
        targets: &GpuInts,
        cands: Candidates<'_, GpuInts>,
        out: &mut GpuInts,
    ) {
        let rows = targets.len();
        assert_eq!(
            scores.len,
            rows * vocab,
            "rank: scores are not [rows, vocab]"
        );
        assert!(
            out.len() >= rows * RANK_ROW,
            "rank: output shorter than rows·RANK_ROW"
        );
        let (mode, lists) = match cands {
            Candidates::All => (0, None),
            Candidates::Except(l) => (1, Some(l)),
            Candidates::Only(l) => (2, Some(l)),
        };
        if let Some(l) = lists {
            assert_eq!(l.offsets.len(), rows + 1, "rank: offsets are not rows + 1");
        }
        // The excluded items' bitmap.
        let smem = if mode == 1 { 4 * vocab.div_ceil(32) } else { 0 };
        if smem > DEFAULT_SMEM {
            self.allow_rank_smem(smem)
                .unwrap_or_else(|e| panic!("cuda: rank over {vocab} items: {e}"));
        }
        self.launch(
            "rank_rows",
            (rows as u32, 1, 1),
            (256, 1, 1),
            smem as u32,
            &[
                self.p(scores),
                self.pb(targets),
                Arg::Ptr(lists.map_or(0, |l| self.addr(l.offsets))),
                Arg::Ptr(lists.map_or(0, |l| self.addr(l.items))),
                self.pb(out),
                int(rows),
                int(vocab),
                int(mode),
            ],
        );
    }
}

impl Cuda {
    /// Opts `rank_rows` into `bytes` of dynamic shared memory (catalogues past 393 216 items
    /// under exclude-seen); the device's limit is the driver's to enforce.
    fn allow_rank_smem(&self, bytes: usize) -> Result<()> {
        self.func("rank_rows")
            .set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
            .map_err(super::device::driver_err(&format!(
                "allowing {bytes} B of shared memory for rank_rows failed"
            )))
    }
}
