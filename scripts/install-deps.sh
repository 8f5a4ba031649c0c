#!/usr/bin/env bash
# Installs the build and test dependencies on Debian 12 (the CUDA toolkit itself must already be
# there, e.g. /usr/local/cuda). Idempotent: does nothing when everything is present.
set -euo pipefail

packages=(cmake ninja-build g++ pkg-config libgtest-dev googletest liburing-dev libisal-dev fio)
packages+=(python3 python3-venv python3-dev)  # the Python package: a venv and headers
packages+=(python3-matplotlib)  # the demo's charts (bench/plot_*.py)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "kvoffload: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
fi

if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "kvoffload: the CUDA toolkit (nvcc) is required; install it first (e.g. /usr/local/cuda)" >&2
  exit 1
fi
