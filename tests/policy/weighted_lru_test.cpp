// Weighted LRU: the priority formula, its eviction order, skipping, the clock rebase, and a
// lockstep comparison with LRU (weight 0) and with a brute-force twin of the policy.
#include "policy/weighted_lru.hpp"
#include "lockstep.hpp"
#include "policy/manager_core.hpp"
#include "test_util.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/weighted_lru.hpp>

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <map>
#include <tuple>

namespace kvoffload::testing {
namespace {

using detail::CoreConfig;
using detail::CoreManager;
using detail::SlotId;

/// Straight from the formula: per slot a stamp and a frequency; victims by a linear scan for
/// the lowest (stamp + D * floor(log2(1 + f)), stamp). The same clock rebase as the policy;
/// blocks the rebase made equal are taken lower level first, then in access order.
class BruteWeightedPolicy final : public detail::EvictionPolicy {
 public:
  BruteWeightedPolicy(std::size_t n, double weight, std::uint32_t period)
      : step_{static_cast<std::uint64_t>(std::llround(weight * static_cast<double>(n)))},
        period_{period} {}
  const char* name() const noexcept override { return "brute-weighted"; }
  void on_insert(SlotId slot, BlockHash) override {
    const std::uint32_t stamp = tick();
    blocks_[slot]             = {stamp, 0, ++sequence_};
  }
  void on_touch(SlotId slot, bool ready) override {
    Block& b = blocks_.at(slot);
    if (ready && b.frequency < 255) ++b.frequency;
    b.stamp    = tick();
    b.sequence = ++sequence_;
  }
  bool select_victims(std::size_t count,
                      const detail::SlotView& view,
                      std::vector<SlotId>& out) const override {
    std::vector<SlotId> taken;
    for (std::size_t i = 0; i < count; ++i) {
      std::optional<SlotId> best;
      for (const auto& [slot, b] : blocks_) {
        if (!view.evictable(slot) || std::find(taken.begin(), taken.end(), slot) != taken.end()) {
          continue;
        }
        if (!best || key(slot) < key(*best)) best = slot;
      }
      if (!best) return false;
      taken.push_back(*best);
    }
    out.insert(out.end(), taken.begin(), taken.end());
    return true;
  }
  void evict(std::span<const SlotId> victims, const detail::SlotView&) override {
    for (SlotId s : victims)
      blocks_.erase(s);
  }
  void erase(SlotId slot) override { blocks_.erase(slot); }
  std::size_t memory_bytes() const noexcept override { return 0; }
  void check_invariants(const detail::SlotView&, std::size_t resident) const override {
    if (blocks_.size() != resident) throw std::logic_error("brute: size");
  }

 private:
  struct Block {
    std::uint32_t stamp;
    std::uint32_t frequency;
    std::uint64_t sequence;  // never rebased: the access order
  };
  std::tuple<std::uint64_t, std::uint32_t, std::uint64_t, std::uint64_t> key(SlotId slot) const {
    const Block& b   = blocks_.at(slot);
    const auto level = static_cast<std::uint64_t>(std::bit_width(b.frequency + 1) - 1);
    return {b.stamp + step_ * level, b.stamp, level, b.sequence};
  }
  std::uint32_t tick() {
    if (clock_ == 2 * period_ - 1) {
      for (auto& [slot, b] : blocks_)
        b.stamp = b.stamp >= period_ ? b.stamp - period_ : 0;
      clock_ -= period_;
    }
    return ++clock_;
  }
  std::uint64_t step_;
  std::uint32_t period_;
  std::uint32_t clock_{0};
  std::uint64_t sequence_{0};
  std::map<SlotId, Block> blocks_;
};

std::unique_ptr<OffloadingManager> weighted(
    std::size_t n, double weight, std::uint32_t period = detail::kWeightedLruRebasePeriod) {
  return std::make_unique<CoreManager>(CoreConfig{n, 64, Medium::kCpu, true},
                                       detail::make_weighted_lru_policy(n, weight, period));
}

TEST(WeightedLru, WeightZeroIsExactlyLru) {
  run_lockstep(
      [](std::size_t n) { return make_weighted_lru_manager(n, 64, {.frequency_weight = 0}); },
      [](std::size_t n) { return make_lru_manager(n, 64); },
      {.check = check_core});
}

TEST(WeightedLru, MatchesTheBruteForceFormulaAtSeveralWeights) {
  for (double weight : {0.25, 1.0, 3.0}) {
    SCOPED_TRACE("frequency_weight " + std::to_string(weight));
    run_lockstep(
        [weight](std::size_t n) { return weighted(n, weight); },
        [weight](std::size_t n) {
          return std::make_unique<CoreManager>(
              CoreConfig{n, 64, Medium::kCpu, true},
              std::make_unique<BruteWeightedPolicy>(n, weight, detail::kWeightedLruRebasePeriod));
        },
        {.sequences = 800, .check = check_core});
  }
}

TEST(WeightedLru, ClockRebaseKeepsTheOrderOfRecentBlocks) {
  // A rebase every few ticks: ordering must still match the brute force, which clamps alike.
  for (std::uint32_t period : {3u, 7u, 20u}) {
    SCOPED_TRACE("rebase period " + std::to_string(period));
    run_lockstep([period](std::size_t n) { return weighted(n, 0.5, period); },
                 [period](std::size_t n) {
                   return std::make_unique<CoreManager>(
                       CoreConfig{n, 64, Medium::kCpu, true},
                       std::make_unique<BruteWeightedPolicy>(n, 0.5, period));
                 },
                 {.sequences = 500, .check = check_core});
  }
}

TEST(WeightedLru, AFrequentlyTouchedBlockOutlivesNewerOnes) {
  // Capacity 4, weight 1: D = 4 ticks per level. Block 1 touched 3 times reaches level 2.
  auto m = make_weighted_lru_manager(4, 64, {.frequency_weight = 1.0});
  store(*m, {1});
  for (int i = 0; i < 3; ++i)
    m->touch(Hashes{1});
  store(*m, {2, 3, 4});  // stamps: 1 at tick 4 (+8 credit = 12), 2..4 at ticks 5..7
  auto out = m->prepare_store(Hashes{5});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{2}));
  m->complete_store(Hashes{5});
  // Plain LRU with the same calls evicts block 1 (the least recently used).
  auto lru = make_lru_manager(4, 64);
  store(*lru, {1});
  for (int i = 0; i < 3; ++i)
    lru->touch(Hashes{1});
  store(*lru, {2, 3, 4});
  auto lru_out = lru->prepare_store(Hashes{5});
  ASSERT_TRUE(lru_out);
  EXPECT_EQ(lru_out->block_hashes_evicted, (Hashes{1}));
  // Block 1's credit (priority 12) outlasts newer blocks until they pass it: 3 (6), 4 (7),
  // 5 (8) go first; then 6, 7, 8 (stamps 9, 10, 11) and only then 1.
  out = m->prepare_store(Hashes{6, 7, 8});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{3, 4, 5}));
  m->complete_store(Hashes{6, 7, 8});
  out = m->prepare_store(Hashes{9, 10, 11, 12});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{6, 7, 8, 1}));
  expect_invariants(*m);
}

