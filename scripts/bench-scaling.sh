#!/usr/bin/env bash
# Scaling benchmark of the Engram memory tier (issue 3, benchmark 3): the same workload on
# bench-preset models whose Engram tables grow 10x at a time, from 10M parameters up to
# MAX_GB (default 20 GB, bf16). The cost of a step should follow the rows it touches, not the
# table size; the table printed at the end is the curve. It prints figures and never fails on
# them. Models are created once under $SCALE_DIR (default build/scale-models).
#   usage: bash scripts/bench-scaling.sh [tier: ram|ssd|mmap]   (env: MAX_GB, SCALE_DIR, NUM_SEQS)
set -euo pipefail
cd "$(dirname "$0")/.."
tier=${1:-ssd}
max_gb=${MAX_GB:-20}
dir=${SCALE_DIR:-build/scale-models}
tool=${ENGRAM_MODEL:-build/default/tools/engram-model}
[ -x "$tool" ] || { echo "build first: cmake --preset default && cmake --build --preset default" >&2; exit 1; }
mkdir -p "$dir"
printf '%-14s %9s %9s %12s %14s %8s\n' "table params" "GB" "steps" "ms/step" "stall ms/step" "unique" > "$dir/curve.txt"
for params in 10000000 100000000 1000000000 10000000000 100000000000; do
  gb=$(awk -v p="$params" 'BEGIN { printf "%.3f", p * 2 / 1e9 }')  # bf16: 2 bytes per parameter
  awk -v g="$gb" -v m="$max_gb" 'BEGIN { exit !(g <= m) }' || break
  model="$dir/p$params"
  if [ ! -f "$model/config.json" ]; then
    # The bench preset's trained tokenizer keeps the runs comparable across sizes.
    "$tool" create --preset bench --out "$model" --table-gb "$gb" --tokenizer trained >&2
  fi
  out=$("$tool" bench --model "$model" --configs "$tier" --num-seqs "${NUM_SEQS:-4}" \
        --prompt-len 64,256 --output-len 32,128 --cache-mb 256)
  echo "$out" >&2
  line=$(echo "$out" | awk -v t="$tier" '$1 == t')
  secs=$(echo "$line" | awk '{print $2}')
  steps=$(echo "$line" | awk '{print $3}')
  stall=$(echo "$line" | awk '{print $7}')
  unique=$(echo "$line" | awk '{print $9}')
  ms=$(awk -v s="$secs" -v n="$steps" 'BEGIN { printf "%.2f", 1000 * s / n }')
  printf '%-14s %9s %9s %12s %14s %8s\n' "$params" "$gb" "$steps" "$ms" "$stall" "$unique" >> "$dir/curve.txt"
done
cat "$dir/curve.txt"
