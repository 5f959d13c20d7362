//! Launchers of `kernels/attention.cu`: the fused attention forward and backward (`weight`
//! reading) and the `mix` reading's value mixing, with their kernel-gradient workspaces.

use super::launch::{blocks, int, Arg, NULL};
use super::{Cuda, MAX_HEAD_WIDTH};
use crate::backend::{
    AttnGrads, AttnInputs, AttnShape, KernelKind, MixShape, ScoreSource, View, ViewMut,
};
use cudarc::driver::CudaSlice;

type V<'a> = View<'a, CudaSlice<f32>>;
type VM<'a> = ViewMut<'a, CudaSlice<f32>>;

/// Threads per block of every attention kernel.
const THREADS: u32 = 128;

/// Upper bound on the bytes of kernel-gradient workspaces of one backward call. The batch
/// groups G shrink to stay under it (fewer groups: less parallelism, less memory); at the
/// default shapes (n 200, B 128, H 1) G = B fits easily.
const WORKSPACE_BUDGET: usize = 512 << 20;

/// Layout code of the dense [H, n, n] dpos in `attn_reduce_kernel_grad`.
const LAYOUT_DENSE: usize = 3;

/// Head-width bucket of the attention kernels: the smallest compiled DH ≥ dh.
pub(super) struct Bucket {
    pub dh: usize,
    pub fwd: &'static str,
    pub bwd: &'static str,
    /// Query rows per forward block.
    pub bq: usize,
    /// Key rows per backward block.
    pub bk: usize,
}

impl Bucket {
    pub(super) fn for_dh(dh: usize) -> Bucket {
        let (dhb, fwd, bwd, bq, bk) = match dh {
            0..=32 => (32, "attn_fwd_d32", "attn_bwd_d32", 32, 32),
            33..=64 => (64, "attn_fwd_d64", "attn_bwd_d64", 32, 32),
            65..=128 => (128, "attn_fwd_d128", "attn_bwd_d128", 16, 16),
            _ => panic!(
                "cuda: the attention kernels support a head width dh ≤ {MAX_HEAD_WIDTH} (got \
                 {dh}); use more heads or --device cpu"
            ),
        };
        Bucket {
            dh: dhb,
            fwd,
            bwd,
            bq,
            bk,
        }
    }

    /// Dynamic shared memory of the backward: 4·(2·BK·DH + 2·DH·33 + BK·33 + 64) bytes.
    pub(super) fn bwd_smem(&self) -> u32 {
        (4 * (2 * self.bk * self.dh + 2 * self.dh * 33 + self.bk * 33 + 64)) as u32
    }
}

/// KernelKind as the kernels' int code (common.cuh).
fn kind_code(k: KernelKind) -> usize {
    match k {
        KernelKind::None => 0,
        KernelKind::Full => 1,
        KernelKind::Toeplitz => 2,
    }
}

fn score_code(s: ScoreSource) -> usize {
    match s {
        ScoreSource::Content => 0,
        ScoreSource::Positional => 1,
    }
}

/// Batch groups of a backward with `workspaces` kernel-gradient workspaces of H·T floats each.
fn batch_groups(batch: usize, heads: usize, n: usize, workspaces: usize) -> usize {
    let per_group = 4 * workspaces * heads * (n * (n + 1) / 2);
    if per_group == 0 {
        return batch.max(1);
    }
    (WORKSPACE_BUDGET / per_group).clamp(1, batch.max(1))
}

