#!/usr/bin/env bash
# The project's test command (README "Test"): installs the Debian dependencies, builds every
# target (CUDA ones too when nvcc is present) with warnings as errors, runs the whole ctest
# suite, then rebuilds the untrusted-input tests with ASan+UBSan and runs them again, and
# finally fuzzes those parsers briefly (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
# CI builds each submission in a new clone: let ccache hit across clone directories.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
# The unit, golden, integration and client suites assert CPU-exact results (batched equals
# alone, the Python reference), so their processes run the CPU backend even on a GPU host; the
# "cuda" tests create the CUDA backend explicitly and compare it with the CPU.
export ENGRAM_BACKEND=cpu

cmake --preset ci
cmake --build --preset ci -j "$jobs"
ctest --preset ci -j "$jobs"

# Parsers of untrusted bytes (safetensors headers, config.json, tokenizer.json, chat templates,
# API requests), the engine's threaded request lifecycle and the recorded step graphs (closures
# over backend memory) under ASan+UBSan.
asan_tests=(safetensors_test config_test bad_model_test tokenizer_test compress_test chat_template_test
  request_convert_test stop_matcher_test engine_test step_graph_test)
cmake --preset asan
targets=(engram-model)
for t in "${asan_tests[@]}"; do
  [ -f "tests/unit/$t.cc" ] && targets+=("$t")
done
cmake --build --preset asan -j "$jobs" --target "${targets[@]}"
label=$(IFS='|'; echo "^(${asan_tests[*]})\$")
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --preset asan -j "$jobs" -L "$label"

# libFuzzer smoke run of the same parsers (clang build, ASan+UBSan): 20 s per target, in parallel.
bash scripts/fuzz.sh 20
