// Google Benchmark micro-benchmarks of single manager calls (built only when Google Benchmark is
// found). Each benchmark reports items/s = block operations per second for one call kind, at
// a steady state where the cache is full and every store evicts.
#include <kvoffload/factory.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using kvoffload::BlockHash;

constexpr std::size_t kBatch = 32;  // blocks per call, about one request's worth

std::vector<BlockHash> random_batch(std::mt19937_64& rng) {
  std::vector<BlockHash> batch(kBatch);
  for (auto& h : batch)
    h = rng();
  return batch;
}

std::unique_ptr<kvoffload::OffloadingManager> full_manager(const std::string& spec,
                                                           std::size_t slots,
                                                           std::vector<BlockHash>& resident) {
  auto m = kvoffload::make_manager(spec, slots, 1, false);
  std::mt19937_64 rng{7};
  while (resident.size() + kBatch <= slots) {
    auto batch = random_batch(rng);
    auto out   = m->prepare_store(batch);
    m->complete_store(out->block_hashes_to_store, true);
    resident.insert(resident.end(), batch.begin(), batch.end());
  }
  return m;
}

void store_evicting(benchmark::State& state, const std::string& spec) {
  std::vector<BlockHash> resident;
  auto m = full_manager(spec, static_cast<std::size_t>(state.range(0)), resident);
  std::mt19937_64 rng{11};
  for (auto _ : state) {
    auto batch = random_batch(rng);
    auto out   = m->prepare_store(batch);
    m->complete_store(out->block_hashes_to_store, true);
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations() * 2 * kBatch);
}

void lookup_touch_hits(benchmark::State& state, const std::string& spec) {
  std::vector<BlockHash> resident;
  auto m = full_manager(spec, static_cast<std::size_t>(state.range(0)), resident);
  std::mt19937_64 rng{13};
  std::vector<BlockHash> batch(kBatch);
  for (auto _ : state) {
    const std::size_t start = rng() % (resident.size() - kBatch);
    std::copy_n(resident.begin() + start, kBatch, batch.begin());
    benchmark::DoNotOptimize(m->lookup(batch));
    m->touch(batch);
  }
  state.SetItemsProcessed(state.iterations() * 2 * kBatch);
}

}  // namespace

BENCHMARK_CAPTURE(store_evicting, lru, std::string{"lru"})->Arg(1 << 12)->Arg(1 << 20);
BENCHMARK_CAPTURE(store_evicting, arc, std::string{"arc"})->Arg(1 << 12)->Arg(1 << 20);
BENCHMARK_CAPTURE(lookup_touch_hits, lru, std::string{"lru"})->Arg(1 << 12)->Arg(1 << 20);
BENCHMARK_CAPTURE(lookup_touch_hits, arc, std::string{"arc"})->Arg(1 << 12)->Arg(1 << 20);
// density: stores without a touch (each is its own reference); admission may decline some.
BENCHMARK_CAPTURE(store_evicting, density, std::string{"density"})->Arg(1 << 12)->Arg(1 << 20);
BENCHMARK_CAPTURE(lookup_touch_hits, density, std::string{"density"})->Arg(1 << 12)->Arg(1 << 20);

BENCHMARK_MAIN();
