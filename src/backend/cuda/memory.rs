//! Launchers of `kernels/memory.cu` (fill, axpy, scale, sum of squares) and the buffer ops
//! that are driver calls: allocation, uploads, downloads and device-to-device copies.

use super::launch::{size, Arg};
use super::step_graph::OpSig;
use super::{Cuda, GpuBuf, GpuInts};
use crate::backend::pool::Counts;
use crate::backend::profile::RangeTime;
use crate::backend::{DeviceBuf, Memory, View, ViewMut};

/// Blocks of the first stage of a full-buffer reduction (partials summed by one block).
fn reduce_blocks(count: usize) -> usize {
    count.div_ceil(256).clamp(1, 1024)
}

impl Memory for Cuda {
    type Buf = GpuBuf;
    type IBuf = GpuInts;

    fn name(&self) -> String {
        let precision = crate::device::precision_name(self.precision());
        format!("cuda:{} ({}, {precision})", self.ordinal, self.device_name)
    }
    fn synchronize(&self) {
        // A kernel fault surfaces at the next sync point: this one, when timing.
        self.stream.synchronize().unwrap_or_else(|e| {
            panic!("cuda: synchronising the stream failed (a queued op faulted): {e}")
        });
    }

    fn alloc(&self, len: usize) -> GpuBuf {
        Cuda::alloc(self, len)
    }
    fn zeros(&self, len: usize) -> GpuBuf {
        self.zeroed(len)
    }
    fn upload(&self, data: &[f32]) -> GpuBuf {
        let mut b = Cuda::alloc(self, data.len());
        self.upload_into(data, &mut b);
        b
    }
    fn upload_u32(&self, data: &[u32]) -> GpuInts {
        let mut b = self.alloc_ints(data.len());
        self.upload_into(data, &mut b);
        b
    }
    fn alloc_u32(&self, len: usize) -> GpuInts {
        self.alloc_ints(len)
    }
    fn run_step(&self, key: Option<u64>, step: &mut dyn FnMut()) {
        self.run_step_graph(key, step)
    }
    fn static_shapes(&self) -> bool {
        self.graphs_on
    }
    fn counts(&self) -> Counts {
        self.counters.snapshot()
    }
    /// An NVTX range, and an event on the stream while profiling (profile.rs).
    fn range_push(&self, name: &'static str) {
        self.push_range(name);
    }
    fn range_pop(&self) {
        self.pop_range();
    }
    fn profile_start(&self) {
        self.start_profile();
    }
    fn profile_take(&self) -> Vec<RangeTime> {
        self.take_profile()
    }
    fn download(&self, x: View<GpuBuf>) -> Vec<f32> {
        if x.len == 0 {
            return Vec::new();
        }
        self.check_no_step_download();
        self.counters.transfer();
        let v = self
            .stream
            .clone_dtoh(&(**x.buf).slice(x.off..x.off + x.len))
            .unwrap_or_else(|e| panic!("cuda: download of {} floats failed: {e}", x.len));
        // A device-to-pageable copy completes before returning (CUDA's documented behaviour),
        // but cudarc's guard for a Vec does not synchronise: make the sync point explicit, so
        // that it also surfaces any asynchronous kernel fault here with its message.
        self.stream
            .synchronize()
            .unwrap_or_else(|e| panic!("cuda: a queued kernel failed: {e}"));
        v
    }
    fn download_u32(&self, x: &GpuInts) -> Vec<u32> {
        let len = x.len();
        if len == 0 {
            return Vec::new();
        }
        self.check_no_step_download();
        self.counters.transfer();
        let v = self
            .stream
            .clone_dtoh(&(**x).slice(0..len))
            .unwrap_or_else(|e| panic!("cuda: download of {len} u32s failed: {e}"));
        // As `download`: an explicit sync point, which also surfaces a queued kernel's fault.
        self.stream
            .synchronize()
            .unwrap_or_else(|e| panic!("cuda: a queued kernel failed: {e}"));
        v
    }
    fn fill(&self, x: ViewMut<GpuBuf>, value: f32) {
        let n = x.len;
        self.launch_flat("fill_f32", n, &[self.pm(&x), Arg::F32(value), size(n)]);
    }
    /// A stream-ordered device-to-device memcpy (no kernel).
    fn copy(&self, src: View<GpuBuf>, dst: ViewMut<GpuBuf>) {
        assert_eq!(src.len, dst.len, "copy: lengths differ");
        if src.len == 0 {
            return;
        }
        let sig = OpSig::Copy {
            dst: self.ptr_mut(&dst),
            src: self.ptr(src),
            bytes: 4 * src.len,
        };
        if !self.issue_op(sig) {
            return;
        }
        let s = (**src.buf).slice(src.off..src.off + src.len);
        let mut d = (**dst.buf).slice_mut(dst.off..dst.off + dst.len);
        self.stream
            .memcpy_dtod(&s, &mut d)
            .unwrap_or_else(|e| panic!("cuda: device copy failed: {e}"));
    }
    fn axpy(&self, alpha: f32, x: View<GpuBuf>, y: ViewMut<GpuBuf>) {
        let n = x.len.min(y.len);
        self.launch_flat(
            "axpy_f32",
            n,
            &[self.pm(&y), self.p(x), Arg::F32(alpha), size(n)],
        );
    }
    /// Per-block partials, one block to finish, one float back to the host.
    fn sum_squares(&self, x: View<GpuBuf>) -> f64 {
        let n = x.len;
        if n == 0 {
            return 0.0;
        }
        let g = reduce_blocks(n);
        let partials = self.alloc(g);
        let out = self.alloc(1);
        self.launch(
            "sumsq",
            (g as u32, 1, 1),
            (256, 1, 1),
            0,
            &[self.p(x), size(n), self.pb(&partials)],
        );
        self.launch(
            "sum_f32",
            (1, 1, 1),
            (256, 1, 1),
            0,
            &[self.pb(&partials), size(g), self.pb(&out)],
        );
        self.download(out.view())[0] as f64
    }
}
