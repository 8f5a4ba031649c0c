/**
 * @file pinned_host_pool.hpp
 * @brief Pinned host memory allocated fast: mmap, parallel pre-touch, chunked registration.
 */
#pragma once

#include <cstddef>

namespace kvoffload::transfer {

/// Options of a PinnedHostPool.
struct PinnedHostPoolOptions {
  std::size_t bytes{0};  ///< size of the pool (rounded up to whole pages)
  unsigned threads{0};   ///< threads touching and registering; 0 = hardware threads
  /// Registration granule: one cudaHostRegister per chunk (one of hundreds of GiB fails).
  /// Rounded down to a multiple of align_bytes so no slot straddles two registrations.
  std::size_t register_chunk_bytes{std::size_t{1} << 30};
  std::size_t align_bytes{0};  ///< slot size to keep whole inside a chunk (0: none)
  bool huge_pages{true};       ///< madvise(MADV_HUGEPAGE) before touching
  /// Register with CUDA when a device is usable (cuda_environment() says kUsable); with no
  /// NVIDIA driver or GPU the pool stays unregistered (registered() is false), for the host
  /// engine. false: mmap + touch only, always.
  bool register_with_cuda{true};
  int device{0};  ///< device whose context registers (and unregisters) the memory
  /// Place the pages on `device`'s host NUMA node (cudaDevAttrHostNumaId) before touching them,
  /// when the machine has several nodes and the pool registers with CUDA.
  bool bind_numa{true};
};

/**
 * @brief An mmap'ed region, touched by several threads and registered with the CUDA driver
 * in chunks (portable and mapped), unregistered (on its device, whatever the destroying
 * thread's current device) and unmapped on destruction. Move-only.
 */
class PinnedHostPool {
 public:
  /**
   * @brief Allocate, touch and (optionally) register.
   * @throws logic_error when bytes is 0
   * @throws runtime_error when mmap or a registration fails (naming the bytes of the failed
   *         registration; nothing is left allocated), or when register_with_cuda is set and a
   *         driver is installed but unusable (cuda_environment() says kUnusable)
   */
  explicit PinnedHostPool(const PinnedHostPoolOptions& options);
  ~PinnedHostPool();
  PinnedHostPool(PinnedHostPool&& other) noexcept;
  PinnedHostPool& operator=(PinnedHostPool&& other) noexcept;
  PinnedHostPool(const PinnedHostPool&)            = delete;
  PinnedHostPool& operator=(const PinnedHostPool&) = delete;

  [[nodiscard]] std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return bytes_; }
  /// True when the pool is registered with CUDA (pinned and mapped).
  [[nodiscard]] bool registered() const noexcept { return registered_chunk_bytes_ != 0; }
  /// True when madvise(MADV_HUGEPAGE) was accepted.
  [[nodiscard]] bool huge_pages() const noexcept { return huge_pages_; }
  /// NUMA node the pages were placed on (bind_numa), or -1 when not placed (one node, no
  /// registration, or the kernel refused).
  [[nodiscard]] int numa_node() const noexcept { return numa_node_; }
  /// Seconds spent in mmap + touching, and in registration.
  [[nodiscard]] double touch_seconds() const noexcept { return touch_seconds_; }
  [[nodiscard]] double register_seconds() const noexcept { return register_seconds_; }

 private:
  void release() noexcept;

  std::byte* data_{nullptr};
  std::size_t bytes_{0};
  std::size_t registered_chunk_bytes_{0};
  bool huge_pages_{false};
  int device_{0};
  int numa_node_{-1};
  double touch_seconds_{0};
  double register_seconds_{0};
};

}  // namespace kvoffload::transfer
