#include "manager_core.hpp"

#include <kvoffload/error.hpp>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace kvoffload::detail {

namespace {
std::string hash_str(BlockHash hash) {
  return std::to_string(hash);
}

void invariant(bool condition, const char* what) {
  if (!condition) throw std::logic_error(std::string{"kvoffload invariant broken: "} + what);
}
}  // namespace

void validate_num_blocks(std::size_t num_blocks) {
  // Ghost lists may hold twice as many hashes as there are slots.
  constexpr std::size_t kMaxBlocks = FlatIndex::kMaxKeys / 2;
  KVO_EXPECTS(num_blocks > 0, "num_blocks must be positive, got 0");
  KVO_EXPECTS(num_blocks <= kMaxBlocks,
              "num_blocks " + std::to_string(num_blocks) + " exceeds the maximum " +
                  std::to_string(kMaxBlocks));
}

CoreManager::CoreManager(const CoreConfig& config, std::unique_ptr<EvictionPolicy> policy)
    : config_{config},
      policy_{std::move(policy)},
      slots_((validate_num_blocks(config.num_blocks), config.num_blocks)),
      index_{config.num_blocks, slots_.data(), sizeof(SlotMeta)} {
  KVO_EXPECTS(policy_ != nullptr, "a policy is required");
}

SlotId CoreManager::allocate_slot() noexcept {
  // Never-used slots first in ascending order, then the most recently freed one.
  if (next_unused_ < config_.num_blocks) return next_unused_++;
  const SlotId slot = free_head_;
  free_head_        = slots_[slot].refs;
  --freed_;
  return slot;
}

void CoreManager::release_slot(SlotId slot) noexcept {
  slots_[slot] = SlotMeta{0, free_head_, SlotState::kFree, false};
  free_head_   = slot;
  ++freed_;
}

void CoreManager::emit(std::vector<BlockHash> hashes, bool removed) {
  if (!config_.enable_events || hashes.empty()) return;
  events_.push_back(
      OffloadingEvent{std::move(hashes), config_.block_size, config_.medium, removed});
}

void CoreManager::unprotect() noexcept {
  for (SlotId slot : protected_)
    slots_[slot].protected_in_call = false;
  protected_.clear();
}

std::optional<std::size_t> CoreManager::lookup(std::span<const BlockHash> hashes) {
  std::size_t hits = 0;
  for (BlockHash hash : hashes) {
    const SlotId slot = find(hash);
    if (slot == kNil || slots_[slot].state != SlotState::kReady) break;
    ++hits;
  }
  ++counters_.lookups;
  counters_.lookup_blocks += hashes.size();
  counters_.hits += hits;
  counters_.misses += hashes.size() - hits;
  return hits;
}

LoadStoreSpec CoreManager::prepare_load(std::span<const BlockHash> hashes) {
  // Validate everything first: a throw leaves no reference behind.
  found_.clear();
  for (BlockHash hash : hashes) {
    const SlotId slot = find(hash);
    KVO_EXPECTS(slot != kNil, "prepare_load: block hash " + hash_str(hash) + " is not stored");
    KVO_EXPECTS(
        slots_[slot].state == SlotState::kReady,
        "prepare_load: block hash " + hash_str(hash) + " is pending (its store has not completed)");
    KVO_EXPECTS(slots_[slot].refs < std::numeric_limits<std::uint32_t>::max() - hashes.size(),
                "prepare_load: too many references to block hash " + hash_str(hash));
    found_.push_back(slot);
  }
  LoadStoreSpec spec{config_.medium, {}};
  spec.block_ids.reserve(hashes.size());
  for (SlotId slot : found_) {
    if (slots_[slot].refs++ == 0) ++pinned_;
    spec.block_ids.push_back(static_cast<BlockId>(slot));
  }
  counters_.loads += hashes.size();
  return spec;
}

void CoreManager::touch(std::span<const BlockHash> hashes) {
  // Last to first, so the first hash (the prefix head) ends up most recent.
  for (auto it = hashes.rbegin(); it != hashes.rend(); ++it) {
    const SlotId slot = find(*it);
    if (slot == kNil) {
      policy_->on_touch_absent(*it);
    } else {
      policy_->on_touch(slot, slots_[slot].state == SlotState::kReady);
    }
  }
}

