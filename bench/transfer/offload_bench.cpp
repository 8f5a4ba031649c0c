// kvoffload-bench offload: a request trace end to end through an Offloader, moving real bytes.
//
// Per request, as a serving runtime would: lookup + touch, load the ready prefix into GPU
// blocks, store the rest (evicting as the policy says), confirm finished jobs. A request's GPU
// blocks alternate between two halves of the KV cache, so its jobs overlap the next request's;
// before a half is reused, the jobs that used it are waited for. Reports the bytes moved per
// second of wall time next to a contiguous-copy ceiling measured in the same run, and the host
// time spent inside Offloader calls.
#include "offload_bench.hpp"

#include "common.hpp"
#include "replay/replay.hpp"
#include "replay/trace.hpp"
#include "report.hpp"

#include <kvoffload/offloader.hpp>
#include <kvoffload/transfer/transfer.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace kvoffload::bench {
namespace {

using transfer::HostSlots;
using transfer::JobId;
using transfer::KvLayout;
using transfer::KvTensor;

void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string{what} + ": " + cudaGetErrorString(status));
  }
}

/// The "GPU" KV cache and the host slots: device memory and a pinned pool on a GPU, plain
/// host memory for the host engine.
class Memory {
 public:
  Memory(
      bool gpu, std::size_t arena_bytes, std::size_t host_bytes, std::size_t slot_bytes, int device)
      : gpu_{gpu} {
    if (gpu_) {
      cuda_check(cudaSetDevice(device), "cudaSetDevice");
      // The pool first: if it throws, nothing else is allocated yet.
      pool_   = std::make_unique<transfer::PinnedHostPool>(transfer::PinnedHostPoolOptions{
            .bytes = host_bytes, .align_bytes = slot_bytes, .device = device});
      host_   = pool_->data();
      void* p = nullptr;
      cuda_check(cudaMalloc(&p, arena_bytes), "cudaMalloc (KV cache)");
      arena_ = static_cast<std::byte*>(p);
      if (const cudaError_t status = cudaMemset(arena_, 0x5A, arena_bytes); status != cudaSuccess) {
        cudaFree(arena_);
        cuda_check(status, "cudaMemset");
      }
    } else {
      host_arena_.assign(arena_bytes, std::byte{0x5A});
      host_slots_.assign(host_bytes, std::byte{0});
      arena_ = host_arena_.data();
      host_  = host_slots_.data();
    }
  }
  ~Memory() {
    if (gpu_) cudaFree(arena_);
  }
  Memory(const Memory&)            = delete;
  Memory& operator=(const Memory&) = delete;

  std::byte* arena() const noexcept { return arena_; }
  std::byte* host() const noexcept { return host_; }

  /// Contiguous copy ceiling, GB/s: {device to host, host to device} over `bytes`.
  std::pair<double, double> ceiling(std::size_t bytes, int reps, unsigned threads) const {
    auto measure = [&](auto&& copy) {
      std::vector<double> gbs;
      for (int r = 0; r <= reps; ++r) {
        const double start = now_seconds();
        copy();
        if (r > 0) gbs.push_back(double(bytes) / (now_seconds() - start) / 1e9);  // r 0: warm-up
      }
      return median(gbs);
    };
    if (!gpu_) {
      // As many threads as the host engine has, each copying one part.
      auto parallel = [&](std::byte* to, const std::byte* from) {
        std::vector<std::thread> workers;
        for (unsigned t = 0; t < threads; ++t) {
          const std::size_t begin = bytes * t / threads;
          const std::size_t end   = bytes * (t + 1) / threads;
          workers.emplace_back([=] { std::memcpy(to + begin, from + begin, end - begin); });
        }
        for (auto& w : workers)
          w.join();
      };
      return {measure([&] { parallel(host_, arena_); }), measure([&] { parallel(arena_, host_); })};
    }
    cudaStream_t stream = nullptr;
    cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    auto copy = [&](void* to, const void* from, cudaMemcpyKind kind) {
      cuda_check(cudaMemcpyAsync(to, from, bytes, kind, stream), "cudaMemcpyAsync");
      cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    };
    const double d2h = measure([&] { copy(host_, arena_, cudaMemcpyDeviceToHost); });
    const double h2d = measure([&] { copy(arena_, host_, cudaMemcpyHostToDevice); });
    cudaStreamDestroy(stream);
    return {d2h, h2d};
  }

