// Weighted LRU (formula in include/kvoffload/weighted_lru.hpp): one recency list per frequency
// level; the victim is the list head of lowest priority = stamp + D * level.
#include "weighted_lru.hpp"

#include "intrusive_list.hpp"
#include "manager_core.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/weighted_lru.hpp>

#include <array>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

namespace kvoffload {
namespace detail {
namespace {

constexpr std::uint32_t kMaxFrequency = 255;  // level 8
constexpr int kLevels                 = 9;    // floor(log2(1 + f)) for f in [0, 255]
constexpr double kMaxFrequencyWeight  = 1e6;

void validate_frequency_weight(double weight) {
  KVO_EXPECTS(
      std::isfinite(weight) && weight >= 0.0 && weight <= kMaxFrequencyWeight,
      "weighted: frequency_weight must be a number in [0, 1e6], got " + std::to_string(weight));
}

constexpr int level_of(std::uint32_t frequency) noexcept {
  return static_cast<int>(std::bit_width(frequency + 1)) - 1;
}

class WeightedLruPolicy final : public EvictionPolicy {
 public:
  WeightedLruPolicy(std::size_t num_blocks, double frequency_weight, std::uint32_t rebase_period)
      : step_{static_cast<std::uint64_t>(
            std::llround(frequency_weight * static_cast<double>(num_blocks)))},
        rebase_period_{rebase_period},
        links_(num_blocks),
        stamp_(num_blocks, 0),
        frequency_(num_blocks, 0),
        lists_{make_lists<kLevels>(&links_)} {
    KVO_EXPECTS(rebase_period >= 1, "weighted: rebase period must be positive");
  }

  const char* name() const noexcept override { return "weighted"; }

  void on_insert(SlotId slot, BlockHash) override {
    frequency_[slot] = 0;
    stamp_[slot]     = tick();
    lists_[0].push_back(slot);
  }

  void on_touch(SlotId slot, bool ready) override {
    // Touching a pending block refreshes its recency only: it has not been used yet.
    const int from = level_of(frequency_[slot]);
    if (ready && frequency_[slot] < kMaxFrequency) ++frequency_[slot];
    lists_[from].remove(slot);
    stamp_[slot] = tick();
    lists_[level_of(frequency_[slot])].push_back(slot);
  }

  // A k-way merge of the level lists by priority, one cursor per list. A non-evictable block is
  // skipped only when it is the lowest remaining candidate, so the blocks skipped are exactly
  // those that would have been taken had they been evictable.
  bool select_victims(std::size_t count,
                      const SlotView& view,
                      std::vector<SlotId>& out) const override {
    std::array<SlotId, kLevels> cursor;
    for (int l = 0; l < kLevels; ++l)
      cursor[l] = lists_[l].front();
    for (std::size_t taken = 0; taken < count;) {
      int best                 = -1;
      std::uint64_t best_key   = 0;
      std::uint32_t best_stamp = 0;
      for (int l = 0; l < kLevels; ++l) {
        const SlotId slot = cursor[l];
        if (slot == kNil) continue;
        const std::uint64_t key = priority(slot, l);
        if (best < 0 || key < best_key || (key == best_key && stamp_[slot] < best_stamp)) {
          best       = l;
          best_key   = key;
          best_stamp = stamp_[slot];
        }
      }
      if (best < 0) return false;
      const SlotId slot = cursor[best];
      cursor[best]      = lists_[best].next(slot);
      if (view.evictable(slot)) {
        out.push_back(slot);
        ++taken;
      }
    }
    return true;
  }

  void evict(std::span<const SlotId> victims, const SlotView&) override {
    for (SlotId slot : victims)
      lists_[level_of(frequency_[slot])].remove(slot);
  }
  void erase(SlotId slot) override { lists_[level_of(frequency_[slot])].remove(slot); }

  std::size_t memory_bytes() const noexcept override {
    return sizeof(*this) + links_.capacity() * sizeof(Links) +
           stamp_.capacity() * sizeof(std::uint32_t) + frequency_.capacity();
  }

