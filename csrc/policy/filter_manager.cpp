// Admission filter over any manager: a bounded LRU of lookup counts decides which hashes
// prepare_store passes on.
#include "flat_index.hpp"
#include "intrusive_list.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/filter_manager.hpp>

#include <limits>
#include <string>
#include <utility>

namespace kvoffload {

/// Counts per hash for the `capacity` most recently looked-up hashes. Entry ids are dense:
/// [0, size) are used; when full, the least recent entry's id is reused for the new hash.
class FilterReusedOffloadingManager::Tracker {
 public:
  explicit Tracker(std::size_t capacity)
      : entries_(capacity),
        links_(capacity),
        order_{&links_},
        index_{capacity, entries_.data(), sizeof(Entry)} {}

  void count(BlockHash hash) {
    std::uint32_t id = index_.find(hash);
    if (id != detail::kNil) {
      Entry& e = entries_[id];
      if (e.count < std::numeric_limits<std::uint32_t>::max()) ++e.count;
      order_.move_to_back(id);
      return;
    }
    if (used_ < entries_.size()) {
      id = static_cast<std::uint32_t>(used_++);
    } else {
      id = order_.pop_front();  // forget the least recently looked-up hash
      index_.erase(entries_[id].hash, id);
    }
    entries_[id] = Entry{hash, 1};
    index_.insert(hash, id);
    order_.push_back(id);
  }

  [[nodiscard]] std::uint32_t count_of(BlockHash hash) const noexcept {
    const std::uint32_t id = index_.find(hash);
    return id == detail::kNil ? 0 : entries_[id].count;
  }
  [[nodiscard]] std::size_t size() const noexcept { return used_; }
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return sizeof(*this) + entries_.capacity() * sizeof(Entry) +
           links_.capacity() * sizeof(detail::Links) + index_.memory_bytes();
  }

 private:
  struct Entry {
    BlockHash hash{0};
    std::uint32_t count{0};
  };
  std::vector<Entry> entries_;
  std::vector<detail::Links> links_;
  detail::IntrusiveList order_;  // front = least recently looked up
  detail::FlatIndex index_;
  std::size_t used_{0};
};

FilterReusedOffloadingManager::FilterReusedOffloadingManager(
    std::unique_ptr<OffloadingManager> backing,
    std::size_t store_threshold,
    std::size_t max_tracker_size)
    : backing_{std::move(backing)}, store_threshold_{store_threshold} {
  KVO_EXPECTS(backing_ != nullptr, "filter: a backing manager is required, got null");
  KVO_EXPECTS(store_threshold >= 1,
              "filter: store_threshold must be at least 1, got 0 (0 means no filter: use "
              "make_filter_reused_manager)");
  KVO_EXPECTS(max_tracker_size >= 1 && max_tracker_size <= detail::FlatIndex::kMaxKeys,
              "filter: max_tracker_size must be 1.." + std::to_string(detail::FlatIndex::kMaxKeys) +
                  ", got " + std::to_string(max_tracker_size));
  tracker_ = std::make_unique<Tracker>(max_tracker_size);
}

FilterReusedOffloadingManager::~FilterReusedOffloadingManager() = default;

std::optional<std::size_t> FilterReusedOffloadingManager::lookup(
    std::span<const BlockHash> hashes) {
  for (BlockHash hash : hashes)
    tracker_->count(hash);
  return backing_->lookup(hashes);
}

LoadStoreSpec FilterReusedOffloadingManager::prepare_load(std::span<const BlockHash> hashes) {
  return backing_->prepare_load(hashes);
}

void FilterReusedOffloadingManager::touch(std::span<const BlockHash> hashes) {
  backing_->touch(hashes);
}

void FilterReusedOffloadingManager::complete_load(std::span<const BlockHash> hashes) {
  backing_->complete_load(hashes);
}

std::optional<PrepareStoreOutput> FilterReusedOffloadingManager::prepare_store(
    std::span<const BlockHash> hashes) {
  eligible_.clear();
  for (BlockHash hash : hashes) {
    if (tracker_->count_of(hash) >= store_threshold_) eligible_.push_back(hash);
  }
  auto out = backing_->prepare_store(eligible_);
  // Counted only when the call took effect: a refused store changes nothing.
  if (out) filtered_ += hashes.size() - eligible_.size();
  return out;
}

void FilterReusedOffloadingManager::complete_store(std::span<const BlockHash> hashes,
                                                   bool success) {
  backing_->complete_store(hashes, success);
}

std::vector<OffloadingEvent> FilterReusedOffloadingManager::take_events() {
  return backing_->take_events();
}

ManagerStats FilterReusedOffloadingManager::stats() const {
  ManagerStats s = backing_->stats();
  s.metadata_bytes += sizeof(*this) + tracker_->memory_bytes();
  s.sketch_bytes += tracker_->memory_bytes();  // sized by max_tracker_size, not per slot
  return s;
}

void FilterReusedOffloadingManager::clear() {
  backing_->clear();
}

std::size_t FilterReusedOffloadingManager::lookup_count(BlockHash hash) const noexcept {
  return tracker_->count_of(hash);
}

std::size_t FilterReusedOffloadingManager::tracked() const noexcept {
  return tracker_->size();
}

std::unique_ptr<OffloadingManager> make_filter_reused_manager(
    std::unique_ptr<OffloadingManager> backing,
    std::size_t store_threshold,
    std::size_t max_tracker_size) {
  KVO_EXPECTS(backing != nullptr, "filter: a backing manager is required, got null");
  if (store_threshold == 0) return backing;
  return std::make_unique<FilterReusedOffloadingManager>(
      std::move(backing), store_threshold, max_tracker_size);
}

}  // namespace kvoffload
