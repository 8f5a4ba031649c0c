/**
 * @file concurrent_manager.hpp
 * @brief A manager safe to call from several threads: one mutex, or shards by hash.
 *
 * ## One mutex (`shards == 1`)
 * Every call runs under one mutex; the wrapped manager's contract holds unchanged, and a call
 * is atomic. `with_lock` runs several calls as one atomic step (a whole request).
 *
 * ## Shards (`shards > 1`)
 * `num_blocks` are split into `shards` independent managers (the first `num_blocks % shards`
 * get one slot more), each behind its own mutex; a hash always belongs to shard
 * `(mix(hash) >> 32) * shards >> 32`. Threads working on different shards do not contend. A
 * call is split by shard, keeping the input order inside each shard, and the shards are
 * visited in ascending order. What changes against one manager:
 * - Eviction order: each shard evicts its own least valuable block, so the victims differ
 *   slightly from a single manager of the same total size, and a store can be refused while
 *   another shard has room (each shard holds only its share of the blocks).
 * - Slot ids are global: shard s's slots are `[offset(s), offset(s) + size(s))`.
 * - `lookup` returns the ready prefix of the whole input (exact, since each shard's answer
 *   covers its hashes in order); its counters (lookups, hits, ...) are kept by the wrapper.
 * - `prepare_store` holds the locks of all shards it names, so it is atomic; when one shard
 *   refuses, the stores the other shards granted are abandoned (slots freed) and the call
 *   returns nullopt, but blocks those shards already evicted stay evicted (their removal
 *   events are reported). `block_hashes_evicted` lists shard by shard.
 * - `prepare_load` / `complete_load` that throw are rolled back in the shards already done
 *   (a rolled-back complete_load adds to the `loads` counter); `complete_store(..., true)` that
 *   throws for an absent hash has already completed the hashes of the shards before it.
 * - `take_events` returns shard by shard: events of different shards are not in call order.
 */
#pragma once

#include <kvoffload/offloading_manager.hpp>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace kvoffload {

/// @brief Thread-safe wrapper over one manager or over shards of managers (file comment).
class ConcurrentManager final : public OffloadingManager {
 public:
  /// Builds one shard's manager with the given number of slots.
  using Builder = std::function<std::unique_ptr<OffloadingManager>(std::size_t num_blocks)>;

  /**
   * @brief One manager behind one mutex.
   * @throws logic_error if manager is null
   */
  explicit ConcurrentManager(std::unique_ptr<OffloadingManager> manager);

  /**
   * @brief `shards` managers from `build`, `num_blocks` slots in all.
   * @throws logic_error if shards is 0 or above 256, num_blocks < shards, or build fails
   */
  ConcurrentManager(const Builder& build, std::size_t num_blocks, std::size_t shards);
  ~ConcurrentManager() override;

  std::optional<std::size_t> lookup(std::span<const BlockHash> hashes) override;
  LoadStoreSpec prepare_load(std::span<const BlockHash> hashes) override;
  void touch(std::span<const BlockHash> hashes) override;
  void complete_load(std::span<const BlockHash> hashes) override;
  std::optional<PrepareStoreOutput> prepare_store(std::span<const BlockHash> hashes) override;
  void complete_store(std::span<const BlockHash> hashes, bool success = true) override;
  std::vector<OffloadingEvent> take_events() override;
  /// Sum over the shards (wrapper's own lookup counters when sharded) plus the wrapper.
  ManagerStats stats() const override;
  void clear() override;
  /// Every shard is built alike: the first one answers.
  [[nodiscard]] bool plans_transfers() const noexcept override;

  /// @brief Number of shards (1: one mutex).
  [[nodiscard]] std::size_t shards() const noexcept { return shards_.size(); }
  /// @brief The shard `hash` belongs to.
  [[nodiscard]] std::size_t shard_of(BlockHash hash) const noexcept;

  /**
   * @brief Run `work(manager)` under the lock, as one atomic step (one-mutex mode only).
   * @throws logic_error when sharded
   */
  template <class F>
  decltype(auto) with_lock(F&& work) {
    std::lock_guard lock{single_shard().mutex};
    return std::forward<F>(work)(*single_shard().manager);
  }

  /// @brief Run `visit(manager)` for each shard (one in one-mutex mode), in order, each under
  /// its shard's lock: to read figures the wrapper does not sum (e.g. tier statistics).
  template <class F>
  void for_each_shard(F&& visit) const {
    for (const auto& shard : shards_) {
      std::lock_guard lock{shard->mutex};
      visit(static_cast<const OffloadingManager&>(*shard->manager));
    }
  }

 private:
  struct Shard {
    std::unique_ptr<OffloadingManager> manager;
    std::size_t offset{0};
    std::size_t size{0};
    mutable std::mutex mutex;
  };
  struct Split;
  Shard& single_shard();
  class SplitScope;
  void split(std::span<const BlockHash> hashes, Split& out) const;

  std::vector<std::unique_ptr<Shard>> shards_;
  // Lookup counters of the sharded mode (the shards' own count per shard call).
  std::atomic<std::uint64_t> lookups_{0}, lookup_blocks_{0}, hits_{0};
};

}  // namespace kvoffload
