/**
 * @file types.hpp
 * @brief Value types shared by every offloading manager (the vLLM v1 contract).
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvoffload {

/// 64-bit identity of a KV block (the runtime's prefix-chained block hash).
using BlockHash = std::uint64_t;
/// Slot index inside one medium's storage (a host slot, a disk slot, ...).
using BlockId = std::int64_t;

/// Where a block's bytes live.
enum class Medium : std::uint8_t { kGpu, kCpu, kDisk };

/// @brief Human-readable name of a medium ("gpu", "cpu", "disk").
const char* to_string(Medium medium) noexcept;

/// Where to load from or store to: one slot id per block hash, in the caller's order.
struct LoadStoreSpec {
  Medium medium{Medium::kCpu};
  std::vector<BlockId> block_ids;
};

/// Result of a successful prepare_store.
struct PrepareStoreOutput {
  /// Hashes the caller must now write (input order, already-present hashes skipped).
  std::vector<BlockHash> block_hashes_to_store;
  /// Slots for block_hashes_to_store, index for index.
  LoadStoreSpec store_spec;
  /// Hashes evicted to make room, in eviction order.
  std::vector<BlockHash> block_hashes_evicted;
};

/// One change of the set of ready blocks, for a KV-event consumer (e.g. a router).
struct OffloadingEvent {
  std::vector<BlockHash> block_hashes;
  std::size_t block_size{0};  ///< as given at construction, carried unchanged
  Medium medium{Medium::kCpu};
  bool removed{false};  ///< true: removed or evicted; false: stored
};

/**
 * @brief Counters and gauges of a manager.
 *
 * Counters (cumulative, in blocks unless named otherwise) and gauges (current counts) are
 * read together under the manager's own consistency; `stats()` never changes state.
 */
struct ManagerStats {
  // Counters.
  std::uint64_t lookups{0};           ///< lookup() calls
  std::uint64_t lookup_blocks{0};     ///< hashes passed to lookup()
  std::uint64_t hits{0};              ///< hashes inside the ready prefix lookup() reported
  std::uint64_t misses{0};            ///< hashes past that prefix (lookup_blocks - hits)
  std::uint64_t stores{0};            ///< blocks allocated by prepare_store()
  std::uint64_t stores_completed{0};  ///< blocks made ready by complete_store(..., true)
  std::uint64_t stores_failed{0};     ///< pending blocks dropped by complete_store(..., false)
  std::uint64_t store_rejections{0};  ///< prepare_store() calls answered nullopt
  std::uint64_t stores_declined{0};   ///< new blocks a policy's admission chose not to store
  std::uint64_t evictions{0};         ///< blocks evicted by prepare_store()
  std::uint64_t loads{0};             ///< blocks referenced by prepare_load()
  // Gauges.
  std::size_t capacity{0};        ///< slots in total
  std::size_t pending{0};         ///< allocated, not yet completed
  std::size_t ready{0};           ///< ready, pinned or idle
  std::size_t pinned{0};          ///< ready with at least one load reference
  std::size_t evictable{0};       ///< ready and idle
  std::size_t free_slots{0};      ///< never used or freed
  std::size_t metadata_bytes{0};  ///< host memory the manager's bookkeeping holds
  std::size_t sketch_bytes{0};    ///< part of metadata_bytes in sketches / sampled statistics
};

}  // namespace kvoffload
