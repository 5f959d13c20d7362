//! Launchers of the attention kernels: the fused forward and backward (`weight` reading;
//! `kernels/attention.cuh`, one module per precision), which kernel of the list a call runs,
//! and the `mix` reading's value mixing with its kernel-gradient workspace
//! (`kernels/attention.cu`).

use super::launch::{blocks, int, to_i32, Arg};
use super::params::{
    AttnBwdParams, AttnDims, AttnFwdParams, AttnIn, MixBwdParams, MixDims, MixFwdParams,
};
use super::{Cuda, MAX_HEAD_WIDTH};
use super::{GpuBuf, GpuInts};
use crate::backend::{
    Attention, AttnGrads, AttnInputs, AttnShape, KernelKind, Memory, MixShape, Precision,
    ScoreSource, View, ViewMut,
};
use crate::device::precision_name;
use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::CudaSlice;
use std::sync::OnceLock;

type V<'a> = View<'a, GpuBuf>;
type VM<'a> = ViewMut<'a, GpuBuf>;

/// Threads per block of every attention kernel.
pub(super) const THREADS: u32 = 128;

/// Upper bound on the bytes of the dL workspace of one `mix_bwd` call. The batch
/// groups G shrink to stay under it (fewer groups: less parallelism, less memory); at the
/// default shapes (n 200, B 128, H 1) G = B fits easily.
const WORKSPACE_BUDGET: usize = 512 << 20;

/// Head-width bucket of the attention kernels: the smallest compiled DH ≥ dh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bucket {
    pub dh: usize,
}

/// Query rows per forward block (FWD_BQ of attention.cuh), and key rows per forward tile.
const FWD_BQ: usize = 64;
const FWD_BK: usize = 32;
/// Key rows per backward block, query rows per backward tile, the row stride of its ∂C tile
/// and its Toeplitz diagonals per tile (BWD_* of attention.cuh).
const BWD_BK: usize = 64;
const BWD_BQ: usize = 16;
const BWD_LDQ: usize = BWD_BQ + 8;
const BWD_DIAGS: usize = BWD_BK + BWD_BQ - 1;

/// The compiled head-width buckets.
const BUCKETS: [usize; 3] = [32, 64, 128];

impl Bucket {
    pub(super) fn for_dh(dh: usize) -> Bucket {
        let dh = BUCKETS.into_iter().find(|&b| dh <= b).unwrap_or_else(|| {
            panic!(
                "cuda: the attention kernels support a head width dh ≤ {MAX_HEAD_WIDTH} (got \
                 {dh}); use more heads or --device cpu"
            )
        });
        Bucket { dh }
    }

    /// Dynamic shared memory of the forward: Q [64][DH+4], K and V [32][DH+4] twice (double
    /// buffered) floats.
    pub(super) fn fwd_smem(&self) -> u32 {
        (4 * (FWD_BQ + 4 * FWD_BK) * (self.dh + 4)) as u32
    }

    /// Dynamic shared memory of the backward: K, V [64][DH+4]; Q, dY [16][DH+4] and lse, D
    /// [16]; ∂C [64][24]; two rows of Toeplitz diagonals [79] (floats).
    pub(super) fn bwd_smem(&self) -> u32 {
        let query_tile = 2 * BWD_BQ * (self.dh + 4) + 2 * BWD_BQ;
        let floats = 2 * BWD_BK * (self.dh + 4) + query_tile + BWD_BK * BWD_LDQ + 2 * BWD_DIAGS;
        (4 * floats) as u32
    }
}

/// The (score source, U, L) configurations compiled with U, L and dropout as constants, each
/// with dropout on and off: PASA_ATTN_BUCKET's list in kernels/attention.cuh, in its order (a
/// test holds the two equal). Every other configuration runs its bucket's `any` kernel, which
/// reads them at run time.
pub(super) const SPECIALISED: [(ScoreSource, KernelKind, KernelKind); 4] = [
    // sasrec, rope
    (ScoreSource::Content, KernelKind::None, KernelKind::None),
    // pasa
    (ScoreSource::Content, KernelKind::Toeplitz, KernelKind::Full),
    // pasa with the `mix` reading (L applied by mix_fwd, so none here)
    (ScoreSource::Content, KernelKind::Toeplitz, KernelKind::None),
    // parec, fparec
    (ScoreSource::Positional, KernelKind::None, KernelKind::None),
];