void CoreManager::complete_load(std::span<const BlockHash> hashes) {
  // Decrement while validating (a repeated hash needs as many references as occurrences)
  // and roll back on the first failure.
  decremented_.clear();
  std::size_t unpinned = 0;
  for (BlockHash hash : hashes) {
    const SlotId slot = find(hash);
    if (slot == kNil || slots_[slot].refs == 0) {
      for (SlotId done : decremented_)
        ++slots_[done].refs;
      decremented_.clear();
      detail::throw_logic_error(__FILE__,
                                __LINE__,
                                "complete_load: block hash " + hash_str(hash) +
                                    (slot == kNil ? " is not stored"
                                                  : " holds no load reference (complete_load "
                                                    "without a matching prepare_load)"));
    }
    if (--slots_[slot].refs == 0) ++unpinned;
    decremented_.push_back(slot);
  }
  decremented_.clear();
  pinned_ -= unpinned;
}

std::optional<PrepareStoreOutput> CoreManager::prepare_store(std::span<const BlockHash> hashes) {
  struct Unprotect {
    CoreManager* self;
    ~Unprotect() { self->unprotect(); }
  } guard{this};

  PrepareStoreOutput out;
  out.store_spec.medium         = config_.medium;
  std::vector<BlockHash>& fresh = out.block_hashes_to_store;
  for (BlockHash hash : hashes) {
    const SlotId slot = find(hash);
    if (slot == kNil) {
      fresh.push_back(hash);
    } else if (!slots_[slot].protected_in_call) {
      slots_[slot].protected_in_call = true;
      protected_.push_back(slot);
    }
  }

  // A hash repeated in the call is stored once, at its first position.
  if (fresh.size() > 1) {
    dedupe_.clear();
    for (std::uint32_t i = 0; i < fresh.size(); ++i)
      dedupe_.emplace_back(fresh[i], i);
    std::sort(dedupe_.begin(), dedupe_.end());
    const auto last = std::unique(dedupe_.begin(), dedupe_.end(), [](const auto& a, const auto& b) {
      return a.first == b.first;
    });
    if (last != dedupe_.end()) {
      dedupe_.erase(last, dedupe_.end());
      std::sort(dedupe_.begin(), dedupe_.end(), [](const auto& a, const auto& b) {
        return a.second < b.second;
      });
      fresh.clear();
      for (const auto& [hash, position] : dedupe_)
        fresh.push_back(hash);
    }
  }

  const std::size_t needed   = fresh.size();
  const std::size_t free     = free_count();
  const std::size_t to_evict = needed > free ? needed - free : 0;
  victims_.clear();
  if (to_evict > 0) {
    std::size_t protected_evictable = 0;
    const SlotView view{slots_.data()};
    for (SlotId slot : protected_) {
      const SlotMeta& m = slots_[slot];
      if (m.state == SlotState::kReady && m.refs == 0) ++protected_evictable;
    }
    // The counters answer "not enough" without walking any list.
    const std::size_t evictable = ready_ - pinned_ - protected_evictable;
    if (needed > config_.num_blocks || evictable < to_evict ||
        !policy_->select_victims(to_evict, view, victims_)) {
      ++counters_.store_rejections;
      return std::nullopt;
    }
  }

  // Commit: nothing below can fail except allocation of the output vectors.
  out.store_spec.block_ids.reserve(needed);
  out.block_hashes_evicted.reserve(victims_.size());
  policy_->evict(victims_, SlotView{slots_.data()});
  for (SlotId slot : victims_) {
    out.block_hashes_evicted.push_back(slots_[slot].hash);
    index_.erase(slots_[slot].hash);
    release_slot(slot);
  }
  ready_ -= victims_.size();
  counters_.evictions += victims_.size();
  if (!victims_.empty()) emit(out.block_hashes_evicted, true);

  for (BlockHash hash : fresh) {
    const SlotId slot = allocate_slot();
    slots_[slot]      = SlotMeta{hash, 0, SlotState::kPending, false};
    index_.insert(hash, slot);
    policy_->on_insert(slot, hash);
    out.store_spec.block_ids.push_back(static_cast<BlockId>(slot));
  }
  pending_ += needed;
  counters_.stores += needed;
  return out;
}

