#!/usr/bin/env bash
# The project's run command (README "Run"): installs dependencies, builds, creates the built-in
# demo model (deterministic, generated: no downloads) and streams a generation from it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset default
cmake --build --preset default -j "$(nproc)" --target engram-model
tool=build/default/tools/engram-model
model=${ENGRAM_DEMO_MODEL:-models/demo}
if [ ! -f "$model/config.json" ]; then
  "$tool" create --preset demo --out "$model"
fi
"$tool" verify "$model"
exec "$tool" generate --model "$model" --prompt "${1:-The history of the printing press}" --max-tokens "${MAX_TOKENS:-200}"
