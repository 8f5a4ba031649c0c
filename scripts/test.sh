#!/usr/bin/env bash
# Builds kvoffload and runs every test: the release build (all tests; GPU tests skip without a
# device), the Python package's tests (scripts/python-test.sh: pip install . in a venv, pytest),
# the vLLM integration tests (scripts/vllm-test.sh: vllm==0.33.0 in a cached venv),
# then the host tests again under AddressSanitizer + UndefinedBehaviorSanitizer, and the
# concurrency tests under ThreadSanitizer. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
source scripts/env.sh

echo "== release build: build/"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVOFFLOAD_BUILD_TESTS=ON \
  -DKVOFFLOAD_BUILD_BENCH=ON
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS"

echo "== Python package: pip install . into a venv, then pytest tests/python"
KVOFFLOAD_REPLAY="$PWD/build/bench/kvoffload-replay" scripts/python-test.sh

echo "== vLLM integration: our eviction policies and disk tier inside vllm==0.33.0 (cached venv)"
scripts/vllm-test.sh

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build: build-asan/"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKVOFFLOAD_SANITIZE=address,undefined -DKVOFFLOAD_BUILD_TESTS=ON -DKVOFFLOAD_BUILD_BENCH=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90
cmake --build build-asan -j"$JOBS"
# protect_shadow_gap=0: the CUDA driver maps memory where ASan's shadow gap would be.
ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$JOBS" -E '^(install_tree|find_package_consumer)$'

if [ -x scripts/tsan.sh ]; then
  echo "== ThreadSanitizer build: build-tsan/"
  scripts/tsan.sh
fi
echo "kvoffload: all test configurations passed"