/// One fused attention kernel of the list (kernels/attention.cuh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AttnKernel {
    pub backward: bool,
    pub score: ScoreSource,
    pub bucket: Bucket,
    pub precision: Precision,
    /// U kind, L kind and dropout on/off compiled in; None for the `any` kernel.
    pub fixed: Option<(KernelKind, KernelKind, bool)>,
}

/// The kernels' letter of a kind in their names.
fn kind_letter(k: KernelKind) -> char {
    match k {
        KernelKind::None => 'n',
        KernelKind::Full => 'f',
        KernelKind::Toeplitz => 't',
    }
}

/// The PTX module (kernel file stem) of a precision's attention kernels.
pub(super) fn module(p: Precision) -> String {
    format!("attention_{}", precision_name(p))
}

impl AttnKernel {
    /// The kernel for call `s` in `precision`: its configuration's specialised kernel when the
    /// list has one (unless `generic`), else the bucket's `any` kernel.
    pub(super) fn for_call(
        s: &AttnShape,
        precision: Precision,
        backward: bool,
        generic: bool,
    ) -> AttnKernel {
        let listed = SPECIALISED.contains(&(s.score, s.u, s.l));
        AttnKernel {
            backward,
            score: s.score,
            bucket: Bucket::for_dh(s.dh),
            precision,
            fixed: (listed && !generic).then_some((s.u, s.l, s.dropout > 0.0)),
        }
    }

    /// The entry point's name: attn_{fwd|bwd}[_pos]_d{DH}_{precision}_{u?l?_drop|u?l?_nodrop|any}.
    pub(super) fn name(&self) -> String {
        let config = match self.fixed {
            Some((u, l, dropout)) => format!(
                "u{}l{}_{}",
                kind_letter(u),
                kind_letter(l),
                if dropout { "drop" } else { "nodrop" }
            ),
            None => "any".to_string(),
        };
        format!(
            "attn_{}{}_d{}_{}_{config}",
            if self.backward { "bwd" } else { "fwd" },
            match self.score {
                ScoreSource::Content => "",
                ScoreSource::Positional => "_pos",
            },
            self.bucket.dh,
            precision_name(self.precision),
        )
    }

    /// The name as a `&'static str` (the launch plumbing's key), from a table of every listed
    /// kernel built once: a launch compares a few small structs instead of formatting the name.
    /// A kernel outside the list is a bug of `for_call`.
    pub(super) fn entry(&self) -> &'static str {
        static NAMES: OnceLock<Vec<(AttnKernel, String)>> = OnceLock::new();
        let names = NAMES.get_or_init(|| {
            Precision::ALL
                .into_iter()
                .flat_map(attention_kernels)
                .map(|k| (k, k.name()))
                .collect()
        });
        names
            .iter()
            .find(|(k, _)| k == self)
            .map(|(_, name)| name.as_str())
            .unwrap_or_else(|| {
                panic!(
                    "cuda: {} is not in the attention kernels' list",
                    self.name()
                )
            })
    }

    /// Dynamic shared memory of a launch.
    pub(super) fn smem(&self) -> u32 {
        if self.backward {
            self.bucket.bwd_smem()
        } else {
            self.bucket.fwd_smem()
        }
    }
}

