#!/usr/bin/env bash
# Compile every kernels/*.cu to PTX, assemble it with ptxas for the target and print, per
# kernel: registers, spills, static shared memory, and from the SASS (cuobjdump) its size and
# its counts of tensor-core (HMMA), FFMA, shared-load (LDS, LDSM) and shuffle (SHFL)
# instructions. Catches what PTX generation alone does not: register pressure, spills, shared
# memory over the limits, PTX that ptxas rejects; and shows what the inner loops are made of.
#
#   kernels/check.sh              (NVCC from the environment, else CUDA_HOME, else PATH,
#                                  else .venv from .ci/install-nvcc)
#   PASA_CUDA_ARCH=sm_90 kernels/check.sh
#   kernels/check.sh attention_fp32 attention    (only those files)
#   kernels/check.sh --strict     (CI: also fail on a spill or a kernel over 100 KB of SASS)
# cuobjdump: CUOBJDUMP, else next to nvcc, else PATH; when none is found it is installed into
# nvcc's virtualenv from PyPI with the nvdisasm it runs (nvidia-cuda-cuobjdump and
# nvidia-cuda-nvdisasm 13.2.51: PyPI has no 13.0 build of either; they only read the cubins
# that ptxas 13.0 writes). Without one the SASS columns are left out.
# Exit status: non-zero when a kernel fails to compile or assemble. Spills and size are
# reported, not fatal, unless --strict: then a kernel that spills, or whose SASS is over
# SASS_LIMIT_KB, fails too, and a missing ptxas or cuobjdump is an error. Every kernel of the
# project meets both (issue 10's targets); ptxas's allocation at a 128-register budget moves
# with small edits to the source, so CI keeps them from coming back unnoticed.
set -euo pipefail

cd "$(dirname "$0")/.."
STRICT=0
if [ "${1:-}" = "--strict" ]; then STRICT=1; shift; fi
SASS_LIMIT_KB=100
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

CUOBJDUMP="${CUOBJDUMP:-}"
[ -n "$CUOBJDUMP" ] || CUOBJDUMP="$(dirname "$NVCC")/cuobjdump"
[ -x "$CUOBJDUMP" ] || CUOBJDUMP="$(command -v cuobjdump || true)"
# cuobjdump runs nvdisasm, which the PyPI wheels put next to it.
[ -z "$CUOBJDUMP" ] || [ -x "$(dirname "$CUOBJDUMP")/nvdisasm" ] || command -v nvdisasm >/dev/null || CUOBJDUMP=""
if [ -z "$CUOBJDUMP" ]; then
  # nvcc from the PyPI wheel: <venv>/lib/python3.X/site-packages/nvidia/cu13/bin/nvcc.
  VENV_PY="$(cd "$(dirname "$NVCC")/../../../../../.." 2>/dev/null && pwd)/bin/python"
  if [ -x "$VENV_PY" ]; then
    echo "check.sh: installing cuobjdump and nvdisasm 13.2.51 next to nvcc" >&2
    "$VENV_PY" -m pip install -q nvidia-cuda-cuobjdump==13.2.51 nvidia-cuda-nvdisasm==13.2.51 >&2 || true
    [ -x "$(dirname "$NVCC")/cuobjdump" ] && CUOBJDUMP="$(dirname "$NVCC")/cuobjdump"
  fi
fi
if [ -z "$CUOBJDUMP" ]; then
  echo "check.sh: no cuobjdump: SASS size and instruction counts left out" >&2
  [ "$STRICT" = 0 ] || { echo "check.sh --strict: needs cuobjdump for the SASS sizes" >&2; exit 2; }
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
status=0
for cu in kernels/*.cu; do
  name="$(basename "$cu" .cu)"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  if ! "$NVCC" -ptx -arch="$ARCH" -O3 -std=c++17 -I kernels "$cu" -o "$TMP/$name.ptx" 2>"$TMP/$name.nvcc"; then
    echo "FAIL nvcc $cu"; cat "$TMP/$name.nvcc"; status=1; continue
  fi
  if [ -z "$PTXAS" ]; then
    if [ "$STRICT" = 0 ]; then
      echo "ok   $cu → PTX (ptxas not found: register/spill check skipped)"
    else
      echo "FAIL $cu: --strict needs ptxas (next to nvcc or on PATH) for the spill check"; status=1
    fi
    continue
  fi
  if ! "$PTXAS" -arch="$ARCH" -v "$TMP/$name.ptx" -o "$TMP/$name.cubin" 2>"$TMP/$name.ptxas"; then
    echo "FAIL ptxas $cu"; cat "$TMP/$name.ptxas"; status=1; continue
  fi
  : > "$TMP/$name.sass"
  [ -z "$CUOBJDUMP" ] || "$CUOBJDUMP" -sass "$TMP/$name.cubin" > "$TMP/$name.sass" 2>/dev/null || true
  echo "== $cu ($ARCH)"
  printf '   %-36s %4s %11s %6s %7s %8s %6s %6s %6s %6s\n' kernel regs "spill st/ld" stack smem "SASS KB" HMMA FFMA LDS SHFL
  # Pass 1 (the SASS): instructions and the counts per function; pass 2 (ptxas -v): the rest.
  awk '
    FNR == NR {
      if ($0 ~ /Function : /) { fn = $0; sub(/.*Function : /, "", fn); sub(/[ \t]+$/, "", fn) }
      else if (fn != "" && $0 ~ /\/\*[0-9a-f]+\*\/ /) {
        ins[fn]++
        if ($0 ~ / HMMA/) hmma[fn]++
        if ($0 ~ / FFMA/) ffma[fn]++
        if ($0 ~ / LDS(M)?[ .]/) lds[fn]++
        if ($0 ~ / SHFL/) shfl[fn]++
      }
      next
    }
    /Compiling entry function/ { match($0, /\047[^\047]+\047/); f = substr($0, RSTART + 1, RLENGTH - 2) }
    /bytes stack frame/ { stack = $1; sst = $5; sld = $9 }
    /Used [0-9]+ registers/ {
      regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
      smem = 0; if (match($0, /[0-9]+ bytes smem/)) { smem = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", smem) }
      if (f in ins) sass = sprintf("%8.1f %6d %6d %6d %6d", ins[f] * 16 / 1024, hmma[f], ffma[f], lds[f], shfl[f])
      else sass = sprintf("%8s %6s %6s %6s %6s", "-", "-", "-", "-", "-")
      printf "   %-36s %4d %5d/%5d %6d %7d %s\n", f, regs, sst, sld, stack, smem, sass
      if (strict && sst + sld > 0) printf "FAIL %s spills (%d bytes stored, %d loaded)\n", f, sst, sld > viol
      if (strict && !(f in ins)) printf "FAIL %s: no SASS from cuobjdump\n", f > viol
      if (strict && (f in ins) && ins[f] * 16 / 1024 > limit)
        printf "FAIL %s: %.1f KB of SASS, over %d KB\n", f, ins[f] * 16 / 1024, limit > viol
    }' strict="$STRICT" limit="$SASS_LIMIT_KB" viol="$TMP/$name.viol" "$TMP/$name.sass" "$TMP/$name.ptxas" | sort
  if [ -s "$TMP/$name.viol" ]; then cat "$TMP/$name.viol"; status=1; fi
done
exit $status
