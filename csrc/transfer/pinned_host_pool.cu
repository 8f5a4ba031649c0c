#include "transfer/cuda_check.hpp"
#include "transfer/cuda_scope.hpp"
#include "transfer/numa.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/transfer/pinned_host_pool.hpp>
#include <kvoffload/transfer/transfer_engine.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace kvoffload::transfer {

namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Run body(i) for i in [0, count) on `threads` threads.
template <typename Body>
void parallel_for(std::size_t count, unsigned threads, Body body) {
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> workers;
  const unsigned n = static_cast<unsigned>(std::min<std::size_t>(threads, count));
  workers.reserve(n);
  for (unsigned t = 0; t < n; ++t) {
    workers.emplace_back([&] {
      for (std::size_t i = next++; i < count; i = next++)
        body(i);
    });
  }
  for (auto& w : workers)
    w.join();
}

}  // namespace

PinnedHostPool::PinnedHostPool(const PinnedHostPoolOptions& options) {
  KVO_EXPECTS(options.bytes > 0, "PinnedHostPool: bytes is 0");
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const unsigned threads =
      options.threads != 0 ? options.threads : std::max(1U, std::thread::hardware_concurrency());
  // Register only where a device is usable: with no driver or GPU the pool serves the host
  // engine; a driver that is there but unusable is an error worth saying (not a cryptic
  // cudaHostRegister failure).
  bool register_with_cuda = false;
  if (options.register_with_cuda) {
    const CudaEnvironment environment = cuda_environment();
    if (environment.availability == CudaAvailability::kUnusable) {
      KVO_FAIL("PinnedHostPool: cannot register with CUDA: " + environment.message);
    }
    register_with_cuda = environment.availability == CudaAvailability::kUsable;
  }
  device_ = options.device;
  const detail::LastErrorScope keep_callers_error;
  std::optional<int> numa_node;
  if (register_with_cuda && options.bind_numa) {
    int host_node = -1;
    if (cudaDeviceGetAttribute(&host_node, cudaDevAttrHostNumaId, options.device) != cudaSuccess)
      host_node = -1;  // older driver: today's behaviour
    numa_node = detail::numa_node_to_bind(host_node, detail::online_numa_nodes());
  }
  const auto start          = std::chrono::steady_clock::now();
  const std::size_t granule = options.huge_pages ? kHugePage : page;
  bytes_                    = (options.bytes + granule - 1) / granule * granule;
  // Over-allocate by one huge page and trim, so the region is huge-page aligned (THP needs it).
  const std::size_t mapped = bytes_ + (options.huge_pages ? kHugePage : 0);
  void* raw = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    KVO_FAIL("PinnedHostPool: mmap of " + std::to_string(mapped) +
             " bytes failed: " + std::strerror(errno));
  }
  auto* base  = static_cast<std::byte*>(raw);
  auto* begin = base;
  if (options.huge_pages) {
    begin = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(base) + kHugePage - 1) /
                                         kHugePage * kHugePage);
    if (begin > base) munmap(base, static_cast<std::size_t>(begin - base));
    const std::size_t tail = static_cast<std::size_t>(base + mapped - (begin + bytes_));
    if (tail > 0) munmap(begin + bytes_, tail);
    huge_pages_ = madvise(begin, bytes_, MADV_HUGEPAGE) == 0;
  }
  data_ = begin;
  // Before the first touch: the touching threads then allocate on the device's node.
  if (numa_node && detail::prefer_numa_node(data_, bytes_, *numa_node)) numa_node_ = *numa_node;
  // Touch every page from several threads: the kernel zeroes pages in parallel.
  constexpr std::size_t kTouchSlice = std::size_t{64} << 20;
  parallel_for((bytes_ + kTouchSlice - 1) / kTouchSlice, threads, [&](std::size_t i) {
    std::byte* from = data_ + i * kTouchSlice;
    std::byte* to   = std::min(from + kTouchSlice, data_ + bytes_);
    for (std::byte* p = from; p < to; p += page)
      *reinterpret_cast<volatile std::byte*>(p) = {};
  });
  touch_seconds_ = seconds_since(start);
  if (!register_with_cuda) return;

  // Registration chunks: page multiples, and multiples of align_bytes so no slot straddles two.
  const std::size_t unit  = options.align_bytes == 0 ? page : std::lcm(options.align_bytes, page);
  const std::size_t chunk = std::max(unit, options.register_chunk_bytes / unit * unit);
  const std::size_t count = (bytes_ + chunk - 1) / chunk;
  std::vector<cudaError_t> results(count, cudaSuccess);
  const auto length_of      = [&](std::size_t i) { return std::min(chunk, bytes_ - i * chunk); };
  const auto register_start = std::chrono::steady_clock::now();
  parallel_for(count, threads, [&](std::size_t i) {
    // Worker threads are ours: setting their device changes nothing of the caller's.
    cudaError_t error = cudaSetDevice(options.device);
    if (error == cudaSuccess) {
      error = cudaHostRegister(
          data_ + i * chunk, length_of(i), cudaHostRegisterPortable | cudaHostRegisterMapped);
    }
    results[i] = error;
    static_cast<void>(cudaGetLastError());  // this worker thread's own state
  });
  register_seconds_ = seconds_since(register_start);
  const auto failed =
      std::find_if(results.begin(), results.end(), [](cudaError_t e) { return e != cudaSuccess; });
  if (failed != results.end()) {
    const cudaError_t error    = *failed;
    const std::size_t failed_i = static_cast<std::size_t>(failed - results.begin());
    try {
      const detail::DeviceScope on_device{options.device};
      for (std::size_t i = 0; i < count; ++i) {
        if (results[i] == cudaSuccess) KVO_CUDA_TRY_NOTHROW(cudaHostUnregister(data_ + i * chunk));
      }
    } catch (const std::exception&) {
      // The device cannot even be set: nothing more to undo than the mapping.
    }
    munmap(data_, bytes_);
    data_ = nullptr;
    // The bytes of the registration that failed (the last chunk may be shorter than `chunk`).
    KVO_FAIL("PinnedHostPool: cudaHostRegister of chunk " + std::to_string(failed_i) + " (" +
             std::to_string(length_of(failed_i)) + " bytes at offset " +
             std::to_string(failed_i * chunk) + " of " + std::to_string(bytes_) +
             ") failed: " + cudaGetErrorName(error) + " (" + cudaGetErrorString(error) + ")");
  }
  registered_chunk_bytes_ = chunk;
}