void CoreManager::complete_store(std::span<const BlockHash> hashes, bool success) {
  if (!success) {
    // Abandon: pending blocks leave, ready ones (stored earlier) stay, absent ones are ignored.
    for (BlockHash hash : hashes) {
      const SlotId slot = find(hash);
      if (slot == kNil || slots_[slot].state != SlotState::kPending) continue;
      policy_->erase(slot);
      index_.erase(hash);
      release_slot(slot);
      --pending_;
      ++counters_.stores_failed;
    }
    return;
  }
  found_.clear();
  for (BlockHash hash : hashes) {
    const SlotId slot = find(hash);
    KVO_EXPECTS(slot != kNil, "complete_store: block hash " + hash_str(hash) + " is not stored");
    found_.push_back(slot);
  }
  std::vector<BlockHash> stored;
  for (SlotId slot : found_) {
    const BlockHash hash = slots_[slot].hash;
    if (slots_[slot].state != SlotState::kPending) continue;
    slots_[slot].state = SlotState::kReady;
    policy_->on_ready(slot);
    stored.push_back(hash);
  }
  pending_ -= stored.size();
  ready_ += stored.size();
  counters_.stores_completed += stored.size();
  emit(std::move(stored), false);
}

std::vector<OffloadingEvent> CoreManager::take_events() {
  std::vector<OffloadingEvent> taken;
  taken.swap(events_);
  return taken;
}

ManagerStats CoreManager::stats() const {
  ManagerStats s   = counters_;
  s.capacity       = config_.num_blocks;
  s.pending        = pending_;
  s.ready          = ready_;
  s.pinned         = pinned_;
  s.evictable      = ready_ - pinned_;
  s.free_slots     = free_count();
  s.metadata_bytes = memory_bytes();
  return s;
}

void CoreManager::clear() {
  std::vector<BlockHash> removed;
  for (SlotId slot = 0; slot < next_unused_; ++slot) {
    const SlotMeta& m = slots_[slot];
    if (m.state != SlotState::kReady || m.refs != 0) continue;
    removed.push_back(m.hash);
    policy_->erase(slot);
    index_.erase(m.hash);
    release_slot(slot);
  }
  ready_ -= removed.size();
  emit(std::move(removed), true);
}

std::size_t CoreManager::memory_bytes() const noexcept {
  return sizeof(*this) + slots_.capacity() * sizeof(SlotMeta) + index_.memory_bytes() +
         policy_->memory_bytes();
}

void CoreManager::check_invariants() const {
  std::size_t pending = 0, ready = 0, pinned = 0;
  for (SlotId slot = 0; slot < next_unused_; ++slot) {
    const SlotMeta& m = slots_[slot];
    invariant(!m.protected_in_call, "protected flag left set after a call");
    if (m.state == SlotState::kFree) continue;
    invariant(index_.find(m.hash) == slot, "index does not map a resident hash to its slot");
    invariant(m.state == SlotState::kReady || m.refs == 0, "pending block holds references");
    pending += m.state == SlotState::kPending;
    ready += m.state == SlotState::kReady;
    pinned += m.refs > 0;
  }
  invariant(pending == pending_ && ready == ready_ && pinned == pinned_, "gauges drifted");
  invariant(index_.size() == pending + ready, "index holds hashes of free slots");
  std::size_t freed = 0;
  for (SlotId slot = free_head_; slot != kNil; slot = slots_[slot].refs) {
    invariant(slot < next_unused_ && slots_[slot].state == SlotState::kFree,
              "free stack holds a used slot");
    invariant(++freed <= freed_, "free stack longer than its count");
  }
  invariant(freed == freed_, "free stack shorter than its count");
  invariant(next_unused_ - freed == pending + ready, "slots leaked");
  policy_->check_invariants(SlotView{slots_.data()}, pending + ready);
}

}  // namespace kvoffload::detail