/// The shape checks the CPU backend makes too, so a bad call fails the same way on both.
fn check_inputs(s: &AttnShape, i: &AttnInputs<CudaSlice<f32>>, start: &CudaSlice<u32>) {
    let act = s.batch * s.n * s.width();
    assert_eq!(i.v.len, act, "v length");
    assert_eq!(start.len(), s.batch, "start length");
    match s.score {
        ScoreSource::Content => {
            assert_eq!(i.q.map(|q| q.len), Some(act), "q length");
            assert_eq!(i.k.map(|k| k.len), Some(act), "k length");
        }
        ScoreSource::Positional => {
            assert_eq!(
                i.pos.map(|p| p.len),
                Some(s.heads * s.n * s.n),
                "pos length"
            )
        }
    }
    assert!(s.u_heads == 1 || s.u_heads == s.heads, "u_heads");
    assert!(s.l_heads == 1 || s.l_heads == s.heads, "l_heads");
    if s.u != KernelKind::None {
        assert_eq!(
            i.u.map(|u| u.len),
            Some(s.u_heads * s.u.len(s.n)),
            "u length"
        );
    }
    if s.l != KernelKind::None {
        assert_eq!(
            i.l.map(|l| l.len),
            Some(s.l_heads * s.l.len(s.n)),
            "l length"
        );
    }
}

impl Cuda {
    /// The per-call scalar tail shared by attn_fwd and attn_bwd: B, n, H, dh, scale,
    /// score_kind, u_kind, u_heads, l_kind, l_heads, dropout, seed.
    fn attn_scalars(&self, s: &AttnShape) -> [Arg; 12] {
        [
            int(s.batch),
            int(s.n),
            int(s.heads),
            int(s.dh),
            Arg::F32(s.scale()),
            int(score_code(s.score)),
            int(kind_code(s.u)),
            int(s.u_heads),
            int(kind_code(s.l)),
            int(s.l_heads),
            Arg::F32(s.dropout),
            Arg::U64(s.seed),
        ]
    }

    /// Pointers of (q, k, v, pos, u, l) as the kernels want them: null where the
    /// configuration does not read them.
    fn attn_input_ptrs(&self, s: &AttnShape, i: &AttnInputs<CudaSlice<f32>>) -> [Arg; 6] {
        let content = s.score == ScoreSource::Content;
        [
            if content { self.po(i.q) } else { NULL },
            if content { self.po(i.k) } else { NULL },
            self.p(i.v),
            if content { NULL } else { self.po(i.pos) },
            if s.u == KernelKind::None {
                NULL
            } else {
                self.po(i.u)
            },
            if s.l == KernelKind::None {
                NULL
            } else {
                self.po(i.l)
            },
        ]
    }

