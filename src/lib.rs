//! pasa: a training engine for sequential recommenders whose attention carries a learnable
//! kernel in position space. See docs/DESIGN.md for the maths, layout and contracts.

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod heatmap;
pub mod kernel_export;
pub mod models;
pub mod optim;
pub mod params;
pub mod plot;
pub mod progress;
pub mod report;
pub mod rng;
pub mod run;
pub mod score;
pub mod sweep;
pub mod tape;
pub mod train;

pub use error::{Error, Result};

/// The CUDA kernels, compiled to PTX by build.rs from `kernels/*.cu`.
///
/// `KERNELS` lists (file stem, zlib-compressed PTX) pairs, one per `.cu` file ([`ptx`] inflates
/// one); it is empty when the crate was built without nvcc, and the CUDA backend must then
/// report that instead of loading them.
/// `ARCH` is the target they were compiled for (`PASA_CUDA_ARCH`, default `sm_90`). Launch
/// contracts (grid, block, shared memory, parameter order) are documented at the top of each
/// `.cu` file.
pub mod kernels {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

    /// Entry points each kernel file must export (unmangled `extern "C"` names), one file
    /// per op family (the families of `pasa::backend`; `Memory`'s copies and `Dense`'s GEMM
    /// are driver and cuBLAS calls, not kernels), and `mma_check`, the tensor-core fragments'
    /// known-answer kernels of the parity tests. The fused attention's forward and backward
    /// are not here: `attention_fp32`, `attention_tf32` and `attention_bf16` export the list
    /// of kernels/attention.cuh, which the CUDA backend enumerates (and loads per precision).
    pub const ENTRY_POINTS: &[(&str, &[&str])] = &[
        (
            "attention",
            &[
                "attn_bwd_preprocess",
                "attn_reduce_kernel_grad",
                "mix_fwd",
                "mix_bwd",
            ],
        ),
        ("dense", &["bias_add"]),
        ("embedding", &["embedding_fwd", "embedding_bwd"]),
        ("loss", &["cross_entropy_in_place", "bce_fwd", "bce_bwd"]),
        (
            "mma_check",
            &[
                "mma_check_tf32",
                "mma_check_split",
                "mma_check_bf16",
                "mma_check_bf16_k8",
            ],
        ),
        (
            "memory",
            &["fill_f32", "axpy_f32", "scale_f32", "sumsq", "sum_f32"],
        ),
        (
            "norm",
            &["layernorm_fwd", "layernorm_bwd", "layernorm_bwd_reduce"],
        ),
        ("optim", &["adam"]),
        (
            "pointwise",
            &[
                "relu_fwd",
                "relu_bwd",
                "gelu_fwd",
                "gelu_bwd",
                "residual_fwd",
                "residual_bwd",
                "row_mask",
                "rope_fwd",
                "rope_bwd",
            ],
        ),
        ("rank", &["rank_rows"]),
    ];

    /// The PTX text of kernel file `name`, if it was built (inflated from the embedded
    /// zlib stream: a few milliseconds per module, once per load).
    pub fn ptx(name: &str) -> Option<String> {
        use std::io::Read;
        let packed = KERNELS.iter().find(|(n, _)| *n == name)?.1;
        let mut text = String::new();
        flate2::read::ZlibDecoder::new(packed)
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("the embedded PTX of {name} is corrupt: {e}"));
        Some(text)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        #[cfg_attr(
            pasa_no_kernels,
            ignore = "this build has no CUDA kernels (nvcc was absent at build time)"
        )]
        fn embedded_ptx_targets_the_arch_and_exports_the_entry_points() {
            assert!(!KERNELS.is_empty(), "build.rs set no pasa_no_kernels cfg");
            for (name, _) in KERNELS {
                let text = ptx(name).expect("listed");
                assert!(text.contains(".version"), "{name}: no .version directive");
                assert!(
                    text.contains(&format!(".target {ARCH}")),
                    "{name}: not compiled for {ARCH}"
                );
            }
            for (file, entries) in ENTRY_POINTS {
                let text = ptx(file).unwrap_or_else(|| panic!("kernel file {file} not built"));
                for e in *entries {
                    assert!(
                        text.contains(&format!(".entry {e}(")),
                        "{file}: entry point {e} missing"
                    );
                }
            }
        }
    }
}
