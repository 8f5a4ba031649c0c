// Tiered manager: LRU per tier, demotion of victims down the tiers, promotion of hit blocks,
// prefetch, all as transfer plans (rules in include/kvoffload/tiered_manager.hpp).
#include "flat_index.hpp"
#include "intrusive_list.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/tiered_manager.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <limits>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace kvoffload {

namespace {

using detail::kNil;
using SlotId = std::uint32_t;

constexpr std::size_t kMaxTiers = 8;

enum class State : std::uint8_t {
  kFree,      // on its tier's free stack, or handed out within a call
  kPending,   // a new block of prepare_store, not yet completed (tier 0)
  kReady,     // a hit, loadable, evictable when idle
  kLeaving,   // ready, but a promotion or prefetch out of this slot is in flight
  kArriving,  // a demoted block, pending in its destination until the plan completes
  kReserved,  // destination of a promotion or prefetch in flight (not indexed)
};
constexpr std::size_t kStates = 6;

struct Slot {
  BlockHash hash{0};
  std::uint32_t refs{0};
  State state{State::kFree};
  std::uint8_t hits{0};  // touches while ready in this tier (saturating)
  std::uint8_t tier{0};
  bool protected_in_call : 1 {false};
  bool candidate : 1 {false};   // queued for promotion
  bool being_read : 1 {false};  // source of a demotion in flight: must not be written yet
};
static_assert(sizeof(Slot) == 16);

std::string hash_str(BlockHash hash) {
  return std::to_string(hash);
}

}  // namespace

TieredConfig resolve_tiers(const TieredOptions& options,
                           std::size_t num_blocks,
                           std::size_t block_size,
                           bool enable_events) {
  KVO_EXPECTS(num_blocks > 0, "tiered: num_blocks must be positive, got 0");
  auto size_of = [num_blocks](const TierSize& size, const char* name) -> std::size_t {
    if (size.blocks > 0) return size.blocks;
    KVO_EXPECTS(std::isfinite(size.fraction) && size.fraction > 0.0 && size.fraction < 1.0,
                std::string{"tiered: "} + name + " must be a count or a fraction in (0, 1), got " +
                    std::to_string(size.fraction));
    // At least one slot, so a tiny cache still has every tier.
    return std::max<std::size_t>(
        1, static_cast<std::size_t>(std::floor(size.fraction * static_cast<double>(num_blocks))));
  };
  const std::size_t hot  = size_of(options.hot, "hot");
  const std::size_t warm = options.cold ? size_of(options.warm, "warm") : 0;
  const std::size_t used = hot + warm;
  KVO_EXPECTS(used < num_blocks,
              "tiered: hot and warm need " + std::to_string(used) + " blocks, leaving none of " +
                  std::to_string(num_blocks) + " for the " + (options.cold ? "cold" : "warm") +
                  " tier");
  TieredConfig config;
  config.tiers.push_back({options.hot_medium, hot});
  if (options.cold) {
    config.tiers.push_back({options.warm_medium, warm});
    config.tiers.push_back({options.cold_medium, num_blocks - used});
  } else {
    config.tiers.push_back({options.warm_medium, num_blocks - used});
  }
  config.promote_after     = options.promote_after;
  config.lookahead         = options.lookahead;
  config.instant_transfers = options.instant_transfers;
  config.block_size        = block_size;
  config.enable_events     = enable_events;
  return config;
}

class TieredOffloadingManager::Impl {
 public:
  explicit Impl(const TieredConfig& config) : config_{config} {
    KVO_EXPECTS(!config.tiers.empty() && config.tiers.size() <= kMaxTiers,
                "tiered: 1 to 8 tiers needed, got " + std::to_string(config.tiers.size()));
    std::size_t total = 0;
    for (std::size_t t = 0; t < config.tiers.size(); ++t) {
      KVO_EXPECTS(config.tiers[t].num_blocks > 0,
                  "tiered: tier " + std::to_string(t) + " has no slots");
      total += config.tiers[t].num_blocks;
    }
    KVO_EXPECTS(total <= detail::FlatIndex::kMaxKeys / 2,
                "tiered: " + std::to_string(total) + " slots in all exceed the maximum " +
                    std::to_string(detail::FlatIndex::kMaxKeys / 2));
    slots_.resize(total);
    links_.resize(total);
    index_        = std::make_unique<detail::FlatIndex>(total, slots_.data(), sizeof(Slot), 4);
    SlotId offset = 0;
    for (std::size_t t = 0; t < config.tiers.size(); ++t) {
      Tier& tier  = tiers_.emplace_back(&links_);
      tier.medium = config.tiers[t].medium;
      tier.offset = offset;
      tier.size   = static_cast<SlotId>(config.tiers[t].num_blocks);
      tier.unused = offset;
      tier.free.reserve(tier.size);
      for (SlotId s = offset; s < offset + tier.size; ++s)
        slots_[s].tier = static_cast<std::uint8_t>(t);
      tier.count[static_cast<int>(State::kFree)] = tier.size;
      offset += tier.size;
    }
    removed_.resize(tiers_.size());
    stored_.resize(tiers_.size());
    victims_.resize(tiers_.size());
    vacated_.resize(tiers_.size() + 1);
  }

