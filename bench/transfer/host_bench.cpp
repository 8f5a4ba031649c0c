// The benchmark's sections that run without a CUDA device, on the host engine.
#include "common.hpp"
#include "report.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace kvoffload::bench {

using namespace kvoffload::transfer;

namespace {
/// memcpy of `bytes` split into `threads` contiguous parts copied in parallel.
void contiguous_copy(void* dst, const void* src, std::size_t bytes, unsigned threads) {
  std::vector<std::thread> workers;
  const std::size_t part = (bytes + threads - 1) / threads;
  for (unsigned t = 0; t < threads; ++t) {
    const std::size_t begin = std::min(bytes, t * part);
    const std::size_t end   = std::min(bytes, begin + part);
    if (begin == end) break;
    workers.emplace_back([=] {
      std::memcpy(static_cast<std::byte*>(dst) + begin,
                  static_cast<const std::byte*>(src) + begin,
                  end - begin);
    });
  }
  for (std::thread& w : workers)
    w.join();
}
}  // namespace

Report run_host_bench(const Options& options) {
  Report report;
  report.host_fallback       = true;
  const unsigned threads     = std::max(1U, std::thread::hardware_concurrency());
  const std::size_t op_bytes = options.quick ? (std::size_t{16} << 20) : (std::size_t{64} << 20);
  const int reps             = options.quick ? 3 : 5;
  std::uint64_t seed         = 1;

  for (std::size_t chunk : kChunkSizes) {
    const std::size_t blocks      = std::max<std::size_t>(64, op_bytes / (kLayers * chunk));
    const std::size_t pool_blocks = 2 * blocks;
    std::vector<std::byte> arena(pool_blocks * kLayers * chunk, std::byte{1});
    PinnedHostPool host{{.bytes = blocks * kLayers * chunk, .register_with_cuda = false}};
    const KvLayout layout = layer_pools(arena.data(), chunk, pool_blocks);
    auto engine           = make_host_transfer_engine(
        layout, {host.data(), layout.host_slot_bytes(), blocks}, {.host_threads = threads});
    // In the bench user's terms (bench_main said once why the host engine runs).
    report.device = "host engine: memcpy on " + std::to_string(threads) +
                    " worker threads between host buffers (not GPU figures)";
    const double bytes = static_cast<double>(blocks * layout.host_slot_bytes());
    // Ceiling: one contiguous memcpy of the same bytes, split over as many threads as the
    // engine has workers (a one-thread ceiling would let the engine exceed it).
    std::vector<double> ceiling;
    for (int r = 0; r < reps; ++r) {
      const double start = now_seconds();
      contiguous_copy(host.data(), arena.data(), static_cast<std::size_t>(bytes), threads);
      ceiling.push_back(bytes / (now_seconds() - start) / 1e9);
    }
    const double ceiling_gbs = median(ceiling);
    report.rows.push_back({"bandwidth",
                           "ceiling",
                           "-",
                           chunk,
                           blocks,
                           ceiling_gbs,
                           "GB/s",
                           1.0,
                           "one contiguous memcpy over " + std::to_string(threads) + " threads"});
    for (Direction d : {Direction::kStore, Direction::kLoad}) {
      std::vector<double> gbs;
      for (int r = 0; r < reps; ++r) {
        const TransferRequest request{.direction  = d,
                                      .gpu_blocks = random_ids(blocks, pool_blocks, ++seed),
                                      .host_slots = random_ids(blocks, blocks, ++seed)};
        gbs.push_back(bytes / timed_job(*engine, request) / 1e9);
      }
      const double value = median(gbs);
      report.rows.push_back({"bandwidth",
                             "host-memcpy",
                             to_string(d),
                             chunk,
                             blocks,
                             value,
                             "GB/s",
                             value / ceiling_gbs,
                             std::to_string(threads) + " worker threads, host engine"});
    }
  }

  // Small-batch latency: 16 KiB x 32 layers per block.
  {
    const std::size_t chunk       = 16384;
    const std::size_t pool_blocks = 256;
    std::vector<std::byte> arena(pool_blocks * kLayers * chunk);
    PinnedHostPool host{{.bytes = 64 * kLayers * chunk, .register_with_cuda = false}};
    const KvLayout layout = layer_pools(arena.data(), chunk, pool_blocks);
    auto engine           = make_host_transfer_engine(
        layout, {host.data(), layout.host_slot_bytes(), 64}, {.host_threads = threads});
    for (std::size_t blocks : {1, 4, 16, 64}) {
      std::vector<double> us;
      for (int r = 0; r < 30; ++r) {
        us.push_back(1e6 * timed_job(*engine,
                                     {.direction  = Direction::kStore,
                                      .gpu_blocks = random_ids(blocks, pool_blocks, ++seed),
                                      .host_slots = random_ids(blocks, 64, ++seed)}));
      }
      report.rows.push_back({"latency",
                             "host-memcpy",
                             "store",
                             chunk,
                             blocks,
                             median(us),
                             "us",
                             0,
                             "submit to completion, median of 30"});
    }
    // Both directions at once.
    std::vector<double> gbs;
    for (int r = 0; r < reps; ++r) {
      const double start = now_seconds();
      const JobId store  = engine->submit({.direction  = Direction::kStore,
                                           .gpu_blocks = random_ids(32, 128, ++seed),
                                           .host_slots = random_ids(32, 32, ++seed)});
      std::vector<BlockId> load_slots(32);
      std::iota(load_slots.begin(), load_slots.end(), BlockId{32});
      const JobId load = engine->submit({.direction  = Direction::kLoad,
                                         .gpu_blocks = random_ids(32, 128, ++seed),
                                         .host_slots = load_slots});
      engine->wait(store);
      engine->wait(load);
      gbs.push_back(64.0 * static_cast<double>(layout.host_slot_bytes()) / (now_seconds() - start) /
                    1e9);
    }
    report.rows.push_back({"bidirectional",
                           "host-memcpy",
                           "both",
                           chunk,
                           64,
                           median(gbs),
                           "GB/s",
                           0,
                           "32 blocks stored + 32 loaded at once"});
  }

  const double pin_gib = options.pin_gib >= 0 ? options.pin_gib : 1.0;
  if (pin_gib > 0) {
    const auto bytes = static_cast<std::size_t>(pin_gib * double(std::size_t{1} << 30));
    PinnedHostPool pool{{.bytes = bytes, .threads = threads, .register_with_cuda = false}};
    report.rows.push_back({"pinning",
                           "mmap+touch",
                           "-",
                           bytes,
                           0,
                           pool.touch_seconds(),
                           "s",
                           0,
                           std::to_string(pin_gib) + " GiB, " + std::to_string(threads) +
                               " threads, no registration (no device)" +
                               (pool.huge_pages() ? ", huge pages" : "")});
  }
  report.rows.push_back({"sm_budget", "-", "-", 0, 0, 0, "-", 0, "needs a GPU: not run"});
  report.rows.push_back({"interference", "-", "-", 0, 0, 0, "-", 0, "needs a GPU: not run"});
  return report;
}

}  // namespace kvoffload::bench