 private:
  bool gpu_;
  std::byte* arena_{nullptr};
  std::byte* host_{nullptr};
  std::unique_ptr<transfer::PinnedHostPool> pool_;
  std::vector<std::byte> host_arena_;
  std::vector<std::byte> host_slots_;
};

}  // namespace

int run_offload_bench(const OffloadOptions& options) {
  const replay::Trace trace  = replay::load_trace(options.trace);
  const std::size_t wanted   = options.requests != 0 ? options.requests
                               : options.quick       ? std::size_t{3000}
                                                     : trace.requests.size();
  const std::size_t requests = std::min(wanted, trace.requests.size());
  std::size_t longest        = 1;
  std::size_t references     = 0;
  std::unordered_set<BlockHash> distinct;
  for (std::size_t r = 0; r < requests; ++r) {
    longest = std::max(longest, trace.requests[r].hashes.size());
    references += trace.requests[r].hashes.size();
    distinct.insert(trace.requests[r].hashes.begin(), trace.requests[r].hashes.end());
  }
  // A percentage is of the blocks the replayed requests name (all of them without --quick).
  const std::size_t slots = replay::parse_capacity(options.capacity, distinct.size());

  std::string why;
  const bool gpu = !options.cpu && transfer::cuda_device_available(&why);

  // FlashAttention-like: K and V per layer, `page` bytes each; 2 x longest request blocks.
  const std::size_t gpu_blocks = 2 * longest;
  const std::size_t tensors    = 2 * options.layers;
  const std::size_t block      = tensors * options.page;
  Memory memory{gpu, tensors * gpu_blocks * options.page, slots * block, block, options.device};
  std::vector<KvTensor> kv;
  for (std::size_t t = 0; t < tensors; ++t) {
    kv.push_back({memory.arena() + t * gpu_blocks * options.page,
                  options.page,
                  options.page,
                  static_cast<std::uint32_t>(t / 2)});
  }
  const KvLayout layout{kv, gpu_blocks};
  auto offloader = make_offloader(options.policy,
                                  layout,
                                  HostSlots{memory.host(), block, slots},
                                  {.device = options.device, .force_host = options.cpu});

  // Why the host engine runs, once, in the user's terms (not "force_host is set" when the user
  // asked for nothing). A driver that is there but unusable made make_offloader throw above.
  if (gpu) {
    std::printf("kvoffload-bench offload on: %s\n", offloader->engine().description().c_str());
  } else {
    std::printf("kvoffload-bench offload: %s: using the host engine (memcpy between host buffers: "
                "not GPU figures)\n",
                options.cpu ? "--cpu was given" : why.c_str());
  }
  std::printf(
      "trace %s: %zu requests, %zu block references; policy %s, %zu host slots of %zu "
      "bytes (%zu layers x K/V x %zu B)\n",
      options.trace.c_str(),
      requests,
      references,
      options.policy.c_str(),
      slots,
      block,
      options.layers,
      options.page);

  std::size_t loaded = 0;
  std::size_t stored = 0;
  std::size_t failed = 0;
  std::unordered_set<JobId> running;
  std::vector<JobId> jobs_of_half[2];
  double inside = 0;  // seconds inside Offloader calls that do not wait
  auto finished = [&](const FinishedJob& done) {
    running.erase(done.job);
    failed += done.ok ? 0 : 1;
  };
  std::vector<BlockId> blocks(longest);
  const double start = now_seconds();
  for (std::size_t r = 0; r < requests; ++r) {
    const std::vector<BlockHash>& hashes = trace.requests[r].hashes;
    std::vector<JobId>& jobs             = jobs_of_half[r % 2];
    for (JobId job : jobs) {
      if (running.contains(job)) finished(offloader->wait(job));
    }
    jobs.clear();
    for (std::size_t i = 0; i < hashes.size(); ++i)
      blocks[i] = static_cast<BlockId>((r % 2) * longest + i);
    const std::span<const BlockId> mine{blocks.data(), hashes.size()};

    const double call     = now_seconds();
    const std::size_t hit = offloader->lookup(hashes).value_or(0);
    offloader->touch(hashes);
    if (const auto job = offloader->load(std::span{hashes}.first(hit), mine.first(hit))) {
      running.insert(*job);
      jobs.push_back(*job);
      loaded += hit;
    }
    const StoreTicket ticket = offloader->store(std::span{hashes}.subspan(hit), mine.subspan(hit));
    if (ticket.outcome == StoreTicket::Outcome::kSubmitted) {
      running.insert(ticket.job);
      jobs.push_back(ticket.job);
      stored += ticket.stored.size();
    }
    for (const FinishedJob& done : offloader->poll())
      finished(done);
    inside += now_seconds() - call;
  }
  for (const FinishedJob& done : offloader->wait_all())
    finished(done);
  const double wall = now_seconds() - start;
  if (failed > 0) throw std::runtime_error(std::to_string(failed) + " jobs failed");

  const double loaded_bytes = double(loaded) * double(block);
  const double stored_bytes = double(stored) * double(block);
  const transfer::TransferEngineOptions defaults{};
  const auto [d2h, h2d] = memory.ceiling(std::min<std::size_t>(slots, gpu_blocks) * block,
                                         options.quick ? 3 : 5,
                                         defaults.host_threads);
  // The ceiling's time for the same bytes with stores and loads fully overlapped (the engine
  // runs them on separate streams): the shortest time possible, so the ratio is not flattered.
  const double ideal    = std::max(stored_bytes / (d2h * 1e9), loaded_bytes / (h2d * 1e9));
  const ManagerStats st = offloader->manager().stats();
  std::printf("\n%-34s %14s\n", "figure", "value");
  std::printf(
      "%-34s %14.4f\n", "hit rate (blocks loaded / refs)", double(loaded) / double(references));
  std::printf("%-34s %14zu\n", "blocks loaded", loaded);
  std::printf("%-34s %14zu\n", "blocks stored", stored);
  std::printf("%-34s %14llu\n",
              "blocks declined by the policy",
              static_cast<unsigned long long>(st.stores_declined));
  std::printf("%-34s %14llu\n", "blocks evicted", static_cast<unsigned long long>(st.evictions));
  std::printf("%-34s %14.3f\n", "GB moved (loads + stores)", (loaded_bytes + stored_bytes) / 1e9);
  std::printf("%-34s %14.3f\n", "wall seconds", wall);
  std::printf("%-34s %14.2f\n", "GB/s moved", (loaded_bytes + stored_bytes) / wall / 1e9);
  std::printf("%-34s %8.2f / %.2f\n", "ceiling GB/s store / load", d2h, h2d);
  std::printf("%-34s %14.3f\n", "ceiling time / wall", ideal / wall);
  std::printf("%-34s %14.2f\n", "host us per request in calls", inside / double(requests) * 1e6);
  std::printf(
      "\nceiling = one contiguous %s of %zu blocks each way, measured in this run; its "
      "time for the same bytes with both directions overlapped, over the wall time.\n",
      gpu ? "cudaMemcpyAsync" : "memcpy split over the host engine's threads",
      std::min<std::size_t>(slots, gpu_blocks));
  std::printf(
      "Counts may differ by a few blocks between runs: a request's stores still run while the "
      "next request looks up, and a block whose store has not landed yet is a miss then "
      "(pending), so job timing decides a few hits and what is stored after them.\n");

  if (!options.json.empty()) {
    std::ofstream out{options.json};
    out << "{\"device\": \"" << json_escape(gpu ? offloader->engine().description() : "host engine")
        << "\", \"host_fallback\": " << (gpu ? "false" : "true") << ", \"policy\": \""
        << json_escape(options.policy) << "\", \"slots\": " << slots
        << ", \"block_bytes\": " << block << ", \"requests\": " << requests
        << ", \"references\": " << references << ", \"blocks_loaded\": " << loaded
        << ", \"blocks_stored\": " << stored << ", \"wall_seconds\": " << wall
        << ", \"gbs_moved\": " << (loaded_bytes + stored_bytes) / wall / 1e9
        << ", \"ceiling_gbs_store\": " << d2h << ", \"ceiling_gbs_load\": " << h2d
        << ", \"ceiling_time_over_wall\": " << ideal / wall
        << ", \"host_us_per_request\": " << inside / double(requests) * 1e6 << "}\n";
    if (!out) throw std::runtime_error("cannot write " + options.json);
    std::printf("wrote %s\n", options.json.c_str());
  }
  return 0;
}

}  // namespace kvoffload::bench
