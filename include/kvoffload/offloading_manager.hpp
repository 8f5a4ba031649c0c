/**
 * @file offloading_manager.hpp
 * @brief The manager contract (vLLM v1 `OffloadingManager`) and the built-in policies.
 *
 * A manager decides which KV blocks live in its medium and which to evict. It never moves
 * bytes: the caller copies into the slots that `prepare_store` hands out and reads from the
 * slots `prepare_load` returns, then confirms with `complete_store` / `complete_load`.
 *
 * ## Block states
 * - **Pending**: allocated by `prepare_store`, not yet completed. Not a hit, not loadable,
 *   not evictable.
 * - **Ready and idle**: a hit, loadable, evictable.
 * - **Ready and pinned**: each `prepare_load` adds one reference, each `complete_load`
 *   removes one. A hit, not evictable while referenced.
 *
 * ## Errors
 * A call that breaks a precondition throws `kvoffload::logic_error` naming the offending hash
 * and changes nothing. Managers are not thread-safe: call one from one thread at a time (or
 * through a thread-safe wrapper).
 *
 * ## Events
 * With events enabled, every change of the ready set is queued until `take_events()`; a caller
 * that enables them must take them regularly (the queue is not bounded).
 *
 * ## Duplicate hashes within one call
 * - `lookup`, `touch`: duplicates are looked up / touched as often as they appear.
 * - `prepare_load`: each occurrence adds one reference (and returns the slot again);
 *   `complete_load` removes one per occurrence and needs that many references.
 * - `prepare_store`: a hash is stored once; later occurrences are skipped like present hashes.
 * - `complete_store`: a repeated hash is handled once.
 */
#pragma once

#include <kvoffload/types.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace kvoffload {

/// @brief Abstract offloading manager (see the file comment for the state rules).
class OffloadingManager {
 public:
  virtual ~OffloadingManager() = default;

  /**
   * @brief Number of leading hashes that are ready (stops at the first absent or pending one).
   * Changes no recency; only the statistics. `nullopt` means "retry later" (never from LRU/ARC).
   */
  virtual std::optional<std::size_t> lookup(std::span<const BlockHash> hashes) = 0;

  /**
   * @brief Pin ready blocks for reading: one reference each; slot ids in input order.
   * @throws logic_error if a hash is absent or pending (names it); nothing changes then.
   */
  virtual LoadStoreSpec prepare_load(std::span<const BlockHash> hashes) = 0;

  /// @brief Mark blocks recently used, last hash first, so the first ends up most recent.
  /// Absent hashes are ignored.
  virtual void touch(std::span<const BlockHash> hashes) = 0;

  /// @brief Drop one reference per hash. @throws logic_error if a hash holds none.
  virtual void complete_load(std::span<const BlockHash> hashes) = 0;

  /**
   * @brief Allocate slots for the hashes not yet present, evicting idle blocks as needed.
   *
   * All or nothing: `nullopt` (and no change) when not enough blocks can be evicted. Blocks
   * named in this call are never evicted by it.
   */
  [[nodiscard]] virtual std::optional<PrepareStoreOutput> prepare_store(
      std::span<const BlockHash> hashes) = 0;

  /**
   * @brief Confirm (`success`) or abandon stores. On success every hash must be present
   * (@throws logic_error otherwise) and pending ones become ready; on failure pending ones
   * are removed and their slots freed, ready ones stay and absent ones are ignored.
   */
  virtual void complete_store(std::span<const BlockHash> hashes, bool success = true) = 0;

  /// @brief Events queued since the last call, oldest first; clears the queue.
  [[nodiscard]] virtual std::vector<OffloadingEvent> take_events() = 0;

  /// @brief Counters and current gauges.
  [[nodiscard]] virtual ManagerStats stats() const = 0;

  /// @brief Remove every ready and idle block (one removed event); pinned and pending stay.
  virtual void clear() = 0;

  /// @brief True for a manager that moves blocks between tiers of its own and needs a
  /// transfer engine to run its plans (the tiered manager, also behind decorators). Such a
  /// manager cannot serve as one host tier (kvoffload::Offloader refuses it).
  [[nodiscard]] virtual bool plans_transfers() const noexcept { return false; }
};

/// @brief LRU manager with `num_blocks` slots of medium kCpu.
/// @throws logic_error if num_blocks is 0 or above 2^29 (536,870,912: the hash index holds
/// twice as many hashes as slots, for ARC's ghost lists).
std::unique_ptr<OffloadingManager> make_lru_manager(std::size_t num_blocks,
                                                    std::size_t block_size,
                                                    bool enable_events = true);

/// @brief ARC manager (T1/T2 with ghost lists B1/B2 and adaptive target p), medium kCpu.
/// @throws logic_error if num_blocks is 0 or above 2^29 (536,870,912).
std::unique_ptr<OffloadingManager> make_arc_manager(std::size_t num_blocks,
                                                    std::size_t block_size,
                                                    bool enable_events = true);

}  // namespace kvoffload
