#include "manager_core.hpp"

#include <kvoffload/error.hpp>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

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
      index_{config.num_blocks, slots_.data(), sizeof(SlotMeta), config.index_buckets_per_slot} {
  KVO_EXPECTS(policy_ != nullptr, "a policy is required");
  KVO_EXPECTS(config.index_buckets_per_slot >= 2, "index_buckets_per_slot must be at least 2");
  hooks_ = policy_->hooks();
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

CoreManager::Resolved CoreManager::resolve(std::span<const BlockHash> hashes) {
  const std::size_t n = hashes.size();
  if (n > 0 && n <= memo_hashes_.size()) {
    if (std::equal(hashes.begin(), hashes.end(), memo_hashes_.begin())) {
      return Resolved{*this, memo_hashes_.data(), memo_slots_.data()};
    }
    const std::size_t offset = memo_hashes_.size() - n;
    if (std::equal(hashes.begin(), hashes.end(), memo_hashes_.data() + offset)) {
      return Resolved{*this, memo_hashes_.data() + offset, memo_slots_.data() + offset};
    }
  }
  memo_hashes_.assign(hashes.begin(), hashes.end());
  memo_slots_.assign(n, kUnresolved);
  return Resolved{*this, memo_hashes_.data(), memo_slots_.data()};
}

std::optional<std::size_t> CoreManager::lookup(std::span<const BlockHash> hashes) {
  const Resolved slot_of = resolve(hashes);
  std::size_t hits       = 0;
  while (hits < hashes.size()) {
    const SlotId slot = slot_of[hits];
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
  const Resolved slot_of = resolve(hashes);
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    const SlotId slot = slot_of[i];
    KVO_EXPECTS(slot != kNil, "prepare_load: block hash " + hash_str(hashes[i]) + " is not stored");
    KVO_EXPECTS(slots_[slot].state == SlotState::kReady,
                "prepare_load: block hash " + hash_str(hashes[i]) +
                    " is pending (its store has not completed)");
    KVO_EXPECTS(slots_[slot].refs < std::numeric_limits<std::uint32_t>::max() - hashes.size(),
                "prepare_load: too many references to block hash " + hash_str(hashes[i]));
  }
  LoadStoreSpec spec{config_.medium, {}};
  spec.block_ids.reserve(hashes.size());
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    const SlotId slot = slot_of[i];
    if (slots_[slot].refs++ == 0) ++pinned_;
    spec.block_ids.push_back(static_cast<BlockId>(slot));
  }
  counters_.loads += hashes.size();
  return spec;
}

void CoreManager::touch(std::span<const BlockHash> hashes) {
  // Last to first, so the first hash (the prefix head) ends up most recent.
  const Resolved slot_of = resolve(hashes);
  if (hooks_.touch_request) {
    found_.resize(hashes.size());
    for (std::size_t i = 0; i < hashes.size(); ++i)
      found_[i] = slot_of[i];
    policy_->on_touch_request(hashes, found_);
  }
  for (std::size_t i = hashes.size(); i-- > 0;) {
    const SlotId slot = slot_of[i];
    if (slot == kNil) {
      policy_->on_touch_absent(hashes[i]);
    } else {
      policy_->on_touch(slot, slots_[slot].state == SlotState::kReady);
    }
  }
}

void CoreManager::complete_load(std::span<const BlockHash> hashes) {
  // Decrement while validating (a repeated hash needs as many references as occurrences)
  // and roll back on the first failure.
  const Resolved slot_of = resolve(hashes);
  std::size_t unpinned   = 0;
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    const SlotId slot = slot_of[i];
    if (slot == kNil || slots_[slot].refs == 0) {
      for (std::size_t done = 0; done < i; ++done)
        ++slots_[slot_of[done]].refs;
      detail::throw_logic_error(__FILE__,
                                __LINE__,
                                "complete_load: block hash " + hash_str(hashes[i]) +
                                    (slot == kNil ? " is not stored"
                                                  : " holds no load reference (complete_load "
                                                    "without a matching prepare_load)"));
    }
    if (--slots_[slot].refs == 0) ++unpinned;
  }
  pinned_ -= unpinned;
}

bool CoreManager::seen_before(BlockHash hash) {
  // Open addressing over seen_ (sized by prepare_store); slots hold hash + 1, 0 = empty.
  const std::size_t mask = seen_.size() - 1;
  for (std::size_t i = mix_hash(hash) & mask;; i = (i + 1) & mask) {
    if (seen_[i] == 0) {
      seen_[i] = hash + 1;
      return false;
    }
    if (seen_[i] == hash + 1) return true;
  }
}

