#!/usr/bin/env bash
# The CUDA backend on the CPU emulation (kernels/emu/README.md): build the fake libcuda and
# libcublas, then run the GPU parity tests (tests/parity.rs) against them with
# PASA_REQUIRE_GPU=1, so that they fail instead of skipping when the emulated device is not
# found. The build must have its kernels (PTX), so nvcc is required: NVCC, else the .venv one
# of .ci/install-nvcc.
#
#   kernels/emu/test.sh                      every parity test (about 4 minutes on 2 cores)
#   kernels/emu/test.sh attention_head       the tests whose name contains a filter
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${NVCC:-}" ]; then NVCC="$(ls "$PWD"/.venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc 2>/dev/null | head -1 || true)"; fi
if [ -z "${NVCC:-}" ]; then
  echo "emu/test.sh: the parity tests need the kernels' PTX: set NVCC, or run" \
    "export NVCC=\$(.ci/install-nvcc | tail -1)" >&2
  exit 2
fi
export NVCC PASA_REQUIRE_KERNELS=1
kernels/emu/build.sh target/emu
export LD_LIBRARY_PATH="$PWD/target/emu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PASA_REQUIRE_GPU=1
cargo test --release --test parity -- "$@"
