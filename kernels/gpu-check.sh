#!/usr/bin/env bash
# The GPU check of the CUDA backend, in two halves (the GPU machine has no Rust toolchain):
#
#   kernels/gpu-check.sh build   on the development machine: builds the test executables with
#                                the kernels (PASA_REQUIRE_KERNELS=1) and copies them, stripped
#                                of debug info, with this script into target/gpu-check/
#   target/gpu-check/gpu-check.sh run
#                                on the GPU machine: `pasa info`-style probe through the unit
#                                tests, CPU/GPU parity (including the ignored n = 2048 case),
#                                then compute-sanitizer memcheck, racecheck, initcheck and
#                                synccheck on the attention and mix parity tests, with
#                                PASA_CUDA_SYNC=1 so that a fault names its kernel. Prints a
#                                table at the end; exit status non-zero when a step failed.
set -uo pipefail

mode="${1:-}"
here="$(cd "$(dirname "$0")" && pwd)"

if [ "$mode" = build ]; then
  cd "$here/.."
  if [ -z "${NVCC:-}" ]; then NVCC="$(ls .venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc 2>/dev/null | head -1)"; fi
  export NVCC PASA_REQUIRE_KERNELS=1
  out=target/gpu-check
  rm -rf "$out" && mkdir -p "$out"
  # The executables' paths, from cargo's JSON messages.
  cargo test --release --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        t = m["target"]
        name = "unit" if t["kind"] == ["lib"] else t["name"]
        print(name, m["executable"])
' | while read -r name exe; do
      case "$name" in unit|parity) objcopy --strip-debug "$exe" "$out/$name" ;; esac
    done
  cp "$here/gpu-check.sh" "$out/"
  ls -la "$out"
  exit 0
fi

if [ "$mode" != run ]; then
  echo "usage: kernels/gpu-check.sh build | target/gpu-check/gpu-check.sh run" >&2
  exit 2
fi

cd "$here"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
SAN="${COMPUTE_SANITIZER:-/usr/local/cuda/bin/compute-sanitizer}"
declare -a rows
step() {  # step NAME COMMAND...
  local name="$1"; shift
  local t0=$SECONDS
  echo "=== $name: $*"
  if "$@" > "log.$name" 2>&1; then rows+=("ok    $((SECONDS - t0))s  $name"); else rows+=("FAIL  $((SECONDS - t0))s  $name (see log.$name)"); fi
  tail -n 5 "log.$name"
}

# Parity skips without a usable GPU, which would read as a pass: fail loudly instead.
probe() {
  local out
  out="$(./parity --nocapture memory_fill_axpy_and_sums 2>&1)"
  echo "$out"
  case "$out" in *"parity skipped"*) return 1 ;; esac
}
step gpu-usable probe
step unit ./unit --test-threads=1 backend::cuda
step parity ./parity --test-threads=1
step parity-n2048 ./parity --test-threads=1 --ignored attention_n2048
# The sanitizer runs every launch of the attention and mix tests (slow: tens of minutes for
# the whole grid of shapes); PASA_SANITIZE_FILTER narrows it, e.g. to head_width_128.
filter="${PASA_SANITIZE_FILTER:-attention_head_width_128_bucket}"
for tool in memcheck racecheck initcheck synccheck; do
  step "$tool" env PASA_CUDA_SYNC=1 "$SAN" --tool "$tool" --error-exitcode 1 \
    ./parity --test-threads=1 "$filter"
done
step memcheck-mix env PASA_CUDA_SYNC=1 "$SAN" --tool memcheck --error-exitcode 1 \
  ./parity --test-threads=1 mix_every_kind_and_shape

echo
echo "GPU check summary"
printf '%s\n' "${rows[@]}"
for r in "${rows[@]}"; do case "$r" in FAIL*) exit 1 ;; esac; done