std::optional<PrepareStoreOutput> CoreManager::prepare_store(std::span<const BlockHash> hashes) {
  struct Unprotect {
    CoreManager* self;
    ~Unprotect() { self->unprotect(); }
  } guard{this};

  PrepareStoreOutput out;
  out.store_spec.medium         = config_.medium;
  std::vector<BlockHash>& fresh = out.block_hashes_to_store;
  fresh.reserve(hashes.size());
  const Resolved slot_of = resolve(hashes);
  bool may_repeat        = false;
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    const SlotId slot = slot_of[i];
    if (slot == kNil) {
      // A hash repeated in the call is stored once, at its first position. Most calls have
      // no repeats; a cheap first check (a hash not above all before it) finds the rest.
      may_repeat = may_repeat || (!fresh.empty() && hashes[i] <= fresh.back());
      fresh.push_back(hashes[i]);
    } else if (!slots_[slot].protected_in_call) {
      slots_[slot].protected_in_call = true;
      protected_.push_back(slot);
    }
  }
  if (may_repeat) {
    std::size_t table = 8;
    while (table < 2 * fresh.size())
      table *= 2;
    seen_.assign(table, 0);
    // hash + 1 == 0 cannot mark "empty": the one hash that wraps is checked separately.
    bool saw_max     = false;
    std::size_t kept = 0;
    for (BlockHash hash : fresh) {
      const bool repeat = hash == ~BlockHash{0} ? std::exchange(saw_max, true) : seen_before(hash);
      if (!repeat) fresh[kept++] = hash;
    }
    fresh.resize(kept);
  }

  // Admission: the policy may decline some new blocks (committed below, with the store).
  std::size_t declined = 0;
  if (hooks_.admission && !fresh.empty()) {
    admitted_.assign(fresh.size(), true);
    policy_->admit(fresh, free_count(), SlotView{slots_.data()}, admitted_);
    std::size_t kept = 0;
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      if (admitted_[i]) fresh[kept++] = fresh[i];
    }
    declined = fresh.size() - kept;
    fresh.resize(kept);
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
  if (needed > 0) invalidate_memo();
  policy_->evict(victims_, SlotView{slots_.data()});
  for (SlotId slot : victims_) {
    out.block_hashes_evicted.push_back(slots_[slot].hash);
    index_.erase(slots_[slot].hash, slot);
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
  counters_.stores_declined += declined;
  if (needed > 0) {
    // The caller's next call is complete_store of exactly these hashes.
    memo_hashes_.assign(fresh.begin(), fresh.end());
    memo_slots_.resize(needed);
    for (std::size_t i = 0; i < needed; ++i) {
      memo_slots_[i] = static_cast<SlotId>(out.store_spec.block_ids[i]);
    }
  }
  return out;
}

void CoreManager::complete_store(std::span<const BlockHash> hashes, bool success) {
  const Resolved slot_of = resolve(hashes);
  if (!success) {
    // Abandon: pending blocks leave, ready ones (stored earlier) stay, absent ones are ignored.
    found_.clear();
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      const SlotId slot = slot_of[i];
      if (slot != kNil && slots_[slot].state == SlotState::kPending) found_.push_back(slot);
    }
    if (found_.empty()) return;
    invalidate_memo();
    for (SlotId slot : found_) {
      if (slots_[slot].state != SlotState::kPending) continue;  // repeated in the call
      policy_->erase(slot);
      index_.erase(slots_[slot].hash, slot);
      release_slot(slot);
      --pending_;
      ++counters_.stores_failed;
    }
    return;
  }
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    KVO_EXPECTS(slot_of[i] != kNil,
                "complete_store: block hash " + hash_str(hashes[i]) + " is not stored");
  }
  std::vector<BlockHash> stored;
  stored.reserve(hashes.size());
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    const SlotId slot = slot_of[i];
    if (slots_[slot].state != SlotState::kPending) continue;
    slots_[slot].state = SlotState::kReady;
    policy_->on_ready(slot);
    stored.push_back(hashes[i]);
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
  s.sketch_bytes   = policy_->sketch_bytes();
  return s;
}

void CoreManager::clear() {
  invalidate_memo();
  std::vector<BlockHash> removed;
  for (SlotId slot = 0; slot < next_unused_; ++slot) {
    const SlotMeta& m = slots_[slot];
    if (m.state != SlotState::kReady || m.refs != 0) continue;
    removed.push_back(m.hash);
    policy_->erase(slot);
    index_.erase(m.hash, slot);
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