  // ---- OffloadingManager -------------------------------------------------------------------

  std::optional<std::size_t> lookup(std::span<const BlockHash> hashes) {
    std::size_t hits = 0;
    for (; hits < hashes.size(); ++hits) {
      const SlotId slot = index_->find(hashes[hits]);
      if (slot == kNil) break;
      const State state = slots_[slot].state;
      if (state == State::kLeaving || state == State::kArriving) {
        ++stats_.lookups_deferred;
        return std::nullopt;
      }
      if (state != State::kReady) break;
    }
    ++counters_.lookups;
    counters_.lookup_blocks += hashes.size();
    counters_.hits += hits;
    counters_.misses += hashes.size() - hits;
    return hits;
  }

  std::vector<std::optional<std::uint32_t>> lookup_tiers(std::span<const BlockHash> hashes) const {
    std::vector<std::optional<std::uint32_t>> tiers(hashes.size());
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      const SlotId slot = index_->find(hashes[i]);
      if (slot != kNil && slots_[slot].state == State::kReady) tiers[i] = slots_[slot].tier;
    }
    return tiers;
  }

  /// Pins the blocks (validated first: a throw pins nothing); returns their global slots.
  void pin(std::span<const BlockHash> hashes, std::vector<SlotId>& out) {
    out.clear();
    out.reserve(hashes.size());
    for (BlockHash hash : hashes) {
      const SlotId slot = index_->find(hash);
      KVO_EXPECTS(slot != kNil, "prepare_load: block hash " + hash_str(hash) + " is not stored");
      const State state = slots_[slot].state;
      KVO_EXPECTS(state != State::kLeaving && state != State::kArriving,
                  "prepare_load: block hash " + hash_str(hash) +
                      " is in flight (a transfer between tiers has not completed)");
      KVO_EXPECTS(state == State::kReady,
                  "prepare_load: block hash " + hash_str(hash) +
                      " is pending (its store has not completed)");
      KVO_EXPECTS(slots_[slot].refs < std::numeric_limits<std::uint32_t>::max() - hashes.size(),
                  "prepare_load: too many references to block hash " + hash_str(hash));
      out.push_back(slot);
    }
    for (SlotId slot : out) {
      if (slots_[slot].refs++ == 0) {
        ++pinned_;
        --tiers_[slots_[slot].tier].idle;
      }
    }
    counters_.loads += hashes.size();
  }

  LoadStoreSpec prepare_load(std::span<const BlockHash> hashes) {
    pin(hashes, found_);
    LoadStoreSpec spec{found_.empty() ? tiers_[0].medium : tiers_[slots_[found_[0]].tier].medium,
                       {}};
    spec.block_ids.assign(found_.begin(), found_.end());
    return spec;
  }

  std::vector<TierLocation> prepare_load_tiers(std::span<const BlockHash> hashes) {
    pin(hashes, found_);
    std::vector<TierLocation> where;
    where.reserve(found_.size());
    for (SlotId slot : found_)
      where.push_back(location(slot));
    return where;
  }

  void touch(std::span<const BlockHash> hashes) {
    for (std::size_t i = hashes.size(); i-- > 0;) {
      const SlotId slot = index_->find(hashes[i]);
      if (slot == kNil) continue;
      Slot& s = slots_[slot];
      tiers_[s.tier].lru.move_to_back(slot);
      if (s.state != State::kReady) continue;
      if (s.hits < 255) ++s.hits;
      if (s.tier > 0 && config_.promote_after > 0 && s.hits >= config_.promote_after &&
          !s.candidate) {
        s.candidate = true;
        candidates_.push_back(s.hash);
      }
    }
    if (config_.instant_transfers && !candidates_.empty()) {
      // Promote at once; the cascades must not evict a block this request names.
      protect(hashes);
      sink_ = &queued_;
      promote_candidates();
      unprotect();
      queued_.clear();  // instant: already completed
      flush_events();
    }
  }

  void complete_load(std::span<const BlockHash> hashes) {
    std::size_t i = 0;
    for (; i < hashes.size(); ++i) {
      const SlotId slot = index_->find(hashes[i]);
      if (slot == kNil || slots_[slot].refs == 0) break;
      if (--slots_[slot].refs == 0) release_pin(slot);
    }
    if (i == hashes.size()) return;
    const SlotId failed = index_->find(hashes[i]);
    for (std::size_t done = 0; done < i; ++done) {  // roll back
      const SlotId slot = index_->find(hashes[done]);
      if (slots_[slot].refs++ == 0) {
        ++pinned_;
        --tiers_[slots_[slot].tier].idle;
      }
    }
    detail::throw_logic_error(__FILE__,
                              __LINE__,
                              "complete_load: block hash " + hash_str(hashes[i]) +
                                  (failed == kNil ? " is not stored"
                                                  : " holds no load reference (complete_load "
                                                    "without a matching prepare_load)"));
  }

  std::optional<PrepareStoreOutput> prepare_store(std::span<const BlockHash> hashes) {
    fresh_.clear();
    for (BlockHash hash : hashes) {
      if (index_->find(hash) == kNil) fresh_.push_back(hash);
    }
    distinct_.assign(fresh_.begin(), fresh_.end());
    std::sort(distinct_.begin(), distinct_.end());
    const std::size_t needed = static_cast<std::size_t>(
        std::unique(distinct_.begin(), distinct_.end()) - distinct_.begin());
    protect(hashes);
    // The fastest tier that can take the whole batch (free or evictable slots) stores it.
    std::size_t target           = tiers_.size();
    const std::size_t candidates = config_.stores_to_tier_zero_only ? 1 : tiers_.size();
    for (std::size_t t = 0; t < candidates && target == tiers_.size(); ++t) {
      std::size_t protected_idle = 0;
      for (SlotId slot : protected_) {
        if (slots_[slot].tier == t && is_idle(slot)) ++protected_idle;
      }
      if (needed <= tiers_[t].free_count() + tiers_[t].idle - protected_idle) target = t;
    }
    if (target == tiers_.size()) {
      unprotect();
      ++counters_.store_rejections;
      return std::nullopt;
    }
    PrepareStoreOutput out;
    out.store_spec.medium = tiers_[target].medium;
    out.block_hashes_to_store.reserve(needed);
    out.store_spec.block_ids.reserve(needed);
    sink_                     = &queued_;
    evicted_                  = &out.block_hashes_evicted;
    std::vector<SlotId>& room = vacated_[target];
    room.clear();
    take_slots(target, needed, room);
    evicted_         = nullptr;
    std::size_t next = 0;
    for (BlockHash hash : fresh_) {
      if (index_->find(hash) != kNil) continue;  // repeated in the call
      const SlotId slot = room[next++];
      place(slot, hash, State::kPending);
      out.block_hashes_to_store.push_back(hash);
      out.store_spec.block_ids.push_back(static_cast<BlockId>(slot));
    }
    unprotect();
    counters_.stores += needed;
    counters_.evictions += out.block_hashes_evicted.size();
    if (config_.instant_transfers) queued_.clear();
    flush_events();
    return out;
  }

  void complete_store(std::span<const BlockHash> hashes, bool success) {
    if (!success) {
      for (BlockHash hash : hashes) {
        const SlotId slot = index_->find(hash);
        if (slot == kNil || slots_[slot].state != State::kPending) continue;
        unlink(slot);
        free_slot(slot);
        ++counters_.stores_failed;
      }
      return;
    }
    for (BlockHash hash : hashes) {
      const SlotId slot = index_->find(hash);
      KVO_EXPECTS(slot != kNil, "complete_store: block hash " + hash_str(hash) + " is not stored");
      if (slots_[slot].state == State::kPending) check_writable(slot, "complete_store", hash);
    }
    for (BlockHash hash : hashes) {
      const SlotId slot = index_->find(hash);
      if (slots_[slot].state != State::kPending) continue;
      set_state(slot, State::kReady);
      stored_[slots_[slot].tier].push_back(hash);
      ++counters_.stores_completed;
    }
    flush_events();
  }

  std::vector<OffloadingEvent> take_events() {
    std::vector<OffloadingEvent> taken;
    taken.swap(events_);
    return taken;
  }

  ManagerStats stats() const {
    ManagerStats s = counters_;
    for (const Tier& tier : tiers_) {
      s.capacity += tier.size;
      s.pending += tier.count[static_cast<int>(State::kPending)] +
                   tier.count[static_cast<int>(State::kArriving)] +
                   tier.count[static_cast<int>(State::kReserved)];
      s.ready += tier.count[static_cast<int>(State::kReady)] +
                 tier.count[static_cast<int>(State::kLeaving)];
      s.evictable += tier.idle;
      s.free_slots += tier.free_count();
    }
    s.pinned         = pinned_;
    s.metadata_bytes = memory_bytes();
    return s;
  }

  void clear() {
    for (std::size_t t = 0; t < tiers_.size(); ++t) {
      Tier& tier = tiers_[t];
      for (SlotId slot = tier.offset; slot < tier.unused; ++slot) {  // slot order, like the core
        if (!is_idle(slot)) continue;
        removed_[t].push_back(slots_[slot].hash);
        unlink(slot);
        free_slot(slot);
      }
    }
    flush_events();
  }

  // ---- Transfers ---------------------------------------------------------------------------

  std::vector<TransferPlan> take_transfer_plans() {
    sink_ = &queued_;
    promote_candidates();
    flush_events();
    std::vector<TransferPlan> plans;
    plans.swap(queued_);
    return plans;
  }

  void complete_transfer(std::uint64_t id, bool success) {
    const auto it = plans_.find(id);
    KVO_EXPECTS(it != plans_.end(),
                "complete_transfer: plan " + std::to_string(id) + " is not in flight");
    if (success) check_writable(it->second.destination, "complete_transfer", it->second.plan.hash);
    finish(it->second, success);
    plans_.erase(it);
    flush_events();
  }

  void hint_prefetch(std::span<const BlockHash> hashes) {
    hints_.insert(hints_.end(), hashes.begin(), hashes.end());
    stats_.prefetch_hints += hashes.size();
  }

  std::vector<TransferPlan> process_prefetch(std::span<const BlockHash> keep) {
    std::vector<TransferPlan> plans;
    protect(keep);
    sink_            = &plans;
    std::size_t made = 0;
    while (made < config_.lookahead && !hints_.empty()) {
      const BlockHash hash = hints_.front();
      hints_.pop_front();
      const SlotId slot = index_->find(hash);
      if (slot == kNil) {
        ++stats_.prefetch_dropped_absent;
      } else if (slots_[slot].tier > 0 && is_idle(slot) &&
                 start_move(slot, 0, TransferKind::kPrefetch)) {
        ++made;
      } else {
        ++stats_.prefetch_dropped_other;
      }
    }
    sink_ = &queued_;
    unprotect();
    if (config_.instant_transfers) plans.clear();
    flush_events();
    return plans;
  }

  void complete_prefetch(std::span<const BlockHash> hashes, bool success) {
    std::vector<std::uint64_t> ids;
    for (BlockHash hash : hashes) {
      const SlotId slot = index_->find(hash);
      const auto it     = slot == kNil ? moving_.end() : moving_.find(slot);
      KVO_EXPECTS(it != moving_.end() && plans_.at(it->second).plan.kind == TransferKind::kPrefetch,
                  "complete_prefetch: block hash " + hash_str(hash) + " has no prefetch in flight");
      if (success) check_writable(plans_.at(it->second).destination, "complete_prefetch", hash);
      ids.push_back(it->second);
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (std::uint64_t id : ids) {
      const auto it = plans_.find(id);
      finish(it->second, success);
      plans_.erase(it);
    }
    flush_events();
  }

  void adopt_ready(std::uint32_t t,
                   std::span<const BlockHash> hashes,
                   std::span<const BlockId> at) {
    KVO_EXPECTS(hashes.size() == at.size(),
                "adopt_ready: " + std::to_string(hashes.size()) + " hashes but " +
                    std::to_string(at.size()) + " slots");
    KVO_EXPECTS(t < tiers_.size(),
                "adopt_ready: tier " + std::to_string(t) + " does not exist (" +
                    std::to_string(tiers_.size()) + " tiers)");
    Tier& tier = tiers_[t];
    std::vector<bool> taken(tier.size, false);
    distinct_.assign(hashes.begin(), hashes.end());
    std::sort(distinct_.begin(), distinct_.end());
    const auto repeated = std::adjacent_find(distinct_.begin(), distinct_.end());
    KVO_EXPECTS(repeated == distinct_.end(),
                "adopt_ready: block hash " + hash_str(repeated == distinct_.end() ? 0 : *repeated) +
                    " is given twice");
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      KVO_EXPECTS(at[i] < tier.size,
                  "adopt_ready: slot " + std::to_string(at[i]) + " is out of range (tier " +
                      std::to_string(t) + " has " + std::to_string(tier.size) + " slots)");
      const SlotId slot = tier.offset + static_cast<SlotId>(at[i]);
      KVO_EXPECTS(slots_[slot].state == State::kFree && !slots_[slot].being_read && !taken[at[i]],
                  "adopt_ready: slot " + std::to_string(at[i]) + " of tier " + std::to_string(t) +
                      " is in use or given twice");
      KVO_EXPECTS(index_->find(hashes[i]) == kNil,
                  "adopt_ready: block hash " + hash_str(hashes[i]) + " is stored already");
      taken[at[i]] = true;
    }
    if (hashes.empty()) return;
    // Rebuild the free stack without the adopted slots: the freed ones stay at the bottom in
    // their order, the never-used ones go on top in descending order (so they pop ascending).
    std::vector<SlotId> free;
    free.reserve(tier.free_count());
    for (SlotId slot : tier.free)
      if (!taken[slot - tier.offset]) free.push_back(slot);
    for (SlotId slot = tier.offset + tier.size; slot-- > tier.unused;)
      if (!taken[slot - tier.offset]) free.push_back(slot);
    tier.free.swap(free);
    tier.unused = tier.offset + tier.size;
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      place(tier.offset + static_cast<SlotId>(at[i]), hashes[i], State::kReady);
      stored_[t].push_back(hashes[i]);
    }
    stats_.adopted += hashes.size();
    flush_events();
  }

  void discard(std::span<const BlockHash> hashes) {
    for (BlockHash hash : hashes) {
      const SlotId slot = index_->find(hash);
      KVO_EXPECTS(slot != kNil, "discard: block hash " + hash_str(hash) + " is not stored");
      KVO_EXPECTS(is_idle(slot),
                  "discard: block hash " + hash_str(hash) +
                      " is pending, pinned or in flight; only a ready idle block can be dropped");
    }
    for (BlockHash hash : hashes) {
      const SlotId slot = index_->find(hash);
      if (slot == kNil) continue;  // given twice
      removed_[slots_[slot].tier].push_back(hash);
      unlink(slot);
      free_slot(slot);
      ++stats_.discarded;
    }
    flush_events();
  }

  [[nodiscard]] const TieredConfig& config() const noexcept { return config_; }

  TieredStats tiered_stats() const {
    TieredStats s = stats_;
    for (const Tier& tier : tiers_) {
      TieredStats::Tier t;
      t.medium   = tier.medium;
      t.capacity = tier.size;
      t.ready    = tier.count[static_cast<int>(State::kReady)] +
                tier.count[static_cast<int>(State::kLeaving)];
      t.pending = tier.count[static_cast<int>(State::kPending)] +
                  tier.count[static_cast<int>(State::kArriving)] +
                  tier.count[static_cast<int>(State::kReserved)];
      t.free_slots = tier.free_count();
      s.tiers.push_back(t);
    }
    s.in_flight = plans_.size();
    return s;
  }

  std::size_t memory_bytes() const noexcept {
    std::size_t bytes = sizeof(*this) + slots_.capacity() * sizeof(Slot) +
                        links_.capacity() * sizeof(detail::Links) + index_->memory_bytes();
    for (const Tier& tier : tiers_)
      bytes += sizeof(Tier) + tier.free.capacity() * sizeof(SlotId);
    return bytes;
  }

  void check_invariants() const {
    auto fail = [](const std::string& what) {
      throw std::logic_error("kvoffload invariant broken: tiered " + what);
    };
    std::size_t pinned = 0, indexed = 0;
    std::size_t being_read = 0;
    for (std::size_t t = 0; t < tiers_.size(); ++t) {
      const Tier& tier = tiers_[t];
      std::array<std::size_t, kStates> count{};
      std::size_t idle = 0, listed = 0;
      for (SlotId slot = tier.offset; slot < tier.offset + tier.size; ++slot) {
        const Slot& s = slots_[slot];
        if (s.tier != t) fail("slot in the wrong tier");
        if (s.protected_in_call) fail("protected flag left set");
        ++count[static_cast<int>(s.state)];
        if (s.state != State::kReady && s.refs != 0) fail("references on a block not ready");
        pinned += s.refs > 0;
        idle += is_idle(slot);
        being_read += s.being_read;
        const bool in_index = s.state != State::kFree && s.state != State::kReserved;
        if (in_index) {
          ++indexed;
          if (index_->find(s.hash) != slot) fail("index does not map a block to its slot");
        }
      }
      for (SlotId slot = tier.lru.front(); slot != kNil; slot = tier.lru.next(slot)) {
        const State st = slots_[slot].state;
        if (slots_[slot].tier != t || st == State::kFree || st == State::kReserved) {
          fail("LRU list of tier " + std::to_string(t) + " holds a slot it should not");
        }
        if (++listed > tier.size) fail("LRU list cycles");
      }
      if (listed != tier.size - count[0] - count[static_cast<int>(State::kReserved)]) {
        fail("LRU list misses blocks");
      }
      if (count != tier.count) fail("state counts drifted in tier " + std::to_string(t));
      if (idle != tier.idle) fail("idle count drifted in tier " + std::to_string(t));
      if (tier.free_count() != count[0]) fail("free stack does not hold every free slot");
      for (SlotId slot = tier.unused; slot < tier.offset + tier.size; ++slot)
        if (slots_[slot].state != State::kFree) fail("a never-used slot is in use");
      for (SlotId slot : tier.free)
        if (slots_[slot].state != State::kFree || slots_[slot].tier != t) fail("free stack");
    }
    if (pinned != pinned_) fail("pinned count drifted");
    if (indexed != index_->size()) fail("index holds stale hashes");
    std::size_t demotions = 0;
    for (const auto& [id, flight] : plans_) {
      const State src = slots_[flight.source].state;
      const State dst = slots_[flight.destination].state;
      if (flight.plan.kind == TransferKind::kDemotion) {
        ++demotions;
        if (dst != State::kArriving || !slots_[flight.source].being_read) fail("demotion state");
      } else if (src != State::kLeaving || dst != State::kReserved ||
                 moving_.at(flight.source) != id) {
        fail("promotion state");
      }
    }
    if (demotions != being_read) fail("read flags do not match the demotions in flight");
    if (moving_.size() + demotions != plans_.size()) fail("moving map drifted");
  }

 private:
  struct Tier {
    explicit Tier(std::vector<detail::Links>* links) : lru{links} {}
    Medium medium{Medium::kCpu};
    SlotId offset{0};
    SlotId size{0};
    detail::IntrusiveList lru;  // every indexed block of the tier, oldest first
    SlotId unused{0};           // slots [unused, offset + size) were never used
    std::vector<SlotId> free;   // freed slots, a stack
    // Like the core: never-used slots first in ascending order, then the most recently freed.
    [[nodiscard]] std::size_t free_count() const noexcept {
      return (offset + size - unused) + free.size();
    }
    SlotId pop_free() noexcept {
      if (unused < offset + size) return unused++;
      const SlotId slot = free.back();
      free.pop_back();
      return slot;
    }
    std::array<std::size_t, kStates> count{};
    std::size_t idle{0};  // ready, no references, not in flight
  };
  struct Flight {
    TransferPlan plan;
    SlotId source{0};       // global
    SlotId destination{0};  // global
  };

  [[nodiscard]] bool is_idle(SlotId slot) const noexcept {
    return slots_[slot].state == State::kReady && slots_[slot].refs == 0;
  }
  [[nodiscard]] bool evictable(SlotId slot) const noexcept {
    return is_idle(slot) && !slots_[slot].protected_in_call;
  }
  [[nodiscard]] TierLocation location(SlotId slot) const noexcept {
    const Tier& tier = tiers_[slots_[slot].tier];
    return TierLocation{slots_[slot].tier, tier.medium, static_cast<BlockId>(slot - tier.offset)};
  }

  void set_state(SlotId slot, State state) noexcept {
    Slot& s    = slots_[slot];
    Tier& tier = tiers_[s.tier];
    if (is_idle(slot)) --tier.idle;
    --tier.count[static_cast<int>(s.state)];
    s.state = state;
    ++tier.count[static_cast<int>(state)];
    if (is_idle(slot)) ++tier.idle;
  }
  void release_pin(SlotId slot) noexcept {
    --pinned_;
    ++tiers_[slots_[slot].tier].idle;
  }

  /// A block takes a slot handed out by take_slots (or a free one): indexed, most recent.
  void place(SlotId slot, BlockHash hash, State state) {
    Slot& s     = slots_[slot];
    s.hash      = hash;
    s.refs      = 0;
    s.hits      = 0;
    s.candidate = false;
    set_state(slot, state);
    index_->insert(hash, slot);
    tiers_[s.tier].lru.push_back(slot);
  }
  /// Take an indexed block out of its list and the index; the slot stays with the caller.
  void unlink(SlotId slot) noexcept {
    tiers_[slots_[slot].tier].lru.remove(slot);
    index_->erase(slots_[slot].hash, slot);
    set_state(slot, State::kFree);
  }
  void free_slot(SlotId slot) {
    if (slots_[slot].state != State::kFree) set_state(slot, State::kFree);
    tiers_[slots_[slot].tier].free.push_back(slot);
  }

  void check_writable(SlotId slot, const char* call, BlockHash hash) const {
    if (!slots_[slot].being_read) return;
    std::uint64_t reader = 0;
    for (const auto& [id, flight] : plans_) {
      if (flight.plan.kind == TransferKind::kDemotion && flight.source == slot) reader = id;
    }
    detail::throw_logic_error(__FILE__,
                              __LINE__,
                              std::string{call} + ": block hash " + hash_str(hash) +
                                  "'s slot is still read by demotion plan " +
                                  std::to_string(reader) + ": complete that transfer first");
  }

  void protect(std::span<const BlockHash> hashes) {
    for (BlockHash hash : hashes) {
      const SlotId slot = index_->find(hash);
      if (slot != kNil && !slots_[slot].protected_in_call) {
        slots_[slot].protected_in_call = true;
        protected_.push_back(slot);
      }
    }
  }
  void unprotect() noexcept {
    for (SlotId slot : protected_)
      slots_[slot].protected_in_call = false;
    protected_.clear();
  }

  std::uint64_t new_plan(TransferKind kind, SlotId source, SlotId destination, BlockHash hash) {
    const TierLocation from = location(source);
    const TierLocation to   = location(destination);
    const std::uint64_t id  = ++last_plan_id_;
    const TransferPlan plan{
        id, kind, hash, from.tier, from.medium, from.slot, to.tier, to.medium, to.slot};
    if (config_.instant_transfers) {
      Flight flight{plan, source, destination};
      finish(flight, true);
    } else {
      plans_.emplace(id, Flight{plan, source, destination});
      sink_->push_back(plan);
    }
    return id;
  }

  /// Hands `count` slots of tier t to the caller (fewer only if the tier has neither free nor
  /// evictable slots): free ones first, then the LRU evictable blocks, demoted to tier t + 1
  /// (the last tier drops them). Deeper moves are planned first, so plans run in order.
  void take_slots(std::size_t t, std::size_t count, std::vector<SlotId>& out) {
    Tier& tier = tiers_[t];
    if (count > tier.free_count()) {
      std::vector<SlotId>& victims = victims_[t];
      victims.clear();
      const std::size_t wanted = count - tier.free_count();
      for (SlotId slot = tier.lru.front(); slot != kNil && victims.size() < wanted;
           slot        = tier.lru.next(slot)) {
        if (evictable(slot)) victims.push_back(slot);
      }
      // The slots of the next tier: vacated_[t + 1] is this recursion level's scratch.
      std::vector<SlotId>& room = vacated_[t + 1];
      room.clear();
      if (t + 1 < tiers_.size()) take_slots(t + 1, victims.size(), room);
      for (std::size_t i = 0; i < victims.size(); ++i) {
        const SlotId victim  = victims[i];
        const BlockHash hash = slots_[victim].hash;
        removed_[t].push_back(hash);
        unlink(victim);
        if (i < room.size()) {
          ++stats_.demotions;
          place(room[i], hash, State::kArriving);
          slots_[victim].being_read = true;
          new_plan(TransferKind::kDemotion, victim, room[i], hash);
        } else {
          ++stats_.dropped;
          if (evicted_ != nullptr) evicted_->push_back(hash);
        }
        // Onto the free stack, as the core does with its victims: handed out below.
        tier.free.push_back(victim);
      }
    }
    while (count > 0 && tier.free_count() > 0) {
      out.push_back(tier.pop_free());
      --count;
    }
  }

  /// Plan the move of the ready idle block at `slot` to tier `to`; false if that tier has no
  /// room (nothing changes then).
  bool start_move(SlotId slot, std::size_t to, TransferKind kind) {
    set_state(slot, State::kLeaving);  // not evictable while room is made for it
    std::vector<SlotId>& room = vacated_[to];
    room.clear();
    take_slots(to, 1, room);
    if (room.empty()) {
      set_state(slot, State::kReady);
      return false;
    }
    const SlotId destination = room.front();
    slots_[destination].hash = slots_[slot].hash;
    set_state(destination, State::kReserved);
    ++(kind == TransferKind::kPrefetch ? stats_.prefetches : stats_.promotions);
    const std::uint64_t id  = ++last_plan_id_;
    const TierLocation from = location(slot);
    const TierLocation dest = location(destination);
    const TransferPlan plan{id,
                            kind,
                            slots_[slot].hash,
                            from.tier,
                            from.medium,
                            from.slot,
                            dest.tier,
                            dest.medium,
                            dest.slot};
    Flight flight{plan, slot, destination};
    if (config_.instant_transfers) {
      finish(flight, true);
    } else {
      plans_.emplace(id, flight);
      moving_.emplace(slot, id);
      sink_->push_back(plan);
    }
    return true;
  }

  void promote_candidates() {
    std::deque<BlockHash> later;
    while (!candidates_.empty()) {
      const BlockHash hash = candidates_.front();
      candidates_.pop_front();
      const SlotId slot = index_->find(hash);
      if (slot == kNil) continue;
      slots_[slot].candidate = false;
      if (slots_[slot].state != State::kReady || slots_[slot].tier == 0) continue;
      if (slots_[slot].hits < config_.promote_after) continue;
      // A protected candidate (named by the touch in progress) may move: it is not evicted.
      if (slots_[slot].refs > 0) {
        if (!config_.instant_transfers) {
          slots_[slot].candidate = true;  // pinned now: try again next time
          later.push_back(hash);
        }
        continue;
      }
      (void)start_move(slot, slots_[slot].tier - 1u, TransferKind::kPromotion);
    }
    candidates_.swap(later);
  }

  void finish(const Flight& flight, bool success) {
    const SlotId source      = flight.source;
    const SlotId destination = flight.destination;
    const BlockHash hash     = flight.plan.hash;
    if (flight.plan.kind == TransferKind::kDemotion) {
      slots_[source].being_read = false;
      if (success) {
        set_state(destination, State::kReady);
        stored_[slots_[destination].tier].push_back(hash);
      } else {
        unlink(destination);
        free_slot(destination);
        ++stats_.dropped;
      }
      return;
    }
    moving_.erase(source);
    if (!success) {
      set_state(source, State::kReady);
      free_slot(destination);
      return;
    }
    removed_[slots_[source].tier].push_back(hash);
    unlink(source);
    free_slot(source);
    set_state(destination, State::kFree);
    place(destination, hash, State::kReady);
    stored_[slots_[destination].tier].push_back(hash);
  }

  void emit(std::vector<BlockHash>& hashes, std::size_t tier, bool removed) {
    if (hashes.empty()) return;
    if (config_.enable_events) {
      events_.push_back(OffloadingEvent{hashes, config_.block_size, tiers_[tier].medium, removed});
    }
    hashes.clear();
  }
  void flush_events() {
    for (std::size_t t = 0; t < tiers_.size(); ++t)
      emit(removed_[t], t, true);
    for (std::size_t t = 0; t < tiers_.size(); ++t)
      emit(stored_[t], t, false);
  }

  TieredConfig config_;
  std::vector<Slot> slots_;
  std::vector<detail::Links> links_;
  std::unique_ptr<detail::FlatIndex> index_;
  std::vector<Tier> tiers_;
  std::size_t pinned_{0};
  ManagerStats counters_{};
  TieredStats stats_{};
  std::vector<OffloadingEvent> events_;

  std::unordered_map<std::uint64_t, Flight> plans_;   // in flight
  std::unordered_map<SlotId, std::uint64_t> moving_;  // source slot -> promotion/prefetch plan
  std::uint64_t last_plan_id_{0};
  std::vector<TransferPlan> queued_;           // for take_transfer_plans()
  std::vector<TransferPlan>* sink_{&queued_};  // where new plans go during a call
  std::vector<BlockHash>* evicted_{nullptr};   // drops reported by the prepare_store in progress
  std::deque<BlockHash> candidates_;           // promotion candidates
  std::deque<BlockHash> hints_;                // prefetch hints

  // Scratch reused across calls.
  std::vector<std::vector<BlockHash>> removed_, stored_;  // events of the call, per tier
  std::vector<std::vector<SlotId>> victims_, vacated_;    // per tier (take_slots recursion)
  std::vector<SlotId> protected_, found_;
  std::vector<BlockHash> fresh_, distinct_;
};

