#!/usr/bin/env bash
# The GPU check of the CUDA backend, in two halves (the GPU machine has no Rust toolchain):
#
#   kernels/gpu-check.sh build   on the development machine: builds the test executables and
#                                the release binary with the kernels (PASA_REQUIRE_KERNELS=1)
#                                and copies them, stripped of debug info, with this script and
#                                ../shared/datasets/ml-1m.txt (when present) into
#                                target/gpu-check/ (about 40 MB)
#   target/gpu-check/gpu-check.sh run [check|train|bench|all]
#                                on the GPU machine (each part fits one 10-minute device call):
#     check  `pasa info`, the CUDA unit tests, CPU/GPU parity (n up to 2048), then
#            compute-sanitizer memcheck, racecheck, initcheck and synccheck on the
#            attention and mix parity tests, with PASA_CUDA_SYNC=1 so that a fault names its
#            kernel;
#     train  `pasa train --device cuda` of sasrec and pasa on ml-1m at issue 4's settings (n 200,
#            d 64, 2 blocks, 1 head, batch 128, dropout 0.2, full CE, 200 epochs, no early
#            stopping), with the test NDCG@10 / HR@10 and the median epoch time in the table;
#     bench  `pasa bench --device cuda` at the ml-1m shape (every model; sasrec and pasa also with
#            --precision tf32 and bf16; pasa also through the run-time attention kernels,
#            PASA_ATTN_GENERIC=1) and at n 1024, dh 64;
#     all    all three (the default).
#   PASA_EPOCHS and PASA_DEVICE override the training's 200 epochs and the device cuda (for a
#   dry run on the CPU); PASA_MODELS="pasa" trains one model (one per device call when both do
#   not fit in one).
#   Logs: one per step in logs/ next to the script, and (the device tool brings back at most 8
#   files) all of them in $OUT/gpu-check.log plus $OUT/metrics.<model>.jsonl when $OUT is set.
#   Prints a table at the end; exit status non-zero when a step failed.
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
  cargo build --release --quiet
  objcopy --strip-debug target/release/pasa "$out/pasa"
  data=../shared/datasets/ml-1m.txt
  if [ -f "$data" ]; then cp "$data" "$out/"; else echo "note: $data absent: no training part"; fi
  cp "$here/gpu-check.sh" "$out/"
  ls -la "$out"
  exit 0
fi

part="${2:-all}"
if [ "$mode" != run ] || ! [[ "$part" =~ ^(check|train|bench|all)$ ]]; then
  echo "usage: kernels/gpu-check.sh build | target/gpu-check/gpu-check.sh run [check|train|bench|all]" >&2
  exit 2
fi

cd "$here"
logs="$here/logs"  # one file per step; gathered into one file under $OUT at the end
rm -rf "$logs" && mkdir -p "$logs"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
SAN="${COMPUTE_SANITIZER:-/usr/local/cuda/bin/compute-sanitizer}"
declare -a rows
step() {  # step NAME COMMAND...
  local name="$1"; shift
  local t0=$SECONDS
  echo "=== $name: $*"
  if "$@" > "$logs/log.$name" 2>&1; then rows+=("ok    $((SECONDS - t0))s  $name"); else rows+=("FAIL  $((SECONDS - t0))s  $name (see log.$name)"); fi
  tail -n 5 "$logs/log.$name"
}

# Parity reports its tests ignored without a usable GPU: fail loudly instead (the probe says
# why; PASA_REQUIRE_GPU makes every parity test fail rather than be ignored). The end-to-end
# parity test runs the packed binary.
export PASA_REQUIRE_GPU=1 PASA_BIN="$here/pasa"
probe() {
  local out
  local status=0
  out="$(./parity --nocapture memory_fill_axpy_and_sums 2>&1)" || status=$?
  echo "$out"
  case "$out" in *"no usable GPU"*) return 1 ;; esac
  return "$status"
}
check() {
  step info ./pasa info
  step gpu-usable probe
  step unit ./unit --test-threads=1 backend::cuda
  step parity ./parity --test-threads=1
  # The sanitizer runs every launch of the attention and mix tests (slow: tens of minutes for
  # the whole grid of shapes); PASA_SANITIZE_FILTER narrows it, e.g. to head_width_128.
  filter="${PASA_SANITIZE_FILTER:-attention_head_width_128_bucket}"
  for tool in memcheck racecheck initcheck synccheck; do
    step "$tool" env PASA_CUDA_SYNC=1 "$SAN" --tool "$tool" --error-exitcode 1 \
      ./parity --test-threads=1 "$filter"
  done
  step memcheck-mix env PASA_CUDA_SYNC=1 "$SAN" --tool memcheck --error-exitcode 1 \
    ./parity --test-threads=1 mix_every_kind_and_shape
}

