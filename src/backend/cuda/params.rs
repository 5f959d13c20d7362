//! The Rust side of `kernels/params.cuh`: the parameter structs that the attention, mix and
//! Adam kernels take by value as their only parameter.
//!
//! MIRRORED IN C: every struct here is declared in `kernels/params.cuh` with the same fields
//! in the same order, and both files assert the same sizes and field offsets (`const`
//! asserts here, `static_assert` there). The two must change together; a change on one side
//! only fails that side's build. Device pointers are [`CUdeviceptr`] (a u64 address, 0 for
//! null), C's `int` is i32, `float` f32, `size_t` and `unsigned long long` u64.

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::DeviceRepr;

/// Shape and options of one fused attention call (C `AttnDims`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct AttnDims {
    pub seed: u64,
    pub batch: i32,
    pub n: i32,
    pub heads: i32,
    pub dh: i32,
    pub scale: f32,
    pub score_kind: i32,
    pub u_kind: i32,
    pub u_heads: i32,
    pub l_kind: i32,
    pub l_heads: i32,
    pub dropout: f32,
    /// Batch groups of the backward (the forward ignores it).
    pub groups: i32,
}

/// The inputs every attention kernel reads; 0 where the configuration has none (C `AttnIn`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct AttnIn {
    pub q: CUdeviceptr,
    pub k: CUdeviceptr,
    pub v: CUdeviceptr,
    pub pos: CUdeviceptr,
    pub u: CUdeviceptr,
    pub l: CUdeviceptr,
    pub start: CUdeviceptr,
}

/// The parameter of `attn_fwd_d*`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct AttnFwdParams {
    pub inputs: AttnIn,
    pub y: CUdeviceptr,
    pub lse: CUdeviceptr,
    pub dims: AttnDims,
}

/// The parameter of `attn_bwd_d*`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct AttnBwdParams {
    pub inputs: AttnIn,
    pub dy: CUdeviceptr,
    pub lse: CUdeviceptr,
    pub delta: CUdeviceptr,
    pub dq: CUdeviceptr,
    pub dk: CUdeviceptr,
    pub dv: CUdeviceptr,
    /// The kernel gradients in parameter layout, zeroed before the launch (the kernel adds
    /// into them); 0 where not wanted.
    pub du: CUdeviceptr,
    pub dl: CUdeviceptr,
    pub dpos: CUdeviceptr,
    pub dims: AttnDims,
}

/// Shape of the `mix` reading (C `MixDims`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct MixDims {
    pub batch: i32,
    pub n: i32,
    pub heads: i32,
    pub dh: i32,
    pub l_kind: i32,
    pub l_heads: i32,
}

/// The parameter of `mix_fwd`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct MixFwdParams {
    pub v: CUdeviceptr,
    pub l: CUdeviceptr,
    pub start: CUdeviceptr,
    pub out: CUdeviceptr,
    pub dims: MixDims,
}

/// The parameter of `mix_bwd`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct MixBwdParams {
    pub v: CUdeviceptr,
    pub l: CUdeviceptr,
    pub start: CUdeviceptr,
    pub dout: CUdeviceptr,
    pub dv: CUdeviceptr,
    pub ws_dl: CUdeviceptr,
    pub dims: MixDims,
    pub groups: i32,
    /// Explicit padding to the 8-byte size, always 0 (a step graph compares argument bytes).
    pub pad: i32,
}

/// The parameter of `adam`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct AdamParams {
    pub param: CUdeviceptr,
    pub grad: CUdeviceptr,
    pub m: CUdeviceptr,
    pub v: CUdeviceptr,
    pub count: u64,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub step: i32,
    pub grad_scale: f32,
    /// Explicit padding to the 8-byte size, always 0 (a step graph compares argument bytes).
    pub pad: i32,
}

// SAFETY: plain #[repr(C)] data (integers, floats, device addresses) laid out as the kernels'
// C structs, which the asserts below check field by field; passed by value.
unsafe impl DeviceRepr for AttnFwdParams {}
unsafe impl DeviceRepr for AttnBwdParams {}
unsafe impl DeviceRepr for MixFwdParams {}
unsafe impl DeviceRepr for MixBwdParams {}
unsafe impl DeviceRepr for AdamParams {}

/// Asserts at compile time a struct's size and its fields' offsets: the numbers of the
/// `static_assert`s in `kernels/params.cuh`.
macro_rules! layout {
    ($t:ty, $size:expr, { $($field:ident: $off:expr),* $(,)? }) => {
        const _: () = {
            assert!(std::mem::size_of::<$t>() == $size, concat!(stringify!($t), " size"));
            $(assert!(
                std::mem::offset_of!($t, $field) == $off,
                concat!(stringify!($t), ".", stringify!($field), " moved")
            );)*
        };
    };
}

layout!(AttnDims, 56, {
    seed: 0, batch: 8, n: 12, heads: 16, dh: 20, scale: 24, score_kind: 28, u_kind: 32,
    u_heads: 36, l_kind: 40, l_heads: 44, dropout: 48, groups: 52,
});
layout!(AttnIn, 56, { q: 0, k: 8, v: 16, pos: 24, u: 32, l: 40, start: 48 });
layout!(AttnFwdParams, 128, { inputs: 0, y: 56, lse: 64, dims: 72 });
layout!(AttnBwdParams, 184, {
    inputs: 0, dy: 56, lse: 64, delta: 72, dq: 80, dk: 88, dv: 96, du: 104, dl: 112,
    dpos: 120, dims: 128,
});
layout!(MixDims, 24, { batch: 0, n: 4, heads: 8, dh: 12, l_kind: 16, l_heads: 20 });
layout!(MixFwdParams, 56, { v: 0, l: 8, start: 16, out: 24, dims: 32 });
layout!(MixBwdParams, 80, {
    v: 0, l: 8, start: 16, dout: 24, dv: 32, ws_dl: 40, dims: 48, groups: 72, pad: 76,
});
layout!(AdamParams, 72, {
    param: 0, grad: 8, m: 16, v: 24, count: 32, lr: 40, beta1: 44, beta2: 48, eps: 52,
    weight_decay: 56, step: 60, grad_scale: 64, pad: 68,
});
