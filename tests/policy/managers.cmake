# Issue 3's managers: weighted LRU, admission filter, factory (and tiered) in one executable;
# the thread-safe and async wrappers in another, which scripts/tsan.sh also runs under
# ThreadSanitizer (ctest -R "Concurrent|Async").
kvoffload_add_test(manager_tests
  weighted_lru_test.cpp
  filter_test.cpp
  factory_test.cpp
  tiered_test.cpp
  density_test.cpp
  density_twin_test.cpp)
# density_test.cpp replays the bundled Mooncake trace (bench/replay) against LRU.
target_link_libraries(manager_tests PRIVATE kvoffload_replay)
target_compile_definitions(manager_tests PRIVATE KVOFFLOAD_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
kvoffload_add_test(manager_concurrent_tests
  concurrent_test.cpp)
# Not a test: throughput of one mutex against shards, 1..T threads (bench/RESULTS.md).
add_executable(manager-concurrency-bench concurrency_bench.cpp)
target_link_libraries(manager-concurrency-bench PRIVATE kvoffload::kvoffload)
target_include_directories(manager-concurrency-bench PRIVATE ${PROJECT_SOURCE_DIR}/csrc/policy)
