#!/usr/bin/env bash
# Builds the host code with ThreadSanitizer (build-tsan/) and runs the concurrency tests: the
# thread-safe wrapper (one mutex and sharded) and the async front end, stress tests included;
# the host transfer engine's worker threads; the Offloader over the host engine (Offloader*,
# TieredOffloader* and TieredOffloaderDisk*: host + disk on a fake and on the real store); the
# disk block store's I/O threads (BlockStore*: both back ends, crash and fault tests).
# A data race fails the run (halt_on_error). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f scripts/env.sh ] && source scripts/env.sh
JOBS="${JOBS:-$(nproc)}"

cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKVOFFLOAD_SANITIZE=thread -DKVOFFLOAD_BUILD_TESTS=ON -DKVOFFLOAD_BUILD_BENCH=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90
# Only these tests' executables (and the library) need building.
cmake --build build-tsan -j"$JOBS" --target manager_concurrent_tests transfer_tests offloader_tests storage_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
  ctest --test-dir build-tsan --output-on-failure -j"$JOBS" -R 'concurrent|Concurrent|Async|HostEngine|HostRoundTrip|Offloader|BlockStore'