  void check_invariants(const SlotView& view, std::size_t resident) const override {
    auto fail = [](const char* what) {
      throw std::logic_error(std::string{"kvoffload invariant broken: weighted LRU "} + what);
    };
    std::size_t total = 0;
    for (int l = 0; l < kLevels; ++l) {
      std::uint32_t last = 0;
      const bool linked  = lists_[l].check([&](SlotId slot) {
        if (view[slot].state == SlotState::kFree) fail("free slot in a list");
        if (level_of(frequency_[slot]) != l) fail("block in the list of another level");
        if (stamp_[slot] < last || stamp_[slot] > clock_) fail("stamps out of order");
        if (view[slot].state == SlotState::kPending && frequency_[slot] != 0) {
          fail("pending block with a frequency");
        }
        last = stamp_[slot];
      });
      if (!linked) fail("list corrupt");
      total += lists_[l].size();
    }
    if (total != resident) fail("lists do not hold every block");
  }

  [[nodiscard]] WeightedLruEntry entry(SlotId slot) const noexcept {
    const int level = level_of(frequency_[slot]);
    return WeightedLruEntry{
        priority(slot, level), stamp_[slot], frequency_[slot], static_cast<std::uint32_t>(level)};
  }

 private:
  [[nodiscard]] std::uint64_t priority(SlotId slot, int level) const noexcept {
    return stamp_[slot] + step_ * static_cast<std::uint64_t>(level);
  }

  // Stamps are 32-bit to keep the policy at 13 bytes per slot. When the clock reaches
  // 2 * period - 1, every stamp moves down by `period` (O(n), once per `period` ticks): order
  // is kept, except that blocks untouched for more than `period` ticks (2^31 by default) all
  // become equally old.
  std::uint32_t tick() {
    if (clock_ == 2 * (rebase_period_ - 1) + 1) rebase();
    return ++clock_;
  }
  void rebase() noexcept {
    const std::uint32_t shift = rebase_period_;
    for (const IntrusiveList& list : lists_) {
      for (SlotId slot = list.front(); slot != kNil; slot = list.next(slot))
        stamp_[slot] = stamp_[slot] >= shift ? stamp_[slot] - shift : 0;
    }
    clock_ -= shift;
  }

  std::uint64_t step_;  // D = round(frequency_weight * num_blocks)
  std::uint32_t rebase_period_;
  std::uint32_t clock_{0};
  std::vector<Links> links_;
  std::vector<std::uint32_t> stamp_;
  std::vector<std::uint8_t> frequency_;
  std::array<IntrusiveList, kLevels> lists_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> make_weighted_lru_policy(std::size_t num_blocks,
                                                         double frequency_weight,
                                                         std::uint32_t rebase_period) {
  validate_frequency_weight(frequency_weight);
  return std::make_unique<WeightedLruPolicy>(num_blocks, frequency_weight, rebase_period);
}

std::optional<WeightedLruEntry> weighted_lru_entry(const EvictionPolicy& policy, SlotId slot) {
  const auto* weighted = dynamic_cast<const WeightedLruPolicy*>(&policy);
  if (weighted == nullptr) return std::nullopt;
  return weighted->entry(slot);
}

}  // namespace detail

std::unique_ptr<OffloadingManager> make_weighted_lru_manager(std::size_t num_blocks,
                                                             std::size_t block_size,
                                                             const WeightedLruConfig& config,
                                                             bool enable_events) {
  detail::validate_num_blocks(num_blocks);
  return std::make_unique<detail::CoreManager>(
      // The faster 4-bucket index fits: 16 (slot) + 32 (index) + 13 (policy) = 61 B per slot.
      detail::CoreConfig{.num_blocks             = num_blocks,
                         .block_size             = block_size,
                         .medium                 = Medium::kCpu,
                         .enable_events          = enable_events,
                         .index_buckets_per_slot = 4},
      detail::make_weighted_lru_policy(num_blocks, config.frequency_weight));
}

}  // namespace kvoffload
