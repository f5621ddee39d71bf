#!/usr/bin/env bash
# Installs every system dependency of engram-serve from Debian 12's packages.
# README, .ci/run and the Dockerfiles all call this one script, so a missing
# install step shows up everywhere at once. Safe to re-run: apt skips what is
# already installed. Pass --runtime for the minimal set a deployed engramd needs.
set -euo pipefail

build_pkgs=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libjemalloc-dev prometheus-cpp-dev nlohmann-json3-dev
  libutf8proc-dev libpcre2-dev libgtest-dev libgmock-dev libbenchmark-dev
  clang-format clang-tidy clang libclang-rt-14-dev
)
test_pkgs=(python3 python3-numpy python3-torch)
runtime_pkgs=(
  libgrpc++1.51 libprotobuf32 libjemalloc2 libprometheus-cpp-core1.0
  libprometheus-cpp-pull1.0 libutf8proc2 libpcre2-8-0 ca-certificates
)

mode=${1:-all}
case "$mode" in
  all) pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
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
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