    pub(super) fn attention_fwd_impl(
        &self,
        s: &AttnShape,
        i: AttnInputs<CudaSlice<f32>>,
        start: &CudaSlice<u32>,
        y: VM,
        lse: VM,
    ) {
        check_inputs(s, &i, start);
        assert_eq!(y.len, s.batch * s.n * s.width(), "y length");
        assert_eq!(lse.len, s.batch * s.heads * s.n, "lse length");
        if s.batch == 0 || s.n == 0 || s.width() == 0 {
            self.fill_impl(y, 0.0);
            self.fill_impl(lse, 0.0);
            return;
        }
        let bucket = Bucket::for_dh(s.dh);
        let mut args = Vec::with_capacity(21);
        args.extend(self.attn_input_ptrs(s, &i));
        args.extend([self.pb(start), self.pm(&y), self.pm(&lse)]);
        args.extend(self.attn_scalars(s));
        self.launch(
            bucket.fwd,
            (blocks(s.n, bucket.bq), s.heads as u32, s.batch as u32),
            (THREADS, 1, 1),
            0,
            &args,
        );
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
        layout: usize,
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
                int(layout),
                int(out_heads),
                int(0),
            ],
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn attention_bwd_impl(
        &self,
        s: &AttnShape,
        i: AttnInputs<CudaSlice<f32>>,
        start: &CudaSlice<u32>,
        y: V,
        lse: V,
        dy: V,
        g: AttnGrads<CudaSlice<f32>>,
    ) {
        check_inputs(s, &i, start);
        let (b, n, h) = (s.batch, s.n, s.heads);
        let act = b * n * s.width();
        assert_eq!(y.len, act, "y length");
        assert_eq!(dy.len, act, "dy length");
        assert_eq!(lse.len, b * h * n, "lse length");
        assert_eq!(g.dv.len, act, "dv length");
        let content = s.score == ScoreSource::Content;
        let AttnGrads {
            dq,
            dk,
            dv,
            dpos,
            du,
            dl,
        } = g;
        // Gradients the configuration has no use for are written 0 (the CPU backend's
        // contract: every gradient given is overwritten).
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
        let (dk, dk_unused) = if content { (dk, None) } else { (None, dk) };
        for z in [du_unused, dl_unused, dpos_unused, dk_unused]
            .into_iter()
            .flatten()
        {
            self.fill_impl(z, 0.0);
        }
        if let Some(d) = &du {
            assert_eq!(d.len, s.u_heads * s.u.len(n), "du length");
        }
        if let Some(d) = &dl {
            assert_eq!(d.len, s.l_heads * s.l.len(n), "dl length");
        }
        if let Some(d) = &dpos {
            assert_eq!(d.len, h * n * n, "dpos length");
        }
        if b == 0 || n == 0 || s.width() == 0 {
            for z in [dq, dk, Some(dv), dpos, du, dl].into_iter().flatten() {
                self.fill_impl(z, 0.0);
            }
            return;
        }
        let bucket = Bucket::for_dh(s.dh);

        // Content scores need somewhere to put dq and dk even when the caller does not want
        // them (the kernel writes both); positional scores leave them alone.
        let (mut dq_tmp, mut dk_tmp) = (None, None);
        let dq_arg = match (&dq, content) {
            (Some(d), _) => {
                assert_eq!(d.len, act, "dq length");
                self.pm(d)
            }
            (None, true) => self.pb(dq_tmp.insert(self.alloc(act))),
            (None, false) => NULL,
        };
        let dk_arg = match (&dk, content) {
            (Some(d), true) => {
                assert_eq!(d.len, act, "dk length");
                self.pm(d)
            }
            (None, true) => self.pb(dk_tmp.insert(self.alloc(act))),
            (_, false) => NULL,
        };

        // D = rowwise dy·y; zeroes dq (accumulated with atomics by attn_bwd).
        let dvec = self.alloc(b * h * n);
        self.launch(
            "attn_bwd_preprocess",
            (blocks(b * n * h, 8), 1, 1),
            (256, 1, 1),
            0,
            &[
                self.p(dy),
                self.p(y),
                self.pb(&dvec),
                dq_arg,
                int(b),
                int(n),
                int(h),
                int(s.dh),
            ],
        );
        if !content {
            // A positional call given a dq: zeroed by the preprocess above, never written by
            // attn_bwd; nothing else to do.
            debug_assert!(dq_tmp.is_none());
        }

        // Kernel-gradient workspaces, zeroed (the kernel adds into them).
        let nws = [du.is_some(), dl.is_some(), dpos.is_some()]
            .iter()
            .filter(|&&x| x)
            .count();
        let groups = batch_groups(b, h, n, nws);
        let tri = n * (n + 1) / 2;
        let ws = |want: bool| want.then(|| self.alloc(groups * h * tri));
        let (ws_du, ws_dl, ws_dpos) = (ws(du.is_some()), ws(dl.is_some()), ws(dpos.is_some()));
        let wp = |w: &Option<CudaSlice<f32>>| w.as_ref().map_or(NULL, |w| self.pb(w));

        let mut args = Vec::with_capacity(29);
        args.extend(self.attn_input_ptrs(s, &i));
        args.extend([
            self.pb(start),
            self.p(dy),
            self.p(lse),
            self.pb(&dvec),
            if content { dq_arg } else { NULL },
            dk_arg,
            self.pm(&dv),
            wp(&ws_du),
            wp(&ws_dl),
            wp(&ws_dpos),
        ]);
        args.extend(self.attn_scalars(s));
        args.push(int(groups));
        self.launch(
            bucket.bwd,
            (blocks(n, bucket.bk), h as u32, groups as u32),
            (THREADS, 1, 1),
            bucket.bwd_smem(),
            &args,
        );

        if let (Some(w), Some(d)) = (&ws_du, &du) {
            self.reduce_kernel_grad(w, d, groups, h, n, kind_code(s.u), s.u_heads);
        }
        if let (Some(w), Some(d)) = (&ws_dl, &dl) {
            self.reduce_kernel_grad(w, d, groups, h, n, kind_code(s.l), s.l_heads);
        }
        if let (Some(w), Some(d)) = (&ws_dpos, &dpos) {
            self.reduce_kernel_grad(w, d, groups, h, n, LAYOUT_DENSE, h);
        }
        // Temporaries and workspaces are freed here, stream-ordered after the kernels.
        drop((dq_tmp, dk_tmp));
    }

