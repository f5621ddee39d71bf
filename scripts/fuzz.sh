#!/usr/bin/env bash
# Fuzz smoke run: builds the libFuzzer targets of tests/fuzz (preset "fuzz": clang, ASan+UBSan),
# replays the saved reproducers in tests/fuzz/regressions/<target>/, then fuzzes every target in
# parallel for N seconds (default 20) on a copy of its seed corpus under build/fuzz/fuzz-work/,
# so the repository is never modified. Fails on any crash, leak, sanitizer report, OOM or
# timeout (-timeout=10 s per input); the artifact to reproduce it is named in the output.
#
#   bash scripts/fuzz.sh [seconds-per-target]
#   build/fuzz/tests/fuzz/<target> FILE      # re-run one input, e.g. a reported crash-* file
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
  echo "usage: $0 [seconds-per-target]" >&2
  exit 2
fi

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)"

# target:max_len. Seeds must stay below max_len (libFuzzer truncates longer inputs).
targets=(safetensors_fuzz:4096 config_fuzz:4096 tokenizer_fuzz:8192)
bin=build/fuzz/tests/fuzz
work=build/fuzz/fuzz-work
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

mkdir -p "$work"
stat_of() { grep -E "^stat::$2:" "$1" | awk '{print $2}' | tail -n 1; }

status=0
for spec in "${targets[@]}"; do
  t=${spec%%:*}
  reg=tests/fuzz/regressions/$t
  compgen -G "$reg/*" >/dev/null || continue
  log=$work/$t.regressions.log
  # Each file once; a tight memory limit makes a regressed blow-up fail in seconds.
  if ! "$bin/$t" -timeout=10 -rss_limit_mb=512 -malloc_limit_mb=512 "$reg"/* >"$log" 2>&1; then
    echo "fuzz: $t FAILED on a saved reproducer in $reg (log: $log):"
    grep -E "^(==[0-9]+==ERROR|SUMMARY|Running:)|runtime error|_fuzz:" "$log" | tail -n 6 |
      sed 's/^/  /'
    status=1
  fi
done

pids=()
for spec in "${targets[@]}"; do
  t=${spec%%:*}
  max_len=${spec##*:}
  rm -rf "${work:?}/$t"
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp tests/fuzz/corpus/"$t"/* "$work/$t/corpus/"
  "$bin/$t" "$work/$t/corpus" -dict="tests/fuzz/$t.dict" -max_len="$max_len" -timeout=10 \
    -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
    >"$work/$t/log" 2>&1 &
  pids+=($!)
done

for i in "${!targets[@]}"; do
  t=${targets[$i]%%:*}
  log=$work/$t/log
  rc=0
  wait "${pids[$i]}" || rc=$?
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/\1 edges, \2 features, corpus \3/p' \
    <<<"$done_line")
  if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
    echo "fuzz: $t OK: $(stat_of "$log" number_of_executed_units) execs in ${secs}s" \
      "($(stat_of "$log" average_exec_per_sec)/s), cov ${cov:-?}, peak rss $(stat_of "$log" peak_rss_mb) MB"
  else
    status=1
    artifact=$(ls -1 "$work/$t/artifacts" 2>/dev/null | head -n 1)
    echo "fuzz: $t FAILED (exit $rc): ${artifact:+reproducer $work/$t/artifacts/$artifact; }log $log"
    { grep -E "^(==[0-9]+==ERROR|SUMMARY)|runtime error|ERROR: libFuzzer|_fuzz:" "$log" ||
      tail -n 5 "$log"; } | head -n 8 | sed 's/^/  /'
    echo "  minimize: $bin/$t -minimize_crash=1 -runs=100000 <reproducer>;" \
      "keep it in tests/fuzz/regressions/$t/"
  fi
done
exit "$status"