/// Every attention kernel of `precision`, the entry points of its module, in the list's order.
pub(super) fn attention_kernels(precision: Precision) -> Vec<AttnKernel> {
    let mut out = Vec::new();
    for dh in BUCKETS {
        let bucket = Bucket { dh };
        let configs = SPECIALISED
            .into_iter()
            .flat_map(|(score, u, l)| [(score, Some((u, l, true))), (score, Some((u, l, false)))])
            .chain([
                (ScoreSource::Content, None),
                (ScoreSource::Positional, None),
            ]);
        for (score, fixed) in configs {
            for backward in [false, true] {
                out.push(AttnKernel {
                    backward,
                    score,
                    bucket,
                    precision,
                    fixed,
                });
            }
        }
    }
    out
}

/// KernelKind as the kernels' int code (common.cuh).
fn kind_code(k: KernelKind) -> i32 {
    match k {
        KernelKind::None => 0,
        KernelKind::Full => 1,
        KernelKind::Toeplitz => 2,
    }
}

fn score_code(s: ScoreSource) -> i32 {
    match s {
        ScoreSource::Content => 0,
        ScoreSource::Positional => 1,
    }
}

/// Batch groups of a `mix_bwd` with `workspaces` workspaces of H·T floats each.
fn batch_groups(batch: usize, heads: usize, n: usize, workspaces: usize) -> usize {
    let per_group = 4 * workspaces * heads * (n * (n + 1) / 2);
    if per_group == 0 {
        return batch.max(1);
    }
    (WORKSPACE_BUDGET / per_group).clamp(1, batch.max(1))
}

impl Cuda {
    /// The forward or backward kernel of call `s` in this backend's precision.
    fn attention_kernel(&self, s: &AttnShape, backward: bool) -> AttnKernel {
        AttnKernel::for_call(s, self.precision(), backward, self.generic_attention)
    }

    /// The shape and options of `s` as the kernels take them.
    fn attn_dims(&self, s: &AttnShape, groups: usize) -> AttnDims {
        AttnDims {
            seed: s.seed,
            batch: to_i32(s.batch),
            n: to_i32(s.n),
            heads: to_i32(s.heads),
            dh: to_i32(s.dh),
            scale: s.scale(),
            score_kind: score_code(s.score),
            u_kind: kind_code(s.u),
            u_heads: to_i32(s.u_heads),
            l_kind: kind_code(s.l),
            l_heads: to_i32(s.l_heads),
            dropout: s.dropout,
            groups: to_i32(groups),
        }
    }

    /// The input pointers as the kernels want them: null where the configuration does not
    /// read them.
    fn attn_in(&self, s: &AttnShape, i: &AttnInputs<GpuBuf>, start: &GpuInts) -> AttnIn {
        let content = s.score == ScoreSource::Content;
        let when = |read: bool, v| if read { self.ptr_opt(v) } else { 0 };
        AttnIn {
            q: when(content, i.q),
            k: when(content, i.k),
            v: self.ptr(i.v),
            pos: when(!content, i.pos),
            u: when(s.u != KernelKind::None, i.u),
            l: when(s.l != KernelKind::None, i.l),
            start: self.addr(start),
        }
    }

    /// Sum a [G][H][T] workspace into a kernel gradient in its parameter layout (overwrites).
    #[allow(clippy::too_many_arguments)]
    fn reduce_kernel_grad(
        &self,
        ws: &CudaSlice<f32>,
        out: &VM,
        groups: usize,
        s_heads: usize,
        n: usize,
        layout: i32,
        out_heads: usize,
    ) {
        self.launch(
            "attn_reduce_kernel_grad",
            (blocks(n, 256), n as u32, out_heads as u32),
            (256, 1, 1),
            0,
            &[
                self.pb(ws),
                self.pm(out),
                int(groups),
                int(s_heads),
                int(n),
                Arg::I32(layout),
                int(out_heads),
                int(0),
            ],
        );
    }

    /// The mix kernels keep one row of dh values per lane group: dh ≤ MAX_HEAD_WIDTH.
    fn check_mix_width(&self, s: &MixShape) {
        if s.l != KernelKind::None {
            assert!(
                s.dh <= MAX_HEAD_WIDTH,
                "cuda: the mix kernels support dh ≤ {MAX_HEAD_WIDTH} (got {})",
                s.dh
            );
        }
    }

