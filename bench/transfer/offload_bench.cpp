// kvoffload-bench offload: a request trace end to end through an Offloader, moving real bytes.
//
// Per request, as a serving runtime would: lookup + touch, load the ready prefix into GPU
// blocks, store the rest (evicting as the policy says), confirm finished jobs. A request's GPU
// blocks alternate between two halves of the KV cache, so its jobs overlap the next request's;
// before a half is reused, the jobs that used it are waited for. Reports the bytes moved per
// second of wall time next to a contiguous-copy ceiling measured in the same run, and the host
// time spent inside Offloader calls.
//
// With --disk DIR the Offloader has a disk tier (host + disk, a tiered spec): hits are split by
// where the block was at lookup, a lookup answered "retry later" is retried after a poll (a
// runtime's next step), the bytes per medium come with their GB/s, and on the host engine every
// loaded byte is checked against the pattern its store wrote. --restart also replays the second
// half of the trace after re-creating the Offloader on the same (persistent) directory, next
// to a cold start on an empty one.
#include "offload_bench.hpp"

#include "common.hpp"
#include "replay/replay.hpp"
#include "replay/trace.hpp"
#include "report.hpp"

#include <kvoffload/offloader.hpp>
#include <kvoffload/tiered_manager.hpp>
#include <kvoffload/transfer/transfer.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
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

/// Every byte of a block's pages gets a word of a sequence seeded by its hash and tensor, so a
/// load that brought back another block's bytes, stale bytes or a torn copy is caught. Host
/// memory only (the host engine).
class Pattern {
 public:
  Pattern(const KvLayout& layout, std::size_t page) : layout_{layout}, page_{page} {}

  void write(BlockId block, BlockHash hash) const {
    for_pages(block, hash, [](std::uint64_t* words, std::size_t n, std::uint64_t seed) {
      for (std::size_t i = 0; i < n; ++i)
        words[i] = seed + i * 0x9E3779B97F4A7C15ULL;
    });
  }
  void poison(BlockId block) const {
    for_pages(block, 0, [](std::uint64_t* words, std::size_t n, std::uint64_t) {
      std::memset(words, 0xA5, n * sizeof(std::uint64_t));
    });
  }
  [[nodiscard]] bool holds(BlockId block, BlockHash hash) const {
    bool ok = true;
    for_pages(block, hash, [&](std::uint64_t* words, std::size_t n, std::uint64_t seed) {
      for (std::size_t i = 0; i < n && ok; ++i)
        ok = words[i] == seed + i * 0x9E3779B97F4A7C15ULL;
    });
    return ok;
  }

 private:
  template <typename Visit>
  void for_pages(BlockId block, BlockHash hash, Visit&& visit) const {
    for (std::size_t t = 0; t < layout_.tensors().size(); ++t) {
      const transfer::KvTensor& tensor = layout_.tensors()[t];
      auto* words = reinterpret_cast<std::uint64_t*>(tensor.base + static_cast<std::size_t>(block) *
                                                                       tensor.block_stride_bytes);
      visit(words, page_ / sizeof(std::uint64_t), (hash * 0xBF58476D1CE4E5B9ULL) ^ (t + 1));
    }
  }
  const KvLayout& layout_;
  std::size_t page_;
};

/// What one replay of a range of requests did.
struct Replayed {
  std::size_t references{0}, loaded{0}, stored{0}, failed{0};
  std::size_t host_hits{0}, disk_hits{0};  ///< loaded blocks by where they were at lookup
  std::size_t retries{0};                  ///< lookups answered "retry later"
  std::size_t verified{0}, wrong{0};       ///< loaded blocks checked, and found wrong
  double inside{0};                        ///< seconds inside Offloader calls that do not wait
  double checking{0};                      ///< seconds writing and checking patterns
  double wall{0};
};

