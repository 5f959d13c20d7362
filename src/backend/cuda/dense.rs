//! The dense family: GEMM on cuBLAS (no custom kernel), and the launchers of
//! `kernels/dense.cu` (bias add); column sums are a GEMM against a vector of ones.
//!
//! GEMM is row-major and batched on column-major cuBLAS. A row-major `[r, c]` matrix is, byte for byte, its column-major transpose `[c, r]`. So the
//! row-major product C = op(A)·op(B) is computed as the column-major product
//! Cᵀ = op(B)ᵀ·op(A)ᵀ: B goes first, A second, m and n swap, and each operand keeps its own
//! transpose flag (the stored matrix read column-major already is the transpose).

use super::launch::{int, size, to_i32, Arg};
use super::step_graph::OpSig;
use super::Cuda;
use super::GpuBuf;
use crate::backend::Precision;
use crate::backend::{Dense, DeviceBuf, Gemm, Memory, Strided, View, ViewMut};
use cudarc::cublas::result::{self, CublasError};
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::cublas::{Gemm as _, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{CudaView, CudaViewMut, DevicePtr, DevicePtrMut};
use std::ffi::c_void;

fn op(trans: bool) -> cublasOperation_t {
    if trans {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

/// Elements one batch entry spans inside a buffer, for the bounds checks.
fn span(batch: usize, stride: usize, one: usize) -> usize {
    if one == 0 {
        0
    } else {
        (batch - 1) * stride + one
    }
}

impl Cuda {
    /// Runs `f` on a view of `len` ones, from a buffer kept for the backend's life (grown by
    /// doubling; filled once per growth).
    fn with_ones<R>(&self, len: usize, f: impl FnOnce(View<GpuBuf>) -> R) -> R {
        let mut slot = self.ones.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_none_or(|b| b.len() < len) {
            let grown = len.max(slot.as_ref().map_or(0, |b| 2 * b.len()));
            let mut b = Cuda::alloc(self, grown);
            self.fill(b.view_mut(), 1.0);
            *slot = Some(b);
        }
        f(DeviceBuf::slice(
            slot.as_ref().expect("filled above"),
            0,
            len,
        ))
    }
}

impl Cuda {
    /// The bf16 mode's GEMM: f32 data, bf16 operands, f32 accumulation
    /// (`CUBLAS_COMPUTE_32F_FAST_16BF` through cublasGemmEx, or cublasGemmStridedBatchedEx when
    /// batched); the arguments as cudarc's sgemm takes them.
    ///
    /// # Safety
    /// As [`cudarc::cublas::Gemm::gemm_strided_batched`]: every batch entry of A, B and C
    /// inside its slice, for the configuration's shapes, leading dimensions and strides.
    unsafe fn gemm_bf16(
        &self,
        cfg: &StridedBatchedConfig<f32>,
        a: &CudaView<f32>,
        b: &CudaView<f32>,
        c: &mut CudaViewMut<f32>,
    ) -> Result<(), CublasError> {
        let (a, _ra) = a.device_ptr(&self.stream);
        let (b, _rb) = b.device_ptr(&self.stream);
        let (c, _rc) = c.device_ptr_mut(&self.stream);
        let gm = &cfg.gemm;
        let (f32_t, compute) = (
            cudaDataType::CUDA_R_32F,
            cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_16BF,
        );
        let (alpha, beta) = (
            &gm.alpha as *const f32 as *const c_void,
            &gm.beta as *const f32 as *const c_void,
        );
        let (a, b, c) = (a as *const c_void, b as *const c_void, c as *mut c_void);
        let algo = cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT;
        let h = *self.blas.handle();
        if cfg.batch_size == 1 {
            result::gemm_ex(
                h, gm.transa, gm.transb, gm.m, gm.n, gm.k, alpha, a, f32_t, gm.lda, b, f32_t,
                gm.ldb, beta, c, f32_t, gm.ldc, compute, algo,
            )
        } else {
            result::gemm_strided_batched_ex(
                h,
                gm.transa,
                gm.transb,
                gm.m,
                gm.n,
                gm.k,
                alpha,
                a,
                f32_t,
                gm.lda,
                cfg.stride_a,
                b,
                f32_t,
                gm.ldb,
                cfg.stride_b,
                beta,
                c,
                f32_t,
                gm.ldc,
                cfg.stride_c,
                cfg.batch_size,
                compute,
                algo,
            )
        }
    }
}

impl Dense for Cuda {
    fn gemm(&self, g: &Gemm, a: View<GpuBuf>, b: View<GpuBuf>, c: ViewMut<GpuBuf>) {
        let (m, n, k) = (g.m, g.n, g.k);
        if g.batch == 0 || m == 0 || n == 0 {
            return;
        }
        assert!(
            a.len >= span(g.batch, g.stride_a, m * k),
            "gemm: A too short"
        );
        assert!(
            b.len >= span(g.batch, g.stride_b, k * n),
            "gemm: B too short"
        );
        assert!(
            c.len >= span(g.batch, g.stride_c, m * n),
            "gemm: C too short"
        );
        // Overlapping outputs (stride_c 0 sums the batches into one C) would race inside one
        // strided-batched call: run them in order instead, the first with the caller's beta and
        // the rest accumulating, as the CPU backend does.
        if g.batch > 1 && g.stride_c < m * n {
            for bi in 0..g.batch {
                let one = Gemm {
                    batch: 1,
                    beta: if bi == 0 { g.beta } else { 1.0 },
                    ..*g
                };
                let av = View {
                    buf: a.buf,
                    off: a.off + bi * g.stride_a,
                    len: m * k,
                };
                let bv = View {
                    buf: b.buf,
                    off: b.off + bi * g.stride_b,
                    len: k * n,
                };
                let cv = ViewMut {
                    buf: &mut *c.buf,
                    off: c.off + bi * g.stride_c,
                    len: m * n,
                };
                self.gemm(&one, av, bv, cv);
            }
            return;
        }
        if k == 0 {
            // An empty sum: C = beta·C for every batch entry (cuBLAS's handling of k = 0 is
            // not something to rely on).
            for bi in 0..g.batch {
                let cv = ViewMut {
                    buf: &mut *c.buf,
                    off: c.off + bi * g.stride_c,
                    len: m * n,
                };
                if g.beta == 0.0 {
                    self.fill(cv, 0.0);
                } else {
                    let p = self.pm(&cv);
                    self.launch_flat("scale_f32", m * n, &[p, p, Arg::F32(g.beta), size(m * n)]);
                }
            }
            return;
        }
        // Column-major operands: A' = B (ld = its stored row length), B' = A.
        let ldb_stored = if g.trans_b { k } else { n };
        let lda_stored = if g.trans_a { m } else { k };
        let gemm = GemmConfig {
            transa: op(g.trans_b),
            transb: op(g.trans_a),
            m: to_i32(n),
            n: to_i32(m),
            k: to_i32(k),
            alpha: g.alpha,
            lda: to_i32(ldb_stored.max(1)),
            ldb: to_i32(lda_stored.max(1)),
            beta: g.beta,
            ldc: to_i32(n.max(1)),
        };
        // A step replayed as a graph holds the GEMM back: it is in the graph, and must recur
        // exactly (it takes no per-step value).
        let words = [
            m,
            n,
            k,
            g.trans_a as usize,
            g.trans_b as usize,
            g.batch,
            g.stride_a,
            g.stride_b,
            g.stride_c,
        ];
        let mut desc: Vec<u64> = words.iter().map(|&w| w as u64).collect();
        desc.extend([g.alpha.to_bits() as u64, g.beta.to_bits() as u64]);
        let addrs = [self.ptr(a), self.ptr(b), self.ptr_mut(&c)];
        if !self.issue_op(OpSig::Gemm(addrs, desc)) {
            return;
        }
        let av = (**a.buf).slice(a.off..a.off + a.len);
        let bv = (**b.buf).slice(b.off..b.off + b.len);
        let mut cv = (**c.buf).slice_mut(c.off..c.off + c.len);
        // cuBLAS calls do not bind the context themselves; a backend used from another thread
        // than the one that created it would otherwise run on no context.
        self.ctx
            .bind_to_thread()
            .unwrap_or_else(|e| panic!("cuda: binding the context failed: {e}"));
        // SAFETY: the asserts above keep every batch entry of A, B and C inside its view; the
        // leading dimensions are the stored row lengths; beta = 0 never reads C (cuBLAS).
        let cfg = StridedBatchedConfig {
            gemm,
            batch_size: to_i32(g.batch),
            stride_a: g.stride_b as i64,
            stride_b: g.stride_a as i64,
            stride_c: g.stride_c as i64,
        };
        let r = unsafe {
            if self.precision() == Precision::Bf16 {
                self.gemm_bf16(&cfg, &bv, &av, &mut cv)
            } else if g.batch == 1 {
                self.blas.gemm(gemm, &bv, &av, &mut cv)
            } else {
                self.blas.gemm_strided_batched(cfg, &bv, &av, &mut cv)
            }
        };
        r.unwrap_or_else(|e| panic!("cuda: cuBLAS sgemm {g:?} failed: {e}"));
        self.counters.gemm();
        if self.sync_each_launch {
            self.stream
                .synchronize()
                .unwrap_or_else(|e| panic!("cuda: cuBLAS sgemm failed: {e}"));
        }
    }

    fn bias_add(&self, x: ViewMut<GpuBuf>, bias: View<GpuBuf>, st: Strided) {
        assert!(bias.len >= st.span(), "bias_add: bias view too short");
        if st.count == 0 || st.len == 0 {
            return;
        }
        let rows = x.len / (st.count * st.len);
        self.launch_flat(
            "bias_add",
            x.len,
            &[
                self.pm(&x),
                self.p(bias),
                int(rows),
                int(st.len),
                size(st.count),
                size(st.stride),
            ],
        );
    }

    /// One GEMM (batched over the slabs): out[1, len] += ones[1, rows]·x[rows, len] (cuBLAS
    /// reads the tall input at full bandwidth, in one call, with a fixed summation order).
    fn col_sum(&self, x: View<GpuBuf>, out: ViewMut<GpuBuf>, st: Strided) {
        assert!(out.len >= st.span(), "col_sum: output view too short");
        if st.count == 0 || st.len == 0 {
            return;
        }
        let rows = x.len / (st.count * st.len);
        if rows == 0 {
            return;
        }
        let g = Gemm::new(1, st.len, rows, false, false)
            .accumulate()
            .batched(st.count, 0, rows * st.len, st.stride);
        self.with_ones(rows, |ones| self.gemm(&g, ones, x, out));
    }
}