TieredOffloadingManager::TieredOffloadingManager(const TieredConfig& config)
    : impl_{std::make_unique<Impl>(config)} {}
TieredOffloadingManager::~TieredOffloadingManager() = default;

std::optional<std::size_t> TieredOffloadingManager::lookup(std::span<const BlockHash> hashes) {
  return impl_->lookup(hashes);
}
LoadStoreSpec TieredOffloadingManager::prepare_load(std::span<const BlockHash> hashes) {
  return impl_->prepare_load(hashes);
}
void TieredOffloadingManager::touch(std::span<const BlockHash> hashes) {
  impl_->touch(hashes);
}
void TieredOffloadingManager::complete_load(std::span<const BlockHash> hashes) {
  impl_->complete_load(hashes);
}
std::optional<PrepareStoreOutput> TieredOffloadingManager::prepare_store(
    std::span<const BlockHash> hashes) {
  return impl_->prepare_store(hashes);
}
void TieredOffloadingManager::complete_store(std::span<const BlockHash> hashes, bool success) {
  impl_->complete_store(hashes, success);
}
std::vector<OffloadingEvent> TieredOffloadingManager::take_events() {
  return impl_->take_events();
}
ManagerStats TieredOffloadingManager::stats() const {
  return impl_->stats();
}
void TieredOffloadingManager::clear() {
  impl_->clear();
}
std::vector<std::optional<std::uint32_t>> TieredOffloadingManager::lookup_tiers(
    std::span<const BlockHash> hashes) const {
  return impl_->lookup_tiers(hashes);
}
std::vector<TierLocation> TieredOffloadingManager::prepare_load_tiers(
    std::span<const BlockHash> hashes) {
  return impl_->prepare_load_tiers(hashes);
}
std::vector<TransferPlan> TieredOffloadingManager::take_transfer_plans() {
  return impl_->take_transfer_plans();
}
void TieredOffloadingManager::complete_transfer(std::uint64_t plan_id, bool success) {
  impl_->complete_transfer(plan_id, success);
}
void TieredOffloadingManager::hint_prefetch(std::span<const BlockHash> hashes) {
  impl_->hint_prefetch(hashes);
}
std::vector<TransferPlan> TieredOffloadingManager::process_prefetch(
    std::span<const BlockHash> keep) {
  return impl_->process_prefetch(keep);
}
void TieredOffloadingManager::complete_prefetch(std::span<const BlockHash> hashes, bool success) {
  impl_->complete_prefetch(hashes, success);
}
void TieredOffloadingManager::adopt_ready(std::uint32_t tier,
                                          std::span<const BlockHash> hashes,
                                          std::span<const BlockId> slots) {
  impl_->adopt_ready(tier, hashes, slots);
}
void TieredOffloadingManager::discard(std::span<const BlockHash> hashes) {
  impl_->discard(hashes);
}
const TieredConfig& TieredOffloadingManager::config() const noexcept {
  return impl_->config();
}
TieredStats TieredOffloadingManager::tiered_stats() const {
  return impl_->tiered_stats();
}
void TieredOffloadingManager::check_invariants() const {
  impl_->check_invariants();
}

}  // namespace kvoffload
