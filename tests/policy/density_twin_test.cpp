// The density policy against a brute-force twin: the same classification, sketch and learned
// model, but no class lists, no victim walk and no plan memo: every decision comes from a
// linear scan over all resident blocks. Random call sequences (lockstep.hpp) must give the
// same answers, evictions, declines and events, with learned densities in play (a horizon of
// 16 references, re-estimated every 4).
#include "lockstep.hpp"
#include "policy/count_min.hpp"
#include "policy/hit_density.hpp"
#include "policy/manager_core.hpp"
#include "policy/policies.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <optional>
#include <tuple>

namespace kvoffload::testing {
namespace {

using detail::CoreConfig;
using detail::CoreManager;
using detail::CountMinSketch;
using detail::HitDensityModel;
using detail::RefClass;
using detail::SlotId;

constexpr std::uint64_t kHorizon  = 16;
constexpr std::uint64_t kInterval = 4;

/// Straight from the description in density_manager.hpp / docs/managers.md.
class BruteDensityPolicy final : public detail::EvictionPolicy {
 public:
  explicit BruteDensityPolicy(bool admission)
      : admission_{admission},
        sketch_{kHorizon, kHorizon},
        model_{{.horizon = kHorizon, .sample_shift = 0, .update_interval = kInterval}} {}

  const char* name() const noexcept override { return "brute-density"; }
  Hooks hooks() const noexcept override { return {.touch_request = true, .admission = true}; }

  void on_touch_request(std::span<const BlockHash> hashes, std::span<const SlotId> slots) override {
    if (hashes.empty()) return;
    std::vector<CountMinSketch::Cells> cells;
    std::vector<unsigned> counts;
    for (BlockHash h : hashes) {
      cells.push_back(sketch_.cells(h));
      counts.push_back(sketch_.estimate(cells.back()));
    }
    const bool continuation = hashes.size() >= 2 && counts[1] > 0;
    request_.clear();
    request_start_ = now_ + 1;
    std::vector<RefClass> classes;
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      classes.push_back(detail::reference_class(counts[i], hashes.size() - 1 - i, continuation));
      request_.try_emplace(hashes[i], classes.back());  // a repeat keeps its first class
    }
    for (std::size_t i = hashes.size(); i-- > 0;) {  // last to first
      ++now_;
      model_.observe(hashes[i], classes[i], now_);
      sketch_.increment(cells[i], counts[i]);
      if (slots[i] != detail::kNil) blocks_[slots[i]] = {classes[i], now_, sequence_ += kSpacing};
    }
  }
  void on_touch(SlotId, bool) override {}
  void on_insert(SlotId slot, BlockHash hash) override {
    if (!request_.contains(hash)) {  // stored without a touch: a new, unprotected reference
      ++now_;
      request_start_ = now_ + 1;
      request_.clear();
    }
    // A store's new blocks of one class with one stamp: each goes just before the previous one
    // in its class's order (the block nearest the prefix ends newest).
    const RefClass cls = class_of(hash);
    const auto run     = run_.find(cls);
    if (run != run_.end() && blocks_.at(run->second).stamp == now_) {
      blocks_[slot] = {cls, now_, blocks_.at(run->second).sequence - 1};
    } else {
      blocks_[slot] = {cls, now_, sequence_ += kSpacing};
    }
    run_[cls] = slot;
  }

  void admit(std::span<const BlockHash> fresh,
             std::size_t free_slots,
             const detail::SlotView& view,
             std::vector<bool>& admitted) const override {
    std::vector<SlotId> taken;
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      if (free_slots > 0) {
        --free_slots;
        continue;
      }
      const auto victim = next_victim(view, taken);
      if (!victim) continue;
      if (admission_ && model_.density(class_of(fresh[i]), 0) < victim->second) {
        admitted[i] = false;
      } else {
        taken.push_back(victim->first);
      }
    }
  }

  bool select_victims(std::size_t count,
                      const detail::SlotView& view,
                      std::vector<SlotId>& out) const override {
    std::vector<SlotId> taken;
    for (std::size_t i = 0; i < count; ++i) {
      const auto victim = next_victim(view, taken);
      if (!victim) return false;
      taken.push_back(victim->first);
    }
    out.insert(out.end(), taken.begin(), taken.end());
    return true;
  }

  void evict(std::span<const SlotId> victims, const detail::SlotView&) override {
    run_.clear();  // a store commits; its inserts follow
    for (SlotId s : victims)
      blocks_.erase(s);
  }
  void erase(SlotId slot) override { blocks_.erase(slot); }
  std::size_t memory_bytes() const noexcept override { return 0; }
  void check_invariants(const detail::SlotView&, std::size_t resident) const override {
    if (blocks_.size() != resident) throw std::logic_error("brute density: size");
  }