    fn mix_dims(&self, s: &MixShape) -> MixDims {
        MixDims {
            batch: to_i32(s.batch),
            n: to_i32(s.n),
            heads: to_i32(s.heads),
            dh: to_i32(s.dh),
            l_kind: kind_code(s.l),
            l_heads: to_i32(s.l_heads),
        }
    }
}

impl Attention for Cuda {
    fn attention_fwd(&self, s: &AttnShape, i: AttnInputs<GpuBuf>, start: &GpuInts, y: VM, lse: VM) {
        s.check_forward(&i.lens(), start.len(), y.len, lse.len);
        if s.batch == 0 || s.n == 0 || s.width() == 0 {
            self.fill(y, 0.0);
            self.fill(lse, 0.0);
            return;
        }
        let kernel = self.attention_kernel(s, false);
        let params = AttnFwdParams {
            inputs: self.attn_in(s, &i, start),
            y: self.ptr_mut(&y),
            lse: self.ptr_mut(&lse),
            dims: self.attn_dims(s, 1),
        };
        self.launch_params(
            kernel.entry(),
            (blocks(s.n, FWD_BQ), s.heads as u32, s.batch as u32),
            (THREADS, 1, 1),
            kernel.smem(),
            &params,
        );
    }

    fn attention_bwd(
        &self,
        s: &AttnShape,
        i: AttnInputs<GpuBuf>,
        start: &GpuInts,
        y: V,
        lse: V,
        dy: V,
        g: AttnGrads<GpuBuf>,
    ) {
        s.check_backward(&i.lens(), start.len(), y.len, lse.len, dy.len, &g.lens());
        let (b, n, h) = (s.batch, s.n, s.heads);
        let act = s.act_len();
        let content = s.score == ScoreSource::Content;
        let AttnGrads {
            dq,
            dk,
            dv,
            dpos,
            du,
            dl,
        } = g;
        // Gradients the configuration has no use for are written 0 (the contract of every
        // backend: each gradient given is overwritten).
        let du = du.filter(|d| d.len > 0);
        let dl = dl.filter(|d| d.len > 0);
        let (du, du_unused) = if s.u == KernelKind::None {
            (None, du)
        } else {
            (du, None)
        };
        let (dl, dl_unused) = if s.l == KernelKind::None {
            (None, dl)
        } else {
            (dl, None)
        };
        let (dpos, dpos_unused) = if content { (None, dpos) } else { (dpos, None) };
        let dpos = dpos.filter(|d| d.len > 0);
        let (dq, dq_unused) = if content { (dq, None) } else { (None, dq) };
        let (dk, dk_unused) = if content { (dk, None) } else { (None, dk) };
        for z in [du_unused, dl_unused, dpos_unused, dq_unused, dk_unused]
            .into_iter()
            .flatten()
        {
            self.fill(z, 0.0);
        }
        if b == 0 || n == 0 || s.width() == 0 {
            for z in [dq, dk, Some(dv), dpos, du, dl].into_iter().flatten() {
                self.fill(z, 0.0);
            }
            return;
        }
        let kernel = self.attention_kernel(s, true);

        // Content scores need somewhere to put dq and dk even when the caller does not want
        // them (the kernel writes both); positional scores leave them alone.
        let dq = dq.filter(|d| d.len > 0);
        let dk = dk.filter(|d| d.len > 0);
        let (mut dq_tmp, mut dk_tmp) = (None, None);
        let dq_ptr: CUdeviceptr = match (&dq, content) {
            (Some(d), true) => self.ptr_mut(d),
            (None, true) => self.addr(dq_tmp.insert(self.zeroed(act))),
            (_, false) => 0,
        };
        let dk_ptr: CUdeviceptr = match (&dk, content) {
            (Some(d), true) => self.ptr_mut(d),
            (None, true) => self.addr(dk_tmp.insert(self.zeroed(act))),
            (_, false) => 0,
        };

        // D = rowwise dy·y; zeroes dq (accumulated with atomics by attn_bwd).
        let delta = self.zeroed(b * h * n);
        self.launch(
            "attn_bwd_preprocess",
            (blocks(b * n * h, 8), 1, 1),
            (256, 1, 1),
            0,
            &[
                self.p(dy),
                self.p(y),
                self.pb(&delta),
                Arg::Ptr(dq_ptr),
                int(b),
                int(n),
                int(h),
                int(s.dh),
            ],
        );

        // The kernel gradients, zeroed: the kernel adds into them (reduced on chip first).
        let (mut du, mut dl, mut dpos) = (du, dl, dpos);
        for g in [&mut du, &mut dl, &mut dpos].into_iter().flatten() {
            self.fill(g.rb(), 0.0);
        }
        let gp = |g: &Option<VM>| g.as_ref().map_or(0, |g| self.ptr_mut(g));

        let params = AttnBwdParams {
            inputs: self.attn_in(s, &i, start),
            dy: self.ptr(dy),
            lse: self.ptr(lse),
            delta: self.addr(&delta),
            dq: dq_ptr,
            dk: dk_ptr,
            dv: self.ptr_mut(&dv),
            du: gp(&du),
            dl: gp(&dl),
            dpos: gp(&dpos),
            dims: self.attn_dims(s, b),
        };
        // One batch per block row (G = B): nothing is kept per group any more.
        self.launch_params(
            kernel.entry(),
            (blocks(n, BWD_BK), h as u32, b as u32),
            (THREADS, 1, 1),
            kernel.smem(),
            &params,
        );
        // Temporaries are freed here, stream-ordered after the kernels.
        drop((dq_tmp, dk_tmp));
    }

