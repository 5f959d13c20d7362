//! CPU benchmarks at the ml-1m shape (batch 128, n 200, d 64, 2 blocks, 1 head, 3416 items):
//! the fused attention op alone and whole training steps, of sasrec and pasa.
//!
//! `cargo bench --bench cpu` (criterion; medians in target/criterion).

mod common;

use criterion::Criterion;
use pasa::backend::cpu::Cpu;

fn main() {
    let mut c = Criterion::default().configure_from_args();
    common::run_all(&mut c, &Cpu::<f32>::new());
    c.final_summary();
}