    fn check_mix(&self, s: &MixShape, l: &V, v: &V, start: &CudaSlice<u32>) {
        let act = s.batch * s.n * s.heads * s.dh;
        assert_eq!(v.len, act, "v length");
        assert_eq!(start.len(), s.batch, "start length");
        assert!(s.l_heads == 1 || s.l_heads == s.heads, "l_heads");
        if s.l != KernelKind::None {
            assert_eq!(l.len, s.l_heads * s.l.len(s.n), "l length");
            assert!(
                s.dh <= MAX_HEAD_WIDTH,
                "cuda: the mix kernels support dh ≤ {MAX_HEAD_WIDTH} (got {})",
                s.dh
            );
        }
    }

    pub(super) fn mix_fwd_impl(&self, s: &MixShape, l: V, v: V, start: &CudaSlice<u32>, out: VM) {
        self.check_mix(s, &l, &v, start);
        assert_eq!(out.len, v.len, "out length");
        if s.batch == 0 || s.n == 0 || s.heads * s.dh == 0 {
            return;
        }
        if s.l == KernelKind::None {
            // L = I: out = v with padded rows zeroed.
            let mut out = out;
            self.copy_impl(v, out.rb());
            self.row_mask_impl(out, start, s.n);
            return;
        }
        self.launch(
            "mix_fwd",
            (blocks(s.n, 32), s.heads as u32, s.batch as u32),
            (THREADS, 1, 1),
            0,
            &[
                self.p(v),
                self.p(l),
                self.pb(start),
                self.pm(&out),
                int(s.batch),
                int(s.n),
                int(s.heads),
                int(s.dh),
                int(kind_code(s.l)),
                int(s.l_heads),
            ],
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn mix_bwd_impl(
        &self,
        s: &MixShape,
        l: V,
        v: V,
        start: &CudaSlice<u32>,
        dout: V,
        dv: VM,
        dl: VM,
    ) {
        self.check_mix(s, &l, &v, start);
        let act = v.len;
        assert_eq!(dout.len, act, "dout length");
        assert_eq!(dv.len, act, "dv length");
        let dl_len = if s.l == KernelKind::None {
            0
        } else {
            s.l_heads * s.l.len(s.n)
        };
        assert_eq!(dl.len, dl_len, "dl length");
        if s.batch == 0 || s.n == 0 || s.heads * s.dh == 0 {
            self.fill_impl(dv, 0.0);
            self.fill_impl(dl, 0.0);
            return;
        }
        if s.l == KernelKind::None {
            let mut dv = dv;
            self.copy_impl(dout, dv.rb());
            self.row_mask_impl(dv, start, s.n);
            return;
        }
        let groups = batch_groups(s.batch, s.heads, s.n, 1);
        let ws = self.alloc(groups * s.heads * (s.n * (s.n + 1) / 2));
        self.launch(
            "mix_bwd",
            (blocks(s.n, 32), s.heads as u32, groups as u32),
            (THREADS, 1, 1),
            0,
            &[
                self.p(v),
                self.p(l),
                self.pb(start),
                self.p(dout),
                self.pm(&dv),
                self.pb(&ws),
                int(s.batch),
                int(s.n),
                int(s.heads),
                int(s.dh),
                int(kind_code(s.l)),
                int(s.l_heads),
                int(groups),
            ],
        );
        self.reduce_kernel_grad(&ws, &dl, groups, s.heads, s.n, kind_code(s.l), s.l_heads);
    }
}
