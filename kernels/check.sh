#!/usr/bin/env bash
# Compile every kernels/*.cu to PTX, assemble it with ptxas for the target and print registers,
# spills and static shared memory per kernel. Catches what PTX generation alone does not:
# register pressure, spills, shared memory over the limits, PTX that ptxas rejects.
#
#   kernels/check.sh              (NVCC from the environment, else CUDA_HOME, else PATH,
#                                  else .venv from .ci/install-nvcc)
#   PASA_CUDA_ARCH=sm_90 kernels/check.sh
# Exit status: non-zero when a kernel fails to compile or assemble. Spills are reported, not
# fatal (a few bytes of spill can be the right trade); the table shows them.
set -euo pipefail

cd "$(dirname "$0")/.."
ARCH="${PASA_CUDA_ARCH:-sm_90}"

NVCC="${NVCC:-}"
if [ -z "$NVCC" ] && [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then NVCC="$CUDA_HOME/bin/nvcc"; fi
if [ -z "$NVCC" ] && command -v nvcc >/dev/null; then NVCC="$(command -v nvcc)"; fi
if [ -z "$NVCC" ]; then NVCC="$(ls .venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc 2>/dev/null | head -1 || true)"; fi
if [ -z "$NVCC" ] || ! "$NVCC" --version >/dev/null 2>&1; then
  echo "check.sh: no working nvcc (set NVCC, or run: export NVCC=\$(.ci/install-nvcc | tail -1))" >&2
  exit 2
fi
# The PyPI wheel ships ptxas next to nvcc; a system CUDA has it there too.
PTXAS="$(dirname "$NVCC")/ptxas"
[ -x "$PTXAS" ] || PTXAS="$(command -v ptxas || true)"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
status=0
for cu in kernels/*.cu; do
  name="$(basename "$cu" .cu)"
  if ! "$NVCC" -ptx -arch="$ARCH" -O3 -std=c++17 -I kernels "$cu" -o "$TMP/$name.ptx" 2>"$TMP/$name.nvcc"; then
    echo "FAIL nvcc $cu"; cat "$TMP/$name.nvcc"; status=1; continue
  fi
  if [ -z "$PTXAS" ]; then
    echo "ok   $cu → PTX (ptxas not found: register/spill check skipped)"
    continue
  fi
  if ! "$PTXAS" -arch="$ARCH" -v "$TMP/$name.ptx" -o "$TMP/$name.cubin" 2>"$TMP/$name.ptxas"; then
    echo "FAIL ptxas $cu"; cat "$TMP/$name.ptxas"; status=1; continue
  fi
  echo "== $cu ($ARCH)"
  awk '
    /Compiling entry function/ { match($0, /\047[^\047]+\047/); fn = substr($0, RSTART + 1, RLENGTH - 2) }
    /bytes stack frame/ { stack = $1; sst = $5; sld = $9 }
    /Used [0-9]+ registers/ {
      regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
      smem = 0; if (match($0, /[0-9]+ bytes smem/)) { smem = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", smem) }
      printf "   %-26s regs %3d  spill st/ld %4d/%4d B  stack %4d B  static smem %6d B\n", fn, regs, sst, sld, stack, smem
    }' "$TMP/$name.ptxas" | sort
done
exit $status