 private:
  struct Block {
    RefClass cls;
    std::uint64_t stamp;
    std::uint64_t sequence;  // position in its class's order (smaller = nearer the front)
  };

  RefClass class_of(BlockHash hash) const {
    const auto it = request_.find(hash);
    if (it != request_.end()) return it->second;
    return detail::reference_class(sketch_.estimate(hash), 2, false);
  }

  // Per class, the evictable block not yet taken that arrived first; of those, the lowest
  // (density, stamp, class), with the blocks of the last touch infinitely dense.
  std::optional<std::pair<SlotId, float>> next_victim(const detail::SlotView& view,
                                                      const std::vector<SlotId>& taken) const {
    std::map<RefClass, SlotId> head;
    for (const auto& [slot, b] : blocks_) {
      if (!view.evictable(slot) || std::find(taken.begin(), taken.end(), slot) != taken.end()) {
        continue;
      }
      auto [it, inserted] = head.try_emplace(b.cls, slot);
      if (!inserted && b.sequence < blocks_.at(it->second).sequence) it->second = slot;
    }
    std::optional<std::tuple<float, std::uint64_t, RefClass, SlotId>> best;
    for (const auto& [cls, slot] : head) {
      const Block& b  = blocks_.at(slot);
      const float d   = b.stamp >= request_start_ ? std::numeric_limits<float>::infinity()
                                                  : model_.density(cls, now_ - b.stamp);
      const auto cand = std::make_tuple(d, b.stamp, cls, slot);
      if (!best || cand < *best) best = cand;
    }
    if (!best) return std::nullopt;
    return std::make_pair(std::get<3>(*best), std::get<0>(*best));
  }

  static constexpr std::uint64_t kSpacing = 1U << 20;  // room for runs inserted before a block
  bool admission_;
  CountMinSketch sketch_;
  HitDensityModel model_;
  std::uint64_t now_{0};
  std::uint64_t request_start_{1};
  std::uint64_t sequence_{0};
  std::map<BlockHash, RefClass> request_;
  std::map<SlotId, Block> blocks_;
  std::map<RefClass, SlotId> run_;
};

std::unique_ptr<OffloadingManager> fast(std::size_t n, bool admission) {
  return std::make_unique<CoreManager>(
      CoreConfig{n, 64, Medium::kCpu, true},
      detail::make_density_policy(
          n, {.horizon = 1.0, .admission = admission}, 0, 1U << 30, kInterval, kHorizon));
}

std::unique_ptr<OffloadingManager> brute(std::size_t n, bool admission) {
  return std::make_unique<CoreManager>(CoreConfig{n, 64, Medium::kCpu, true},
                                       std::make_unique<BruteDensityPolicy>(admission));
}

TEST(DensityTwin, RandomSequencesMatchTheBruteForceTwin) {
  for (bool admission : {true, false}) {
    SCOPED_TRACE(admission ? "admission on" : "admission off");
    run_lockstep([admission](std::size_t n) { return fast(n, admission); },
                 [admission](std::size_t n) { return brute(n, admission); },
                 {.sequences = 1500, .steps = 80, .check = check_core});
  }
}

TEST(DensityTwin, TheSequencesReachLearnedDensitiesAndDeclines) {
  // Not vacuous: the same driver, one long sequence's worth of requests, re-estimates the model
  // and declines stores (the twin comparison above covers these paths).
  auto m = fast(4, true);
  std::mt19937_64 rng{7};
  for (int step = 0; step < 400; ++step) {
    Hashes request(1 + rng() % 4);
    for (auto& h : request)
      h = rng() % 24;
    const std::size_t hit = m->lookup(request).value_or(0);
    m->touch(request);
    const std::span<const BlockHash> all{request};
    if (auto out = m->prepare_store(all.subspan(hit))) {
      m->complete_store(out->block_hashes_to_store, true);
    }
    check_core(*m);
  }
  const auto& core = dynamic_cast<const CoreManager&>(*m);
  const auto state = detail::density_state(core.policy());
  const auto stats = m->stats();
  ASSERT_TRUE(state.has_value());
  EXPECT_GE(state->updates, 50U);
  EXPECT_GT(stats.stores_declined, 0U);
  EXPECT_GT(stats.evictions, 0U);
}

}  // namespace
}  // namespace kvoffload::testing