    fn mix_fwd(&self, s: &MixShape, l: V, v: V, start: &GpuInts, out: VM) {
        s.check_forward(l.len, v.len, start.len(), out.len);
        self.check_mix_width(s);
        if s.batch == 0 || s.n == 0 || s.heads * s.dh == 0 {
            return;
        }
        if s.l == KernelKind::None {
            // L = I: out = v with padded rows zeroed.
            let mut out = out;
            self.copy(v, out.rb());
            self.row_mask(out, start, s.n);
            return;
        }
        let params = MixFwdParams {
            v: self.ptr(v),
            l: self.ptr(l),
            start: self.addr(start),
            out: self.ptr_mut(&out),
            dims: self.mix_dims(s),
        };
        self.launch_params(
            "mix_fwd",
            (blocks(s.n, 32), s.heads as u32, s.batch as u32),
            (THREADS, 1, 1),
            0,
            &params,
        );
    }

    fn mix_bwd(&self, s: &MixShape, l: V, v: V, start: &GpuInts, dout: V, dv: VM, dl: VM) {
        s.check_backward(l.len, v.len, start.len(), dout.len, dv.len, dl.len);
        self.check_mix_width(s);
        if s.batch == 0 || s.n == 0 || s.heads * s.dh == 0 {
            self.fill(dv, 0.0);
            self.fill(dl, 0.0);
            return;
        }
        if s.l == KernelKind::None {
            let mut dv = dv;
            self.copy(dout, dv.rb());
            self.row_mask(dv, start, s.n);
            return;
        }
        let groups = batch_groups(s.batch, s.heads, s.n, 1);
        let ws = self.zeroed(groups * s.heads * (s.n * (s.n + 1) / 2));
        let params = MixBwdParams {
            v: self.ptr(v),
            l: self.ptr(l),
            start: self.addr(start),
            dout: self.ptr(dout),
            dv: self.ptr_mut(&dv),
            ws_dl: self.addr(&ws),
            dims: self.mix_dims(s),
            groups: to_i32(groups),
            pad: 0,
        };
        self.launch_params(
            "mix_bwd",
            (blocks(s.n, 32), s.heads as u32, groups as u32),
            (THREADS, 1, 1),
            0,
            &params,
        );
        self.reduce_kernel_grad(&ws, &dl, groups, s.heads, s.n, kind_code(s.l), s.l_heads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(
        score: ScoreSource,
        u: KernelKind,
        l: KernelKind,
        dh: usize,
        dropout: f32,
    ) -> AttnShape {
        AttnShape {
            batch: 2,
            n: 9,
            heads: 1,
            dh,
            score,
            u,
            u_heads: 1,
            l,
            l_heads: 1,
            dropout,
            seed: 1,
        }
    }

    #[test]
    fn each_call_gets_its_specialised_kernel_or_the_any_one() {
        use KernelKind::{Full, None as No, Toeplitz};
        use ScoreSource::{Content, Positional};
        let pasa = shape(Content, Toeplitz, Full, 64, 0.2);
        let k = AttnKernel::for_call(&pasa, Precision::Fp32, false, false);
        assert_eq!(k.entry(), "attn_fwd_d64_fp32_utlf_drop");
        assert_eq!(k.smem(), 52_224);
        let eval = shape(Content, Toeplitz, Full, 64, 0.0);
        let k = AttnKernel::for_call(&eval, Precision::Bf16, true, false);
        assert_eq!(k.entry(), "attn_bwd_d64_bf16_utlf_nodrop");
        let sasrec = shape(Content, No, No, 20, 0.1);
        let k = AttnKernel::for_call(&sasrec, Precision::Tf32, true, false);
        assert_eq!(
            (k.entry(), k.smem()),
            ("attn_bwd_d32_tf32_unln_drop", 29_944)
        );
        let parec = shape(Positional, No, No, 128, 0.0);
        let k = AttnKernel::for_call(&parec, Precision::Fp32, false, false);
        assert_eq!(k.entry(), "attn_fwd_pos_d128_fp32_unln_nodrop");
        // Outside the list: the bucket's `any` kernel, whatever the dropout.
        for (score, u, l) in [(Content, Full, Toeplitz), (Positional, Toeplitz, Full)] {
            for p in [0.0, 0.3] {
                let k =
                    AttnKernel::for_call(&shape(score, u, l, 33, p), Precision::Fp32, false, false);
                assert_eq!(k.fixed, None);
            }
        }
        let k = AttnKernel::for_call(
            &shape(Positional, Full, No, 33, 0.0),
            Precision::Fp32,
            true,
            false,
        );
        assert_eq!(k.entry(), "attn_bwd_pos_d64_fp32_any");
        // Forced generic.
        let k = AttnKernel::for_call(&pasa, Precision::Fp32, false, true);
        assert_eq!(k.entry(), "attn_fwd_d64_fp32_any");
    }

    /// The Rust list (SPECIALISED, attention_kernels) and the .cu list (PASA_ATTN_BUCKET) name
    /// the same kernels: every attn_fwd / attn_bwd entry of each precision's PTX, no more, no
    /// fewer.
    #[test]
    #[cfg_attr(
        pasa_no_kernels,
        ignore = "this build has no CUDA kernels (nvcc was absent at build time)"
    )]
    fn the_rust_list_is_the_kernel_files_list() {
        for p in Precision::ALL {
            let file = module(p);
            let ptx = crate::kernels::ptx(&file).unwrap_or_else(|| panic!("{file} not built"));
            let mut in_ptx: Vec<&str> = ptx
                .split(".entry ")
                .skip(1)
                .map(|rest| rest.split('(').next().unwrap_or_default())
                .filter(|name| name.starts_with("attn_fwd") || name.starts_with("attn_bwd"))
                .collect();
            let mut listed: Vec<&str> = attention_kernels(p).iter().map(|k| k.entry()).collect();
            assert_eq!(
                listed.len(),
                60,
                "{file}: 10 forward and 10 backward per bucket"
            );
            in_ptx.sort_unstable();
            listed.sort_unstable();
            assert_eq!(in_ptx, listed, "{file}");
        }
    }
}
