//! A training step as one CUDA graph: captured once per batch shape, then replayed with one
//! driver call per step.
//!
//! A step's device work is the same from one step to the next except for a few values: the
//! per-step inputs (item ids, targets, window starts: uploads), and the scalars that kernels
//! take by value (dropout seeds, the loss scale, Adam's step). So:
//!
//! 1. the first [`WARM_STEPS`] steps of a shape run directly (they fill the buffer pool: after
//!    them a step allocates nothing and gets back the same buffers in the same order);
//! 2. the next two are captured ([`Cuda::capture`]), each into its own graph with its own
//!    pinned staging buffers (two, so that the host can write a step's inputs while the other
//!    graph may still be reading the previous ones): while capturing, every upload goes
//!    through a pinned buffer, and every kernel launch is recorded with its arguments and its
//!    graph node;
//! 3. every later step runs the same host code with the device work held back (the *replay*
//!    mode): uploads only write the graph's pinned buffers, each kernel launch is compared
//!    with the recorded one and, where its arguments changed (a seed, a scale, a step count),
//!    the graph's node gets the new ones (`cuGraphExecKernelNodeSetParams`); GEMMs, memsets
//!    and device copies must recur exactly (they take no per-step value); then the graph is
//!    launched.
//!
//! The result is the same as running the step directly, op by op (tests/parity.rs
//! `graph_steps_equal_direct_steps`). A step whose work differs from its recording in shape
//! (another batch size is another key; the classifier loss runs over every row on this
//! backend, [`Memory::static_shapes`](crate::backend::Memory::static_shapes), so that padding
//! does not change its shape) stops the run with a message naming the op; `PASA_CUDA_GRAPH=0`
//! turns graphs off.

use super::graph::{Graph, Pinned};
use super::Cuda;
use cudarc::driver::sys::{self, CUgraphExec, CUgraphNode};
use cudarc::driver::CudaEvent;
use std::collections::HashMap;
use std::ffi::c_void;

/// Steps of a shape run directly before its graphs are captured (two more are captured:
/// [`crate::backend::STEPS_BEFORE_REPLAY`] in all).
pub const WARM_STEPS: u32 = 2;
const _: () = assert!(WARM_STEPS as usize + 2 == crate::backend::STEPS_BEFORE_REPLAY);

/// How the backend treats the device work it is asked for.
#[derive(Default)]
pub(super) enum Mode {
    /// Run it now.
    #[default]
    Direct,
    /// The stream is capturing: run it into the graph, and record what replays check.
    Capture(Record),
    /// Hold it back: check it against the record, patch changed kernel arguments, stage
    /// uploads.
    Replay(Record),
}

/// One kernel launch of a capture: what a replay compares, and the graph node it patches.
struct KernelRec {
    name: &'static str,
    func: sys::CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    smem: u32,
    args: Vec<Param>,
    node: CUgraphNode,
}

/// One kernel parameter's bytes, in 8-byte words (so the pointer the driver reads is aligned).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Param {
    pub words: Vec<u64>,
}

impl Param {
    pub fn of<T: Copy>(v: &T) -> Param {
        let bytes = std::mem::size_of::<T>();
        let mut words = vec![0u64; bytes.div_ceil(8).max(1)];
        // SAFETY: copies the `bytes` bytes of a Copy value into a buffer at least that long.
        unsafe {
            std::ptr::copy_nonoverlapping(
                v as *const T as *const u8,
                words.as_mut_ptr() as *mut u8,
                bytes,
            )
        };
        Param { words }
    }

    pub fn ptr(&self) -> *mut c_void {
        self.words.as_ptr() as *mut c_void
    }
}

/// A non-kernel operation of a step: it takes no per-step value, so a replay must meet it
/// again exactly.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum OpSig {
    /// A cuBLAS GEMM: (A, B, C) addresses and the descriptor's words.
    Gemm([u64; 3], Vec<u64>),
    Memset {
        dst: u64,
        bytes: usize,
    },
    Copy {
        dst: u64,
        src: u64,
        bytes: usize,
    },
}

/// A staged upload: the pinned buffer the graph's copy reads, the device buffer it writes.
struct Upload {
    pinned: Pinned<u8>,
    dst: u64,
    bytes: usize,
}