void PinnedHostPool::release() noexcept {
  if (data_ == nullptr) return;
  if (registered_chunk_bytes_ != 0) {
    // On the pool's device: a thread with no device set would otherwise create (and keep) a
    // context on device 0. The scope restores the thread's own context afterwards.
    const detail::LastErrorScope keep_callers_error;
    try {
      const detail::DeviceScope on_device{device_};
      for (std::size_t offset = 0; offset < bytes_; offset += registered_chunk_bytes_) {
        KVO_CUDA_TRY_NOTHROW(cudaHostUnregister(data_ + offset));
      }
    } catch (const std::exception& e) {
      std::fprintf(
          stderr, "kvoffload: PinnedHostPool: %s; memory unmapped unregistered\n", e.what());
    }
  }
  munmap(data_, bytes_);
  data_                   = nullptr;
  bytes_                  = 0;
  registered_chunk_bytes_ = 0;
}

PinnedHostPool::~PinnedHostPool() {
  release();
}

PinnedHostPool::PinnedHostPool(PinnedHostPool&& other) noexcept
    : data_{std::exchange(other.data_, nullptr)},
      bytes_{std::exchange(other.bytes_, 0)},
      registered_chunk_bytes_{std::exchange(other.registered_chunk_bytes_, 0)},
      huge_pages_{other.huge_pages_},
      device_{other.device_},
      numa_node_{other.numa_node_},
      touch_seconds_{other.touch_seconds_},
      register_seconds_{other.register_seconds_} {}

PinnedHostPool& PinnedHostPool::operator=(PinnedHostPool&& other) noexcept {
  if (this != &other) {
    release();
    data_                   = std::exchange(other.data_, nullptr);
    bytes_                  = std::exchange(other.bytes_, 0);
    registered_chunk_bytes_ = std::exchange(other.registered_chunk_bytes_, 0);
    huge_pages_             = other.huge_pages_;
    device_                 = other.device_;
    numa_node_              = other.numa_node_;
    touch_seconds_          = other.touch_seconds_;
    register_seconds_       = other.register_seconds_;
  }
  return *this;
}

}  // namespace kvoffload::transfer