TEST(WeightedLru, PriorityFollowsTheDocumentedFormula) {
  constexpr std::size_t n = 10;
  auto policy             = detail::make_weighted_lru_policy(n, 0.5);
  const auto* p           = policy.get();
  CoreManager m{CoreConfig{n, 64, Medium::kCpu, true}, std::move(policy)};
  const std::uint64_t step = 5;  // round(0.5 * 10)
  store(m, {100});               // slot 0, tick 1
  for (std::uint32_t touches = 1; touches <= 300; ++touches) {
    m.touch(Hashes{100});
    const auto e = detail::weighted_lru_entry(*p, 0);
    ASSERT_TRUE(e);
    const std::uint32_t f = std::min<std::uint32_t>(touches, 255);
    EXPECT_EQ(e->frequency, f);
    EXPECT_EQ(e->level, static_cast<std::uint32_t>(std::floor(std::log2(1.0 + f))));
    EXPECT_EQ(e->stamp, 1 + touches);
    EXPECT_EQ(e->priority, e->stamp + step * e->level);
  }
  EXPECT_EQ(detail::weighted_lru_entry(*p, 0)->level, 8u);  // saturated at f = 255
  m.check_invariants();
}

TEST(WeightedLru, TouchingAPendingBlockAddsRecencyButNoFrequency) {
  auto policy   = detail::make_weighted_lru_policy(4, 1.0);
  const auto* p = policy.get();
  CoreManager m{CoreConfig{4, 64, Medium::kCpu, true}, std::move(policy)};
  auto out = m.prepare_store(Hashes{7});
  ASSERT_TRUE(out);
  m.touch(Hashes{7});
  m.touch(Hashes{7});
  auto e = detail::weighted_lru_entry(*p, 0);
  EXPECT_EQ(e->frequency, 0u);
  EXPECT_EQ(e->stamp, 3u);
  m.complete_store(Hashes{7});
  m.touch(Hashes{7});
  e = detail::weighted_lru_entry(*p, 0);
  EXPECT_EQ(e->frequency, 1u);
  EXPECT_EQ(e->level, 1u);
  m.check_invariants();
}

TEST(WeightedLru, VictimsSkipPinnedPendingAndNamedBlocks) {
  auto m = make_weighted_lru_manager(5, 64, {.frequency_weight = 0.5});
  store(*m, {1, 2, 3, 4});
  ASSERT_TRUE(m->prepare_store(Hashes{5}));      // 5 pending
  (void)m->prepare_load(Hashes{1});              // 1 pinned
  auto out = m->prepare_store(Hashes{2, 6, 7});  // 2 named by the call
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_to_store, (Hashes{6, 7}));
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{3, 4}));
  // Full: 1 pinned, 5/6/7 pending, so only 2 is evictable.
  out = m->prepare_store(Hashes{8});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{2}));
  EXPECT_FALSE(m->prepare_store(Hashes{9}));
  expect_invariants(*m);
}

TEST(WeightedLru, RejectsBadWeightsNamingTheValue) {
  for (double bad : {-0.5,
                     2e6,
                     std::numeric_limits<double>::infinity(),
                     std::numeric_limits<double>::quiet_NaN()}) {
    try {
      (void)make_weighted_lru_manager(8, 64, {.frequency_weight = bad});
      ADD_FAILURE() << "accepted frequency_weight " << bad;
    } catch (const logic_error& e) {
      EXPECT_NE(std::string{e.what()}.find("frequency_weight"), std::string::npos) << e.what();
      EXPECT_NE(std::string{e.what()}.find(std::to_string(bad)), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW((void)make_weighted_lru_manager(0, 64), logic_error);
}

TEST(WeightedLru, MetadataStaysWithin64BytesPerSlot) {
  constexpr std::size_t n = 1'000'000;
  auto m                  = make_weighted_lru_manager(n, 64);
  const ManagerStats s    = m->stats();
  const double per_slot   = static_cast<double>(s.metadata_bytes) / n;
  EXPECT_LE(per_slot, 64.0);
  // At least the core's 16-byte slot record, the index and the policy's 13 bytes.
  EXPECT_GE(per_slot, 16.0 + 16.0 + 13.0);
}

}  // namespace
}  // namespace kvoffload::testing
