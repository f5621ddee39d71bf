#!/usr/bin/env bash
# GPU benchmark (issue 6): on a machine with a CUDA device, builds the default preset, then runs
#  1. the offline serving benchmark in its four configurations (engram-model bench --configs
#     dense,ram,ram-sync,ssd: Engram off, table in RAM with prefetch, without prefetch, on SSD
#     behind the RAM row cache) plus the device paths of Engram rows end to end (ram-staged: the
#     CPU gathers, one copy per layer; ram-zero-copy: the GPU reads the pinned table; ram-cached:
#     the same behind its hot-row cache, DEVICE_CACHE_MB), and dense and ram again without CUDA
#     graphs (dense-eager, ram-eager: every op its own launch), on a bench-preset model created
#     once under $MODEL_DIR;
#  2. gather_paths_bench: the two host -> device paths of Engram rows, staged (CPU gather into
#     pinned staging + cudaMemcpyAsync on a copy stream) vs zero-copy (the persistent gather
#     kernel reading the pinned table), in GB/s per row size;
#  3. the CUDA kernel tests (ctest -L cuda), so the figures come with proof the kernels are right.
# and prints both tables together at the end. It prints figures and never fails on them.
# Step 1 runs on the CUDA backend when a device and cuBLASLt are there (the bench prints the
# backend it chose; ENGRAM_BACKEND=cpu forces the CPU for a comparison run). Engram rows reach the
# device by the staged path: the prefetch thread gathers them on the CPU and the backend copies
# them on its copy stream while the layers before them run.
#   usage: bash scripts/bench-gpu.sh
#   env:   TABLE_GB (bench model table size, default 4), MODEL_DIR (default models/bench-gpu),
#          NUM_SEQS (default 64), PROMPT_LEN / OUTPUT_LEN (default 100,1024 as DESIGN §6),
#          CACHE_MB (ssd row cache, default 1024), DEVICE_CACHE_MB (GPU hot-row cache per table,
#          default 1024), GATHER_ARGS (extra gather_paths_bench flags),
#          SKIP_BUILD=1 (use build/default as it is)
set -euo pipefail
cd "$(dirname "$0")/.."

build=build/default
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cmake --preset default >/dev/null
  cmake --build --preset default --target engram-model gather_paths_bench elementwise_ops_test \
    paged_attention_test engram_gate_conv_test sampling_test gather_row_cache_test gemm_test \
    branch_ops_test cuda_backend_test cuda_model_test row_math_shared_test
fi
tool=$build/tools/engram-model
gather=$build/tests/gather_paths_bench
[ -x "$tool" ] || { echo "bench-gpu: $tool is missing; build first" >&2; exit 1; }
[ -x "$gather" ] || { echo "bench-gpu: $gather is missing (nvcc not found at configure time?)" >&2; exit 1; }

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current \
    --format=csv,noheader || true
else
  echo "bench-gpu: nvidia-smi not found; the CUDA parts will report that no device is usable" >&2
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== CUDA kernel tests (ctest -L cuda)"
(cd "$build" && env -u ENGRAM_BACKEND ctest -L cuda --output-on-failure) >"$out/tests.txt" 2>&1 || true
tail -n 25 "$out/tests.txt"

echo "== gather paths (staged copy vs zero-copy kernel)"
# shellcheck disable=SC2086  # GATHER_ARGS is a list of flags
"$gather" ${GATHER_ARGS:-} | tee "$out/gather.txt"

model=${MODEL_DIR:-models/bench-gpu}
if [ ! -f "$model/config.json" ]; then
  echo "== creating the bench model ($model, ${TABLE_GB:-4} GB table)"
  "$tool" create --preset bench --table-gb "${TABLE_GB:-4}" --out "$model" >&2
fi
echo "== offline serving benchmark (dense, ram, ram-sync, ssd; the device paths of Engram rows)"
"$tool" bench --model "$model" \
  --configs dense,ram,ram-sync,ssd,ram-staged,ram-zero-copy,ram-cached,dense-eager,ram-eager \
  --num-seqs "${NUM_SEQS:-64}" \
  --prompt-len "${PROMPT_LEN:-100,1024}" --output-len "${OUTPUT_LEN:-100,1024}" \
  --cache-mb "${CACHE_MB:-1024}" --device-cache-mb "${DEVICE_CACHE_MB:-1024}" | tee "$out/serving.txt"

echo
echo "================ summary ================"
echo "-- offline serving (engram-model bench)"
cat "$out/serving.txt"
echo "-- host -> device gather paths"
cat "$out/gather.txt"
echo "-- kernel tests"
grep -E "tests passed" "$out/tests.txt" || true
echo "skipped (no usable device): $(grep -c '(Skipped)' "$out/tests.txt" || true)"
