// manager-concurrency-bench: block operations per second of the thread-safe wrappers (one
// mutex vs shards by hash) with 1..T threads serving synthetic requests (shared prefix chains of
// random 64-bit hashes plus a private tail), each request = lookup, touch, load the hit prefix,
// store the rest. Prints one line per (spec, threads).
#include "flat_index.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace kvoffload;

namespace {

double run(OffloadingManager& m, int threads, int requests) {
  std::atomic<std::uint64_t> ops{0};
  std::vector<std::thread> pool;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937_64 rng{static_cast<std::uint64_t>(t) * 7919 + 1};
      std::vector<BlockHash> hashes;
      std::uint64_t local = 0;
      for (int r = 0; r < requests; ++r) {
        hashes.clear();
        const std::uint64_t chain = rng() % 2000;
        const std::size_t length  = 8 + rng() % 24;
        for (std::size_t i = 0; i < length; ++i)
          hashes.push_back(detail::mix_hash(chain * 64 + i));
        for (int i = 0; i < 4; ++i)
          hashes.push_back(detail::mix_hash((std::uint64_t{1} << 40) + rng()));
        const std::span<const BlockHash> all{hashes};
        const std::size_t hit = m.lookup(all).value_or(0);
        m.touch(all);
        std::size_t loaded = 0;
        try {
          (void)m.prepare_load(all.first(hit));
          loaded = hit;
        } catch (const logic_error&) {
        }
        if (auto out = m.prepare_store(all.subspan(hit))) {
          m.complete_store(out->block_hashes_to_store, true);
          local += out->block_hashes_to_store.size();
        }
        if (loaded > 0) m.complete_load(all.first(loaded));
        local += 2 * all.size() + 2 * loaded + (all.size() - hit);
        if (r % 64 == 0) (void)m.take_events();
      }
      ops.fetch_add(local);
    });
  }
  for (auto& thread : pool)
    thread.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(ops.load()) / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  const int max_threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int requests    = argc > 2 ? std::atoi(argv[2]) : 200'000;
  std::printf("%-28s %8s %12s\n", "spec", "threads", "Mops/s");
  for (const char* spec : {"lru+mutex", "lru+sharded:shards=4", "lru+sharded:shards=16"}) {
    for (int threads = 1; threads <= max_threads; threads *= 2) {
      auto m = make_manager(spec, 20'000, 1);
      std::printf("%-28s %8d %12.1f\n", spec, threads, run(*m, threads, requests / threads) / 1e6);
    }
  }
  return 0;
}
