#!/usr/bin/env bash
# The project's run command (README "Run"): installs dependencies, builds, and starts engramd on
# its built-in demo model (generated on first start into $ENGRAM_CACHE_DIR, default
# ~/.cache/engram-serve; no downloads). gRPC on 127.0.0.1:50051, Prometheus metrics on
# http://127.0.0.1:9400/metrics; Ctrl-C or SIGTERM drains and stops it. Extra arguments go to
# engramd (e.g. --listen 0.0.0.0:50051, --engram-tier ssd).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset default
targets=(engramd engram-model)
[ -f client/CMakeLists.txt ] && targets+=(engram-client)
cmake --build --preset default -j "$(nproc)" --target "${targets[@]}"
exec build/default/tools/engramd --demo "$@"