# Issue 4's training runs. Run directories stay on the machine; each metrics.jsonl (a line per
# epoch, the test metrics last) is copied to the logs.
train_one() {  # train_one MODEL
  rm -rf "runs/$1"
  ./pasa train --device "${PASA_DEVICE:-cuda}" --data ml-1m.txt --model "$1" --n 200 --d 64 --blocks 2 \
    --heads 1 --batch 128 --dropout 0.2 --loss ce --epochs "${PASA_EPOCHS:-200}" --patience 0 \
    --out "runs/$1" || return
  cp "runs/$1/metrics.jsonl" "$logs/metrics.$1.jsonl"
  cp "runs/$1/times.jsonl" "$logs/times.$1.jsonl"
}
summary_of() {  # summary_of MODEL: test NDCG@10, HR@10 and the median epoch time
  python3 - "$logs/metrics.$1.jsonl" "$logs/times.$1.jsonl" <<'PY' 2>/dev/null || echo "(no metrics)"
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
secs = [json.loads(l)["train_secs"] for l in open(sys.argv[2])]
test = lines[-1]["test"]
print(f"test NDCG@10 {test['NDCG@10']:.4f} HR@10 {test['HR@10']:.4f} "
      f"(best valid epoch {lines[-1]['epoch']}), median epoch {statistics.median(secs):.2f}s "
      f"over {len(secs)} epochs")
PY
}
train() {
  if [ ! -f ml-1m.txt ]; then rows+=("skip  ml-1m.txt was not packed"); return; fi
  for model in ${PASA_MODELS:-sasrec pasa}; do
    step "train-$model" train_one "$model"
    rows+=("      $model: $(summary_of "$model")")
  done
}

# `pasa bench` at the ml-1m training shape and at a long-window shape; the tables are printed
# after the summary.
bench() {
  step bench-ml1m ./pasa bench --device "${PASA_DEVICE:-cuda}" --model sasrec,pasa,parec,fparec,rope
  step bench-n1024 ./pasa bench --device "${PASA_DEVICE:-cuda}" --model sasrec,pasa --batch 16 --n 1024 --d 128 --heads 2
  if [ "${PASA_DEVICE:-cuda}" = cuda ]; then  # the CPU has only f32
    step bench-ml1m-tf32 ./pasa bench --device cuda --precision tf32 --model sasrec,pasa
    step bench-ml1m-bf16 ./pasa bench --device cuda --precision bf16 --model sasrec,pasa
    # The same as bench-ml1m's pasa through the run-time (`any`) attention kernels: what the
    # compile-time specialisation of U, L and dropout buys.
    PASA_ATTN_GENERIC=1 step bench-ml1m-any ./pasa bench --device cuda --model pasa
  fi
}

case "$part" in
  check) check ;;
  train) train ;;
  bench) bench ;;
  all) check; train; bench ;;
esac

if [ -n "${OUT:-}" ]; then
  for f in "$logs"/*; do echo "=== $(basename "$f")"; tail -n 3000 "$f"; done > "$OUT/gpu-check.log"
  cp "$logs"/metrics.*.jsonl "$logs"/times.*.jsonl "$OUT/" 2>/dev/null
fi

echo
echo "GPU check summary"
printf '%s\n' "${rows[@]}"
for f in "$logs"/log.bench-*; do [ -f "$f" ] && { echo; cat "$f"; }; done
for r in "${rows[@]}"; do case "$r" in FAIL*) exit 1 ;; esac; done