/// Requests [first, first + count) through `offloader`, as a serving runtime would.
Replayed replay_requests(Offloader& offloader,
                         const replay::Trace& trace,
                         std::size_t first,
                         std::size_t count,
                         std::size_t longest,
                         const Pattern* pattern) {
  const auto* tiered = dynamic_cast<const TieredOffloadingManager*>(&offloader.manager());
  Replayed out;
  std::unordered_set<JobId> running;
  std::unordered_map<JobId, std::pair<std::vector<BlockHash>, std::vector<BlockId>>> loads;
  std::vector<JobId> jobs_of_half[2];
  auto finished = [&](const FinishedJob& done) {
    running.erase(done.job);
    out.failed += done.ok ? 0 : 1;
    const auto it = loads.find(done.job);
    if (it == loads.end() || pattern == nullptr) return;
    const double start = now_seconds();
    for (std::size_t i = 0; i < it->second.first.size(); ++i) {
      out.wrong += pattern->holds(it->second.second[i], it->second.first[i]) ? 0 : 1;
      ++out.verified;
    }
    loads.erase(it);
    out.checking += now_seconds() - start;
  };
  std::vector<BlockId> blocks(longest);
  const double start = now_seconds();
  for (std::size_t r = first; r < first + count; ++r) {
    const std::vector<BlockHash>& hashes = trace.requests[r].hashes;
    out.references += hashes.size();
    std::vector<JobId>& jobs = jobs_of_half[r % 2];
    for (JobId job : jobs) {
      if (running.contains(job)) finished(offloader.wait(job));
    }
    jobs.clear();
    for (std::size_t i = 0; i < hashes.size(); ++i)
      blocks[i] = static_cast<BlockId>((r % 2) * longest + i);
    const std::span<const BlockId> mine{blocks.data(), hashes.size()};

    std::vector<std::optional<std::uint32_t>> where;
    if (tiered != nullptr) where = tiered->lookup_tiers(hashes);
    double call                      = now_seconds();
    std::optional<std::size_t> ready = offloader.lookup(hashes);
    while (!ready) {  // a block on its way up from disk: the runtime's next steps
      ++out.retries;
      for (const FinishedJob& done : offloader.poll())
        finished(done);
      std::this_thread::yield();
      ready = offloader.lookup(hashes);
    }
    const std::size_t hit = *ready;
    out.inside += now_seconds() - call;
    for (std::size_t i = 0; i < hit; ++i)
      ++(tiered != nullptr && where[i] != std::optional<std::uint32_t>{0} ? out.disk_hits
                                                                          : out.host_hits);
    if (pattern != nullptr) {
      const double fill = now_seconds();
      for (std::size_t i = 0; i < hashes.size(); ++i) {
        if (i < hit) {
          pattern->poison(mine[i]);
        } else {
          pattern->write(mine[i], hashes[i]);
        }
      }
      out.checking += now_seconds() - fill;
    }
    call = now_seconds();
    offloader.touch(hashes);
    if (const auto job = offloader.load(std::span{hashes}.first(hit), mine.first(hit))) {
      running.insert(*job);
      jobs.push_back(*job);
      out.loaded += hit;
      if (pattern != nullptr) {
        loads.emplace(*job,
                      std::pair{std::vector<BlockHash>(hashes.begin(), hashes.begin() + hit),
                                std::vector<BlockId>(mine.begin(), mine.begin() + hit)});
      }
    }
    const StoreTicket ticket = offloader.store(std::span{hashes}.subspan(hit), mine.subspan(hit));
    if (ticket.outcome == StoreTicket::Outcome::kSubmitted) {
      running.insert(ticket.job);
      jobs.push_back(ticket.job);
      out.stored += ticket.stored.size();
    }
    const auto polled = offloader.poll();
    out.inside += now_seconds() - call;
    for (const FinishedJob& done : polled)
      finished(done);
  }
  for (const FinishedJob& done : offloader.wait_all())
    finished(done);
  out.wall = now_seconds() - start;
  return out;
}

/// Why the host engine runs, once, in the user's terms (not "force_host is set" when the user
/// asked for nothing). A driver that is there but unusable made make_offloader throw before.
void print_engine(
    const Offloader& offloader, bool gpu, bool cpu, const std::string& why, const char* more) {
  if (gpu) {
    std::printf("kvoffload-bench offload on: %s\n", offloader.engine().description().c_str());
  } else {
    std::printf(
        "kvoffload-bench offload: %s: using the host engine (memcpy between host buffers: "
        "not GPU figures)%s\n",
        cpu ? "--cpu was given" : why.c_str(),
        more);
  }
}

