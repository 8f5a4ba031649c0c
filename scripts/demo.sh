#!/usr/bin/env bash
# The main job: builds kvoffload and replays the bundled Mooncake KV-block trace through every
# policy (hit rate next to LRU and Belady's optimum, block operations per second), then runs the
# transfer benchmark and 3,000 trace requests end to end through an Offloader on whatever moves
# bytes here: the GPU if one is present, else the host engine. It says which.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
source scripts/env.sh

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVOFFLOAD_BUILD_BENCH=ON >/dev/null
targets=(kvoffload-replay)
grep -q '^kvoffload-bench:' <(cmake --build build --target help 2>/dev/null | sed 's/ .*//') &&
  targets+=(kvoffload-bench)
cmake --build build -j"$JOBS" --target "${targets[@]}"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "kvoffload demo: running with GPU: $(nvidia-smi -L | head -1)"
else
  echo "kvoffload demo: no GPU on this machine; policies run on the CPU (as always) and byte" \
       "transfers use the host engine (memcpy between host buffers)"
fi
echo
./build/bench/kvoffload-replay "$@"
if [ -x build/bench/transfer/kvoffload-bench ]; then
  echo
  ./build/bench/transfer/kvoffload-bench transfer --quick
  echo
  ./build/bench/transfer/kvoffload-bench offload --quick
fi