/// What a capture recorded, in order, and a replay's place in it.
#[derive(Default)]
pub(super) struct Record {
    kernels: Vec<KernelRec>,
    ops: Vec<OpSig>,
    uploads: Vec<Upload>,
    /// The device address of every buffer the step took from the pool, in order: a replay
    /// takes the same ones back, so that its GEMMs, memsets and copies (which cannot be
    /// patched) meet the addresses baked into the graph.
    allocs: Vec<u64>,
    at: (usize, usize, usize, usize),
    exec: Option<CUgraphExec>,
}

// SAFETY: the raw node and exec handles are only used by the backend's thread through &Cuda,
// under the mode's mutex.
unsafe impl Send for Record {}

/// A captured step: its graph, its record, and when its last launch finished.
struct Captured {
    graph: Graph,
    rec: Record,
    done: CudaEvent,
}

/// Per batch-shape key: how far the graphs of that shape have come.
enum Stage {
    Warming(u32),
    Capturing(Vec<Captured>),
    Ready(Box<[Captured; 2]>, usize),
}

/// The step graphs of every shape seen.
#[derive(Default)]
pub(super) struct StepGraphs {
    stages: HashMap<u64, Stage>,
}

impl Cuda {
    /// Runs one step's device work `body` (module doc); directly when graphs are off or `key`
    /// is None.
    pub(super) fn run_step_graph(&self, key: Option<u64>, body: &mut dyn FnMut()) {
        let Some(key) = key.filter(|_| self.graphs_on) else {
            return body();
        };
        let mut graphs = self.step_graphs.lock().unwrap_or_else(|p| p.into_inner());
        let stage = graphs.stages.entry(key).or_insert(Stage::Warming(0));
        match stage {
            Stage::Warming(n) => {
                body();
                *n += 1;
                if *n >= WARM_STEPS {
                    *stage = Stage::Capturing(vec![]);
                }
            }
            Stage::Capturing(done) => {
                let c = self.capture_step(body);
                done.push(c);
                if done.len() == 2 {
                    let mut two = std::mem::take(done);
                    let second = two.pop().expect("two");
                    let first = two.pop().expect("two");
                    *stage = Stage::Ready(Box::new([first, second]), 0);
                }
            }
            Stage::Ready(pair, next) => {
                let c = &mut pair[*next];
                c.done
                    .synchronize()
                    .unwrap_or_else(|e| panic!("cuda: waiting for a step graph failed: {e}"));
                let mut rec = std::mem::take(&mut c.rec);
                rec.at = (0, 0, 0, 0);
                self.set_mode(Mode::Replay(rec));
                body();
                let Mode::Replay(rec) = self.set_mode(Mode::Direct) else {
                    unreachable!("the mode is only changed here")
                };
                rec.check_consumed();
                c.rec = rec;
                self.launch_step(c);
                *next ^= 1;
            }
        }
    }

    /// Captures one step into a graph, launches it (a capture runs nothing) and returns it.
    fn capture_step(&self, body: &mut dyn FnMut()) -> Captured {
        self.set_mode(Mode::Capture(Record::default()));
        let captured = self.capture(body);
        let Mode::Capture(mut rec) = self.set_mode(Mode::Direct) else {
            unreachable!("the mode is only changed here")
        };
        let (graph, ()) = captured.unwrap_or_else(|e| {
            panic!("cuda: capturing a training step failed: {e} (set PASA_CUDA_GRAPH=0 to run without graphs)")
        });
        rec.exec = Some(graph.exec());
        let done = self.done_event();
        let mut c = Captured { graph, rec, done };
        self.launch_step(&mut c);
        c
    }

    fn launch_step(&self, c: &mut Captured) {
        c.graph
            .launch()
            .unwrap_or_else(|e| panic!("cuda: launching a step graph failed: {e}"));
        self.counters.graph_launch();
        c.done = self.done_event();
    }

    /// An event recorded on the stream now.
    fn done_event(&self) -> CudaEvent {
        self.stream
            .record_event(None)
            .unwrap_or_else(|e| panic!("cuda: recording an event failed: {e}"))
    }