/// A fresh directory under `parent` for the store's files, removed again at the end.
class ScratchDirectory {
 public:
  ScratchDirectory(const std::string& parent, const std::string& name)
      : path_{std::filesystem::path{parent} / ("kvoffload-bench-" + name)} {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDirectory(const ScratchDirectory&)            = delete;
  ScratchDirectory& operator=(const ScratchDirectory&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

void print_replayed(const char* name, const Replayed& r, const OffloaderStats& st) {
  const double refs = double(r.references);
  std::printf("%-28s %8.4f %8.4f %8.4f %9zu %9llu %9llu %8zu %8.2f\n",
              name,
              double(r.loaded) / refs,
              double(r.host_hits) / refs,
              double(r.disk_hits) / refs,
              r.retries,
              static_cast<unsigned long long>(st.demotions_dropped),
              static_cast<unsigned long long>(st.blocks_recovered),
              r.wrong,
              r.wall);
}

/// --disk: the trace through a host + disk Offloader (see the file comment).
int run_host_and_disk(const OffloadOptions& options,
                      const replay::Trace& trace,
                      std::size_t requests,
                      std::size_t longest,
                      std::size_t distinct,
                      std::size_t host_slots,
                      const KvLayout& layout,
                      Memory& memory,
                      bool gpu,
                      const std::string& why) {
  const std::string spec   = options.policy == OffloadOptions{}.policy ? "tiered" : options.policy;
  const std::size_t block  = layout.host_slot_bytes();
  const std::size_t wanted = replay::parse_capacity(options.disk_capacity, distinct);
  const std::size_t slot_bytes = (block + 4095) / 4096 * 4096;
  const Pattern pattern{layout, options.page};
  const Pattern* check = gpu ? nullptr : &pattern;  // device memory cannot be checked here
  auto open            = [&](const std::filesystem::path& dir, bool persistent) {
    DiskTierOptions disk{
                   .store         = {.directories      = {dir},
                                     .capacity_bytes   = wanted * slot_bytes,
                                     .persistent       = persistent,
                                     .direct_io        = !options.disk_buffered,
                                     .completion_delay = std::chrono::microseconds{options.disk_delay_us}},
                   .max_disk_jobs = options.max_disk_jobs};
    return make_offloader(
        spec, layout, host_slots, disk, {.device = options.device, .force_host = options.cpu});
  };
  ScratchDirectory main_dir{options.disk_dir, "main"};
  auto offloader                   = open(main_dir.path(), false);
  const storage::BlockStore& store = *offloader->block_store();
  print_engine(*offloader, gpu, options.cpu, why, "; every loaded byte is checked");
  std::printf("disk tier: %s\n", store.description().c_str());
  const std::string delay =
      options.disk_delay_us > 0
          ? ", each disk job delayed " + std::to_string(options.disk_delay_us) + " us"
          : "";
  std::printf(
      "trace %s: %zu requests (%zu distinct blocks); spec %s; %zu host slots + %zu disk "
      "slots of %zu bytes (%zu layers x K/V x %zu B); at most %zu disk jobs in flight%s\n",
      options.trace.c_str(),
      requests,
      distinct,
      spec.c_str(),
      host_slots,
      store.num_slots(),
      block,
      options.layers,
      options.page,
      options.max_disk_jobs,
      delay.c_str());
  const std::size_t half = requests / 2;
  const Replayed first   = replay_requests(*offloader, trace, 0, half, longest, check);
  const Replayed second = replay_requests(*offloader, trace, half, requests - half, longest, check);
  const OffloaderStats st             = offloader->stats();
  const storage::BlockStoreStats disk = store.stats();
  const double wall                   = first.wall + second.wall;
  const double checking               = first.checking + second.checking;
  const std::size_t refs              = first.references + second.references;
  const std::size_t loaded            = first.loaded + second.loaded;
  const std::size_t wrong             = first.wrong + second.wrong;
  const std::size_t failed            = first.failed + second.failed;
  const double moving = wall - checking;  // the patterns' cost is the bench's, not the path's
  auto count          = [](std::uint64_t n) { return static_cast<unsigned long long>(n); };
  std::printf("\n%-40s %14s\n", "figure", "value");
  std::printf("%-40s %14.4f\n", "hit rate (blocks loaded / refs)", double(loaded) / double(refs));
  std::printf("%-40s %14.4f\n",
              "  on the host at lookup",
              double(first.host_hits + second.host_hits) / double(refs));
  std::printf("%-40s %14.4f\n",
              "  on disk at lookup (brought up)",
              double(first.disk_hits + second.disk_hits) / double(refs));
  std::printf("%-40s %14.4f\n",
              "second half's hit rate (no restart)",
              double(second.loaded) / double(second.references));
  std::printf("%-40s %14zu\n", "lookups answered retry later", first.retries + second.retries);
  std::printf("%-40s %14zu / %zu\n",
              "loaded blocks checked / wrong",
              first.verified + second.verified,
              wrong);
  std::printf("%-40s %14llu\n", "demotions written", count(st.demotions));
  std::printf("%-40s %14llu\n", "demotions dropped (disk busy)", count(st.demotions_dropped));
  std::printf("%-40s %14llu\n", "blocks read up (prefetch/promotion)", count(st.promotions));
  std::printf("%-40s %14llu\n", "stores deferred behind a demotion", count(st.stores_deferred));
  std::printf(
      "%-40s %14llu\n", "lookups answered host part (disk busy)", count(st.lookups_disk_busy));
  std::printf("%-40s %14llu\n", "blocks lost (integrity)", count(st.blocks_lost));
  std::printf("%-40s %14.3f\n", "wall seconds (patterns excluded)", moving);
  std::printf("%-40s %8.2f / %.2f\n",
              "GPU<->host GB/s store / load",
              double(st.bytes_stored) / moving / 1e9,
              double(st.bytes_loaded) / moving / 1e9);
  std::printf("%-40s %8.2f / %.2f\n",
              "host<->disk GB/s write / read",
              double(st.bytes_written_disk) / moving / 1e9,
              double(st.bytes_read_disk) / moving / 1e9);
  std::printf("%-40s %8.2f / %.2f\n",
              "store's own count, GB/s write / read",
              double(disk.bytes_written) / moving / 1e9,
              double(disk.bytes_read) / moving / 1e9);
  const transfer::TransferEngineOptions defaults{};
  const auto [d2h, h2d] = memory.ceiling(std::min<std::size_t>(host_slots, 2 * longest) * block,
                                         options.quick ? 3 : 5,
                                         defaults.host_threads);
  std::printf("%-40s %8.2f / %.2f\n", "ceiling GB/s store / load (memcpy)", d2h, h2d);
  std::printf(
      "GB/s = bytes moved per second of the replay's wall time (both halves, pattern "
      "writing and checking subtracted), not per second of busy medium.\n");
  if (!options.json.empty()) {
    std::ofstream out{options.json};
    out << "{\"device\": \"" << json_escape(gpu ? offloader->engine().description() : "host engine")
        << "\", \"host_fallback\": " << (gpu ? "false" : "true") << ", \"policy\": \""
        << json_escape(spec) << "\", \"slots\": " << host_slots
        << ", \"disk_slots\": " << store.num_slots() << ", \"block_bytes\": " << block
        << ", \"requests\": " << requests << ", \"references\": " << refs
        << ", \"blocks_loaded\": " << loaded << ", \"hit_rate\": " << double(loaded) / double(refs)
        << ", \"host_hits\": " << first.host_hits + second.host_hits
        << ", \"disk_hits\": " << first.disk_hits + second.disk_hits
        << ", \"demotions\": " << st.demotions << ", \"promotions\": " << st.promotions
        << ", \"blocks_wrong\": " << wrong << ", \"jobs_failed\": " << failed
        << ", \"wall_seconds\": " << moving << ", \"ceiling_gbs_store\": " << d2h
        << ", \"ceiling_gbs_load\": " << h2d << "}\n";
    if (!out) throw std::runtime_error("cannot write " + options.json);
    std::printf("wrote %s\n", options.json.c_str());
  }
  int status = failed == 0 && wrong == 0 ? 0 : 1;
  if (options.restart) {
    // The first half on a persistent store; that Offloader then ends (host memory gone, the
    // disk stays) and a new one opens the same directory for the second half.
    offloader.reset();
    ScratchDirectory warm_dir{options.disk_dir, "warm"};
    ScratchDirectory cold_dir{options.disk_dir, "cold"};
    {
      auto before = open(warm_dir.path(), true);
      (void)replay_requests(*before, trace, 0, half, longest, check);  // patterns stored
    }
    auto recovered               = open(warm_dir.path(), true);
    const OffloaderStats at_open = recovered->stats();
    const Replayed warm = replay_requests(*recovered, trace, half, requests - half, longest, check);
    const OffloaderStats warm_st = recovered->stats();
    recovered.reset();
    auto cold            = open(cold_dir.path(), false);
    const Replayed fresh = replay_requests(*cold, trace, half, requests - half, longest, check);
    const OffloaderStats cold_st = cold->stats();
    std::printf("\nrestart after request %zu of %zu: the second half's figures\n", half, requests);
    std::printf("%-28s %8s %8s %8s %9s %9s %9s %8s %8s\n",
                "run",
                "hit",
                "host",
                "disk",
                "retries",
                "dropped",
                "recovered",
                "wrong",
                "wall s");
    print_replayed("no restart", second, st);
    print_replayed("restart, disk recovered", warm, warm_st);
    print_replayed("cold start (empty disk)", fresh, cold_st);
    std::printf("blocks ready on disk when the restarted Offloader opened: %llu\n",
                count(at_open.blocks_recovered));
    if (warm.wrong + fresh.wrong + warm.failed + fresh.failed > 0) status = 1;
  }
  if (failed > 0) std::printf("FAILED: %zu jobs failed\n", failed);
  if (wrong > 0) std::printf("FAILED: %zu loaded blocks held wrong bytes\n", wrong);
  return status;
}

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
  if (!options.disk_dir.empty()) {
    return run_host_and_disk(
        options, trace, requests, longest, distinct.size(), slots, layout, memory, gpu, why);
  }
  auto offloader = make_offloader(options.policy,
                                  layout,
                                  HostSlots{memory.host(), block, slots},
                                  {.device = options.device, .force_host = options.cpu});

  print_engine(*offloader, gpu, options.cpu, why, "");
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

  const Replayed run       = replay_requests(*offloader, trace, 0, requests, longest, nullptr);
  const std::size_t loaded = run.loaded;
  const std::size_t stored = run.stored;
  const double inside      = run.inside;
  const double wall        = run.wall;
  if (run.failed > 0) throw std::runtime_error(std::to_string(run.failed) + " jobs failed");

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
