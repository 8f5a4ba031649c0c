// The benchmark's GPU sections: bandwidth per chunk size and method next to the contiguous
// ceiling, small-batch latency, both directions at once, the SM-budget sweep, the slowdown each
// method causes to a compute kernel beside it, and the time to pin host memory.
#include "common.hpp"
#include "report.hpp"

#include <cuda_runtime.h>

#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace kvoffload::bench {

using namespace kvoffload::transfer;

namespace {

#define BENCH_CUDA(call)                                                            \
  do {                                                                              \
    const cudaError_t e_ = (call);                                                  \
    if (e_ != cudaSuccess)                                                          \
      throw std::runtime_error(std::string{#call} + ": " + cudaGetErrorString(e_)); \
  } while (0)

/// A compute-bound kernel: four independent FMA chains per thread, no memory traffic.
__global__ void __launch_bounds__(256) fma_burn(float* out, int iterations) {
  float a = threadIdx.x * 1e-3f, b = 1.0f, c = 0.5f, d = 0.25f;
  for (int i = 0; i < iterations; ++i) {
    a = fmaf(a, 0.9999f, 1e-4f);
    b = fmaf(b, 0.9998f, 2e-4f);
    c = fmaf(c, 0.9997f, 3e-4f);
    d = fmaf(d, 0.9996f, 4e-4f);
  }
  if (a + b + c + d == 42.0f) out[blockIdx.x * blockDim.x + threadIdx.x] = a;  // keep the chains
}

/// A job that failed must fail the run: its time would otherwise read as inflated GB/s.
void expect_done(const JobStatus& status) {
  if (status.state != JobState::kDone) {
    throw std::runtime_error(std::string{"a benchmark job failed ("} + to_string(status.method) +
                             "): " + status.error);
  }
}

struct DeviceMemory {
  std::byte* data{nullptr};
  explicit DeviceMemory(std::size_t bytes) { BENCH_CUDA(cudaMalloc(&data, bytes)); }
  ~DeviceMemory() { cudaFree(data); }
  DeviceMemory(const DeviceMemory&)            = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
};

struct Stream {
  cudaStream_t stream{nullptr};
  Stream() { BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(stream); }
  Stream(const Stream&)            = delete;
  Stream& operator=(const Stream&) = delete;
};

/// A device KV arena of `pool_blocks` blocks x 32 layers, `blocks` pinned host slots, an engine.
struct Setup {
  std::size_t chunk, blocks, pool_blocks;
  DeviceMemory arena;
  PinnedHostPool host;
  std::unique_ptr<TransferEngine> engine;
  Setup(std::size_t chunk_, std::size_t blocks_, int device)
      : chunk{chunk_},
        blocks{blocks_},
        pool_blocks{blocks_ * 3 / 2},
        arena{pool_blocks * kLayers * chunk},
        host{
            {.bytes = blocks * kLayers * chunk, .align_bytes = kLayers * chunk, .device = device}} {
    BENCH_CUDA(cudaMemset(arena.data, 1, pool_blocks * kLayers * chunk));
    const KvLayout layout = layer_pools(arena.data, chunk, pool_blocks);
    engine                = make_transfer_engine(
        layout, {host.data(), layout.host_slot_bytes(), blocks}, {.device = device});
  }
  [[nodiscard]] double bytes(std::size_t n) const { return double(n * kLayers * chunk); }
  TransferRequest request(Direction d,
                          std::size_t n,
                          Method m,
                          std::uint64_t seed,
                          int budget = 0,
                          bool busy  = false) const {
    return {.direction  = d,
            .gpu_blocks = random_ids(n, pool_blocks, seed),
            .host_slots = random_ids(n, blocks, seed + 7),
            .method     = m,
            .sm_budget  = budget,
            .gpu_busy   = busy};
  }
};

/// GB/s of one contiguous cudaMemcpyAsync per direction (both: two streams at once, total).
double ceiling_gbs(Setup& s, const std::string& direction, int reps) {
  const std::size_t n = s.blocks * kLayers * s.chunk;
  Stream a, b;
  std::vector<double> gbs;
  for (int r = 0; r < reps + 1; ++r) {
    const double start = now_seconds();
    if (direction != "load") {
      BENCH_CUDA(cudaMemcpyAsync(s.host.data(), s.arena.data, n, cudaMemcpyDeviceToHost, a.stream));
    }
    if (direction != "store") {
      BENCH_CUDA(cudaMemcpyAsync(s.arena.data, s.host.data(), n, cudaMemcpyHostToDevice, b.stream));
    }
    BENCH_CUDA(cudaStreamSynchronize(a.stream));
    BENCH_CUDA(cudaStreamSynchronize(b.stream));
    const double moved = double(n) * (direction == "both" ? 2 : 1);
    if (r > 0) gbs.push_back(moved / (now_seconds() - start) / 1e9);  // r == 0: warm-up
  }
  return median(gbs);
}

const std::vector<Method> kMethods{
    Method::kKernel, Method::kStaged, Method::kBatchMemcpy, Method::kPerChunkMemcpy, Method::kAuto};

void bandwidth(Report& report, const Options& options) {
  const std::size_t op_bytes = options.quick ? (std::size_t{64} << 20) : (std::size_t{256} << 20);
  const int reps             = options.quick ? 3 : 5;
  std::uint64_t seed         = 1;
  for (std::size_t chunk : {std::size_t{656},
                            std::size_t{1000},
                            std::size_t{4096},
                            std::size_t{16384},
                            std::size_t{65536},
                            std::size_t{262144}}) {
    const std::size_t blocks = std::max<std::size_t>(64, op_bytes / (kLayers * chunk));
    Setup s{chunk, blocks, options.device};
    for (Direction d : {Direction::kStore, Direction::kLoad}) {
      const double ceiling = ceiling_gbs(s, to_string(d), reps);
      report.rows.push_back({"bandwidth",
                             "ceiling",
                             to_string(d),
                             chunk,
                             blocks,
                             ceiling,
                             "GB/s",
                             1.0,
                             "one contiguous cudaMemcpyAsync, same bytes"});
      for (Method m : kMethods) {
        // The per-chunk loop is the slow baseline: fewer repetitions keep the run short.
        const int n = m == Method::kPerChunkMemcpy ? 2 : reps;
        std::vector<double> gbs;
        timed_job(*s.engine, s.request(d, blocks, m, ++seed));  // warm-up
        for (int r = 0; r < n; ++r) {
          gbs.push_back(s.bytes(blocks) / timed_job(*s.engine, s.request(d, blocks, m, ++seed)) /
                        1e9);
        }
        const double value = median(gbs);
        report.rows.push_back({"bandwidth",
                               to_string(m),
                               to_string(d),
                               chunk,
                               blocks,
                               value,
                               "GB/s",
                               value / ceiling,
                               "32 layers, random blocks"});
      }
    }
  }
}

// Item 11's bound: a one-block job completes within the wire time of its bytes at the ceiling
// measured here (a contiguous D2H of the same pool) plus 6 us; 4 KiB and 16 KiB chunks.
void latency(Report& report, const Options& options) {
  std::uint64_t seed = 1000;
  for (const std::size_t chunk : {std::size_t{4096}, std::size_t{16384}}) {
    Setup s{chunk, 256, options.device};
    const double ceiling = ceiling_gbs(s, "store", 5);
    report.rows.push_back({"latency",
                           "ceiling",
                           "store",
                           chunk,
                           256,
                           ceiling,
                           "GB/s",
                           1.0,
                           "contiguous D2H of the pool: the wire rate of the latency bound"});
    const std::string shape = "32 x " + std::to_string(chunk / 1024) + " KiB per block";
    for (Method m :
         {Method::kKernel, Method::kStaged, Method::kBatchMemcpy, Method::kPerChunkMemcpy}) {
      for (std::size_t blocks : {1, 4, 16, 64}) {
        std::vector<double> us;
        std::vector<double> submit_us;  // host time inside submit() alone
        for (int r = 0; r < 41; ++r) {
          const TransferRequest request = s.request(Direction::kStore, blocks, m, ++seed);
          const double start            = now_seconds();
          const JobId id                = s.engine->submit(request);
          const double submitted        = now_seconds();
          const JobStatus status        = s.engine->wait(id);
          const double end              = now_seconds();
          expect_done(status);
          if (r > 0) {
            us.push_back(1e6 * (end - start));
            submit_us.push_back(1e6 * (submitted - start));
          }
        }
        report.rows.push_back({"latency",
                               to_string(m),
                               "store",
                               chunk,
                               blocks,
                               median(us),
                               "us",
                               0,
                               "submit to completion, " + shape + ", median of 40"});
        // Where the latency goes: the host's share (validation, launch, event record).
        report.rows.push_back({"submit_cost",
                               to_string(m),
                               "store",
                               chunk,
                               blocks,
                               median(submit_us),
                               "us",
                               0,
                               "host time inside submit(), same jobs, median of 40"});
      }
    }
  }
}

void bidirectional(Report& report, const Options& options) {
  const std::size_t blocks = options.quick ? 128 : 512;  // x 32 x 16 KiB = 64 / 256 MiB
  Setup s{16384, blocks, options.device};
  const double ceiling = ceiling_gbs(s, "both", 5);
  report.rows.push_back({"bidirectional",
                         "ceiling",
                         "both",
                         16384,
                         blocks,
                         ceiling,
                         "GB/s",
                         1.0,
                         "contiguous D2H + H2D on two streams"});
  std::uint64_t seed = 2000;
  for (Method m : {Method::kKernel, Method::kStaged, Method::kBatchMemcpy, Method::kAuto}) {
    std::vector<double> gbs;
    for (int r = 0; r < 6; ++r) {
      // Stores into the first half of the slots, loads from the second half.
      auto store = s.request(Direction::kStore, blocks / 2, m, ++seed);
      auto load  = s.request(Direction::kLoad, blocks / 2, m, ++seed);
      // Disjoint halves: stores read GPU blocks [0, n/2) into slots [0, n/2); loads write GPU
      // blocks [n/2, n) from slots [n/2, n).
      for (std::size_t i = 0; i < blocks / 2; ++i) {
        store.gpu_blocks[i] = static_cast<BlockId>(i);
        store.host_slots[i] = static_cast<BlockId>(i);
        load.gpu_blocks[i]  = static_cast<BlockId>(blocks / 2 + i);
        load.host_slots[i]  = static_cast<BlockId>(blocks / 2 + i);
      }
      const double start = now_seconds();
      const JobId a      = s.engine->submit(store);
      const JobId b      = s.engine->submit(load);
      expect_done(s.engine->wait(a));
      expect_done(s.engine->wait(b));
      if (r > 0) gbs.push_back(s.bytes(blocks) / (now_seconds() - start) / 1e9);
    }
    const double value = median(gbs);
    report.rows.push_back({"bidirectional",
                           to_string(m),
                           "both",
                           16384,
                           blocks,
                           value,
                           "GB/s",
                           value / ceiling,
                           "store + load at once, total"});
  }
}

void sm_budget(Report& report, const Options& options) {
  const std::size_t blocks = options.quick ? 128 : 512;
  Setup s{16384, blocks, options.device};
  std::uint64_t seed = 3000;
  for (Direction d : {Direction::kStore, Direction::kLoad}) {
    const double ceiling = ceiling_gbs(s, to_string(d), 5);
    for (int budget : {1, 2, 4, 8, 16, 32}) {
      std::vector<double> gbs;
      for (int r = 0; r < 5; ++r) {
        const double t =
            timed_job(*s.engine, s.request(d, blocks, Method::kKernel, ++seed, budget));
        if (r > 0) gbs.push_back(s.bytes(blocks) / t / 1e9);
      }
      const double value = median(gbs);
      report.rows.push_back({"sm_budget",
                             "kernel",
                             to_string(d),
                             16384,
                             blocks,
                             value,
                             "GB/s",
                             value / ceiling,
                             std::to_string(budget) + " CTAs"});
    }
  }
}

void interference(Report& report, const Options& options) {
  int sms = 0;
  BENCH_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, options.device));
  const std::size_t blocks = options.quick ? 128 : 512;  // 256 MiB per job at 16 KiB
  Setup s{16384, blocks, options.device};
  Stream compute;
  DeviceMemory sink{std::size_t{64} << 20};
  cudaEvent_t begin, end;
  BENCH_CUDA(cudaEventCreate(&begin));
  BENCH_CUDA(cudaEventCreate(&end));
  auto kernel_ms = [&](int ctas, int iterations) {
    BENCH_CUDA(cudaEventRecord(begin, compute.stream));
    static_cast<void>(cudaGetLastError());  // drop a stale "not ready" left by an event query
    fma_burn<<<ctas, 256, 0, compute.stream>>>(reinterpret_cast<float*>(sink.data), iterations);
    BENCH_CUDA(cudaGetLastError());
    BENCH_CUDA(cudaEventRecord(end, compute.stream));
    BENCH_CUDA(cudaEventSynchronize(end));
    float ms = 0;
    BENCH_CUDA(cudaEventElapsedTime(&ms, begin, end));
    return double(ms);
  };
  // Calibrate: the single-wave kernel (4 CTAs of 256 threads per SM) takes about 3 ms alone.
  const double probe   = kernel_ms(4 * sms, 1 << 14);
  const int iterations = std::max(1, int((1 << 14) * 3.0 / std::max(probe, 1e-3)));
  std::uint64_t seed   = 4000;
  struct Case {
    const char* name;
    Method method;
    int budget;
  };
  const std::vector<Case> cases{{"kernel", Method::kKernel, 4},
                                {"kernel", Method::kKernel, 16},
                                {"staged", Method::kStaged, 0},
                                {"batch", Method::kBatchMemcpy, 0},
                                {"auto", Method::kAuto, 0}};
  for (const auto& [wave, ctas] :
       {std::pair{"single-wave", 4 * sms}, std::pair{"multi-wave", 16 * sms}}) {
    std::vector<double> alone;
    for (int r = 0; r < 5; ++r)
      alone.push_back(kernel_ms(ctas, iterations));
    const double base = median(alone);
    report.rows.push_back(
        {"interference",
         "none",
         "-",
         16384,
         0,
         base,
         "ms",
         0,
         std::string{wave} + " FMA kernel alone, " + std::to_string(ctas) + " CTAs"});
    for (const Case& c : cases) {
      std::vector<double> slowdown, gbs;
      for (int r = 0; r < 5; ++r) {
        // Enough stores to outlast the kernel; it starts once they run.
        std::vector<JobId> jobs;
        const double start = now_seconds();
        for (int j = 0; j < 4; ++j) {
          jobs.push_back(s.engine->submit(
              s.request(Direction::kStore, blocks, c.method, ++seed, c.budget, /*busy=*/true)));
        }
        std::this_thread::sleep_for(std::chrono::microseconds(500));
        const double ms = kernel_ms(ctas, iterations);
        for (JobId id : jobs)
          expect_done(s.engine->wait(id));
        gbs.push_back(4 * s.bytes(blocks) / (now_seconds() - start) / 1e9);
        slowdown.push_back(100.0 * (ms / base - 1.0));
      }
      report.rows.push_back({"interference",
                             c.name,
                             "store",
                             16384,
                             blocks,
                             median(slowdown),
                             "%",
                             0,
                             std::string{wave} + " kernel slowdown; SM budget " +
                                 std::to_string(c.budget) + "; copy " +
                                 std::to_string(median(gbs)).substr(0, 5) + " GB/s"});
    }
  }
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
}

void pinning(Report& report, const Options& options) {
  const double gib = options.pin_gib >= 0 ? options.pin_gib : (options.quick ? 2.0 : 16.0);
  if (gib <= 0) return;
  const auto bytes = static_cast<std::size_t>(gib * double(std::size_t{1} << 30));
  {
    const double start = now_seconds();
    PinnedHostPool pool{{.bytes = bytes, .device = options.device}};
    const double total = now_seconds() - start;
    report.rows.push_back({"pinning",
                           "pool",
                           "-",
                           bytes,
                           0,
                           total,
                           "s",
                           0,
                           "mmap + parallel touch " +
                               std::to_string(pool.touch_seconds()).substr(0, 5) +
                               " s + chunked cudaHostRegister " +
                               std::to_string(pool.register_seconds()).substr(0, 5) + " s" +
                               (pool.huge_pages() ? ", huge pages" : ", no huge pages")});
  }
  {
    void* p            = nullptr;
    const double start = now_seconds();
    BENCH_CUDA(cudaHostAlloc(&p, bytes, cudaHostAllocPortable | cudaHostAllocMapped));
    const double total = now_seconds() - start;
    BENCH_CUDA(cudaFreeHost(p));
    report.rows.push_back({"pinning",
                           "cudaHostAlloc",
                           "-",
                           bytes,
                           0,
                           total,
                           "s",
                           0,
                           "one call, same size, same run"});
  }
}

}  // namespace

Report run_gpu_bench(const Options& options) {
  BENCH_CUDA(cudaSetDevice(options.device));
  cudaDeviceProp properties{};
  BENCH_CUDA(cudaGetDeviceProperties(&properties, options.device));
  Report report;
  report.device =
      std::string{properties.name} + ", " + std::to_string(properties.multiProcessorCount) + " SMs";
  std::printf("bandwidth...\n");
  bandwidth(report, options);
  std::printf("latency...\n");
  latency(report, options);
  std::printf("bidirectional...\n");
  bidirectional(report, options);
  std::printf("SM budget...\n");
  sm_budget(report, options);
  std::printf("interference...\n");
  interference(report, options);
  std::printf("pinning...\n");
  pinning(report, options);
  return report;
}

}  // namespace kvoffload::bench