    fn set_mode(&self, m: Mode) -> Mode {
        let mut cur = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *cur, m)
    }

    /// Whether device work is being held back (a replay's host pass).
    pub(super) fn replaying(&self) -> bool {
        matches!(
            *self.mode.lock().unwrap_or_else(|p| p.into_inner()),
            Mode::Replay(_)
        )
    }

    /// Issues a kernel launch according to the mode. `args` are the kernel's parameters, as
    /// its contract types them.
    ///
    /// # Safety
    /// The parameters must match the kernel's signature and address live buffers of the
    /// lengths it indexes.
    pub(super) unsafe fn issue_kernel(
        &self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: u32,
        args: Vec<Param>,
    ) {
        let mut mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        if let Mode::Replay(rec) = &mut *mode {
            rec.patch(name, grid, block, smem, args);
            return;
        }
        self.counters.launch();
        let mut ptrs: Vec<*mut c_void> = args.iter().map(Param::ptr).collect();
        let f = self.func(name).cu_function();
        // SAFETY: the caller vouches for the parameters; `ptrs` point at their bytes, alive
        // for the call (the driver copies them).
        unsafe {
            sys::cuLaunchKernel(
                f,
                grid.0,
                grid.1,
                grid.2,
                block.0,
                block.1,
                block.2,
                smem,
                self.stream.cu_stream(),
                ptrs.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result()
        .unwrap_or_else(|e| panic!("cuda: launching {name} {grid:?}×{block:?} failed: {e}"));
        if let Mode::Capture(rec) = &mut *mode {
            let node = self.last_captured_node();
            rec.kernels.push(KernelRec {
                name,
                func: f,
                grid,
                block,
                smem,
                args,
                node,
            });
        }
    }

    /// The node the last captured operation added to the stream's graph.
    fn last_captured_node(&self) -> CUgraphNode {
        let mut status = sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
        let (mut id, mut graph) = (0u64, std::ptr::null_mut());
        let (mut deps, mut edges, mut n) = (std::ptr::null(), std::ptr::null(), 0usize);
        // SAFETY: queries the capture state of this backend's stream into local variables.
        unsafe {
            sys::cuStreamGetCaptureInfo_v3(
                self.stream.cu_stream(),
                &mut status,
                &mut id,
                &mut graph,
                &mut deps,
                &mut edges,
                &mut n,
            )
        }
        .result()
        .unwrap_or_else(|e| panic!("cuda: reading the capture state failed: {e}"));
        assert!(n > 0, "cuda: a captured launch left no graph node");
        // SAFETY: the driver returned `n` ≥ 1 node handles at `deps`.
        unsafe { *deps.add(n - 1) }
    }

    /// Whether a GEMM, memset or device copy should be issued now: not in a replay, where it
    /// must equal the recorded one (it is part of the graph already).
    pub(super) fn issue_op(&self, sig: OpSig) -> bool {
        let mut mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *mode {
            Mode::Direct => true,
            Mode::Capture(rec) => {
                rec.ops.push(sig);
                true
            }
            Mode::Replay(rec) => {
                let i = rec.at.1;
                let want = rec.ops.get(i);
                assert!(
                    want == Some(&sig),
                    "cuda: a replayed step differs from its graph at operation {i}: {sig:?}, \
                     recorded {want:?} (set PASA_CUDA_GRAPH=0 to run without graphs)"
                );
                rec.at.1 += 1;
                false
            }
        }
    }

    /// Uploads `bytes` to device address `dst` according to the mode: a plain copy, a copy
    /// through a new pinned buffer while capturing, or only the write of that pinned buffer
    /// in a replay (the graph's copy reads it when it runs). Returns whether it was done
    /// directly (the caller then does nothing more).
    pub(super) fn stage_upload(&self, bytes: &[u8], dst: u64) -> bool {
        let mut mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *mode {
            Mode::Direct => false,
            Mode::Capture(rec) => {
                let mut pinned = self
                    .pinned::<u8>(bytes.len())
                    .unwrap_or_else(|e| panic!("cuda: staging an upload failed: {e}"));
                pinned.as_mut_slice().copy_from_slice(bytes);
                self.counters.transfer();
                // SAFETY: `pinned` is live pinned memory of `bytes.len()` bytes (kept in the
                // record as long as the graph), `dst` a live device buffer at least as long.
                unsafe {
                    cudarc::driver::result::memcpy_htod_async(
                        dst,
                        pinned.as_slice(),
                        self.stream.cu_stream(),
                    )
                }
                .unwrap_or_else(|e| panic!("cuda: a staged upload failed: {e}"));
                rec.uploads.push(Upload {
                    pinned,
                    dst,
                    bytes: bytes.len(),
                });
                true
            }
            Mode::Replay(rec) => {
                let i = rec.at.2;
                let up = rec
                    .uploads
                    .get_mut(i)
                    .filter(|u| u.dst == dst && u.bytes == bytes.len());
                let Some(up) = up else {
                    panic!(
                        "cuda: a replayed step differs from its graph at upload {i} ({} B to \
                         {dst:#x}) (set PASA_CUDA_GRAPH=0 to run without graphs)",
                        bytes.len()
                    )
                };
                up.pinned.as_mut_slice().copy_from_slice(bytes);
                rec.at.2 += 1;
                true
            }
        }
    }

    /// Takes a buffer of `len` from `pool` according to the mode: any free one (recording its
    /// address while capturing), or in a replay the one the capture took at this point.
    pub(super) fn take_step_buffer<T>(
        &self,
        pool: &crate::backend::pool::Pool<cudarc::driver::CudaSlice<T>>,
        len: usize,
    ) -> Option<cudarc::driver::CudaSlice<T>> {
        let mut mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *mode {
            Mode::Direct => pool.take(len),
            Mode::Capture(rec) => {
                let raw = pool.take(len)?;
                rec.allocs.push(self.addr(&raw));
                Some(raw)
            }
            Mode::Replay(rec) => {
                let i = rec.at.3;
                let want = rec.allocs.get(i).copied();
                let raw = want.and_then(|a| pool.take_where(len, |r| self.addr(r) == a));
                assert!(
                    raw.is_some(),
                    "cuda: a replayed step cannot take back buffer {i} ({len} elements at \
                     {want:#x?}) of its graph (set PASA_CUDA_GRAPH=0 to run without graphs)"
                );
                rec.at.3 += 1;
                raw
            }
        }
    }

    /// Refuses a download inside a captured or replayed step (it would synchronise).
    pub(super) fn check_no_step_download(&self) {
        let mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            matches!(*mode, Mode::Direct),
            "cuda: a download inside a step that runs as a graph (set PASA_CUDA_GRAPH=0, or \
             read results after the step)"
        );
    }
}

