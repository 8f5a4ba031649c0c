/**
 * @file filter_manager.hpp
 * @brief Admission filter: store only blocks that were looked up often enough (vLLM's
 * `FilterReusedOffloadingManager`).
 *
 * The filter decorates any manager. `lookup` counts every hash it is passed (all of them, not
 * only the ready prefix: the hashes past the first miss are exactly the ones a runtime stores
 * next, so counting stops nowhere) in a bounded LRU tracker of `max_tracker_size` hashes;
 * `prepare_store` drops the hashes counted fewer than `store_threshold` times and passes the
 * rest to the backing manager. Every other call is passed through unchanged.
 *
 * A dropped hash is not named to the backing manager, so (unlike the plain contract) a dropped
 * hash that is already stored is not protected from eviction by that prepare_store. The
 * tracker is independent of the backing manager: clear() does not reset it.
 */
#pragma once

#include <kvoffload/offloading_manager.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace kvoffload {

/// vLLM's default tracker size.
inline constexpr std::size_t kDefaultMaxTrackerSize = 64'000;

/// @brief Decorator that admits a block into the backing manager only after it was looked up
/// `store_threshold` times (see the file comment).
class FilterReusedOffloadingManager final : public OffloadingManager {
 public:
  /**
   * @param backing          the manager that holds the blocks
   * @param store_threshold  lookups a hash needs before it may be stored, at least 1
   * @param max_tracker_size hashes the tracker remembers (least recently looked up leaves
   *                         first), 1 to 2^30
   * @throws logic_error if backing is null or a size is out of range (names the value)
   */
  FilterReusedOffloadingManager(std::unique_ptr<OffloadingManager> backing,
                                std::size_t store_threshold,
                                std::size_t max_tracker_size = kDefaultMaxTrackerSize);
  ~FilterReusedOffloadingManager() override;

  /// Counts each hash (duplicates as often as they appear), then delegates.
  std::optional<std::size_t> lookup(std::span<const BlockHash> hashes) override;
  LoadStoreSpec prepare_load(std::span<const BlockHash> hashes) override;
  void touch(std::span<const BlockHash> hashes) override;
  void complete_load(std::span<const BlockHash> hashes) override;
  /// Delegates the hashes counted at least store_threshold times (in input order); the output
  /// names only those.
  std::optional<PrepareStoreOutput> prepare_store(std::span<const BlockHash> hashes) override;
  void complete_store(std::span<const BlockHash> hashes, bool success = true) override;
  std::vector<OffloadingEvent> take_events() override;
  /// The backing manager's statistics; metadata_bytes includes the tracker.
  ManagerStats stats() const override;
  void clear() override;
  [[nodiscard]] bool plans_transfers() const noexcept override {
    return backing_->plans_transfers();
  }

  /// @brief How often `hash` was looked up while tracked (0 if it is not tracked).
  [[nodiscard]] std::size_t lookup_count(BlockHash hash) const noexcept;
  /// @brief Hashes the tracker holds now.
  [[nodiscard]] std::size_t tracked() const noexcept;
  /// @brief Hashes prepare_store dropped so far (below the threshold).
  [[nodiscard]] std::uint64_t filtered_blocks() const noexcept { return filtered_; }
  [[nodiscard]] std::size_t store_threshold() const noexcept { return store_threshold_; }
  [[nodiscard]] OffloadingManager& backing() noexcept { return *backing_; }
  [[nodiscard]] const OffloadingManager& backing() const noexcept { return *backing_; }

 private:
  class Tracker;
  std::unique_ptr<OffloadingManager> backing_;
  std::unique_ptr<Tracker> tracker_;
  std::size_t store_threshold_;
  std::uint64_t filtered_{0};
  std::vector<BlockHash> eligible_;  // scratch, reused across prepare_store calls
};

/**
 * @brief Wrap `backing` in the admission filter.
 * @param store_threshold 0 turns the filter off: `backing` is returned unwrapped
 * @param max_tracker_size tracker bound (vLLM's default: 64,000)
 * @throws logic_error if backing is null or max_tracker_size is 0 or above 2^30 (with a
 * threshold above 0)
 */
std::unique_ptr<OffloadingManager> make_filter_reused_manager(
    std::unique_ptr<OffloadingManager> backing,
    std::size_t store_threshold,
    std::size_t max_tracker_size);

}  // namespace kvoffload