impl Record {
    /// Replays launch `name`: checks its shape against the recording and gives the graph's
    /// node the new arguments when they changed.
    fn patch(
        &mut self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: u32,
        args: Vec<Param>,
    ) {
        let i = self.at.0;
        let k = self
            .kernels
            .get_mut(i)
            .filter(|k| k.name == name && k.grid == grid && k.block == block && k.smem == smem);
        let Some(k) = k else {
            panic!(
                "cuda: a replayed step differs from its graph at launch {i} ({name} \
                 {grid:?}×{block:?}) (set PASA_CUDA_GRAPH=0 to run without graphs)"
            )
        };
        self.at.0 += 1;
        if k.args == args {
            return;
        }
        let mut ptrs: Vec<*mut c_void> = args.iter().map(Param::ptr).collect();
        let exec = self.exec.expect("a replayed record has its graph");
        // SAFETY: all-zero is a valid value of this plain C struct (null pointers, zero sizes).
        let mut params: sys::CUDA_KERNEL_NODE_PARAMS = unsafe { std::mem::zeroed() };
        params.func = k.func;
        params.gridDimX = grid.0;
        params.gridDimY = grid.1;
        params.gridDimZ = grid.2;
        params.blockDimX = block.0;
        params.blockDimY = block.1;
        params.blockDimZ = block.2;
        params.sharedMemBytes = smem;
        params.kernelParams = ptrs.as_mut_ptr();
        // SAFETY: patches node `k.node` of this record's instantiated graph with the same
        // kernel and shape and new arguments of the kernel's types (`ptrs` alive for the call).
        unsafe { sys::cuGraphExecKernelNodeSetParams_v2(exec, k.node, &params) }
            .result()
            .unwrap_or_else(|e| {
                panic!("cuda: updating the arguments of {name} in a step graph failed: {e}")
            });
        k.args = args;
    }

    /// Checks that a replay met every recorded launch, operation and upload.
    fn check_consumed(&self) {
        let all = (
            self.kernels.len(),
            self.ops.len(),
            self.uploads.len(),
            self.allocs.len(),
        );
        assert!(
            self.at == all,
            "cuda: a replayed step did less than its graph (launches, operations, uploads, \
             buffers: {:?} of {all:?}) (set PASA_CUDA_GRAPH=0 to run without graphs)",
            self.at
        );
    }
}
