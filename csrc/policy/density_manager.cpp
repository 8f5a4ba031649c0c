// The density policy (include/kvoffload/density_manager.hpp): one recency list per reference
// class; the victim is the list head of lowest learned hit density (hit_density.hpp), and a
// new block is declined when its density at age 0 is below its victim's.
#include "count_min.hpp"
#include "hit_density.hpp"
#include "intrusive_list.hpp"
#include "manager_core.hpp"
#include "policies.hpp"

#include <kvoffload/density_manager.hpp>
#include <kvoffload/error.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

namespace kvoffload {
namespace detail {
namespace {

template <std::size_t N>
constexpr std::array<SlotId, N> make_filled(SlotId value) {
  std::array<SlotId, N> a{};
  a.fill(value);
  return a;
}

constexpr double kMaxHorizon           = 1024.0;
constexpr std::uint64_t kMinReferences = 4096;                    // horizon floor, references
constexpr std::uint64_t kMaxReferences = std::uint64_t{1} << 30;  // horizon cap, references
constexpr std::size_t kMaxSketchWidth  = std::size_t{1} << 26;    // 128 MiB of counters

void validate(const DensityConfig& config) {
  KVO_EXPECTS(
      std::isfinite(config.horizon) && config.horizon >= 1.0 && config.horizon <= kMaxHorizon,
      "density: horizon must be a number in [1, 1024], got " + std::to_string(config.horizon));
}

std::uint64_t horizon_references(std::size_t num_blocks, double horizon, std::uint64_t floor) {
  const double refs = horizon * static_cast<double>(num_blocks);
  if (refs >= static_cast<double>(kMaxReferences)) return kMaxReferences;
  return std::max<std::uint64_t>(floor, static_cast<std::uint64_t>(refs));
}

class DensityPolicy final : public EvictionPolicy {
 public:
  DensityPolicy(std::size_t num_blocks,
                const DensityConfig& config,
                int sample_shift,
                std::uint32_t rebase_period,
                std::uint64_t horizon,
                std::uint64_t update_interval)
      : admission_{config.admission},
        rebase_period_{rebase_period},
        links_(num_blocks),
        stamp_(num_blocks, 0),
        class_(num_blocks, 0),
        lists_{make_lists<kRefClasses>(&links_)},
        sketch_{std::min<std::size_t>(static_cast<std::size_t>(horizon), kMaxSketchWidth), horizon},
        model_{HitDensityModel::Options{
            .horizon = horizon, .sample_shift = sample_shift, .update_interval = update_interval}} {
    KVO_EXPECTS(rebase_period >= 1 && rebase_period <= (std::uint32_t{1} << 30),
                "density: rebase period must be in [1, 2^30]");
  }

  const char* name() const noexcept override { return "density"; }
  // admit() also plans the victims select_victims reuses, so it runs even without admission.
  Hooks hooks() const noexcept override { return {.touch_request = true, .admission = true}; }

  void on_touch_request(std::span<const BlockHash> hashes, std::span<const SlotId> slots) override {
    const std::size_t n = hashes.size();
    if (n == 0) return;
    ++epoch_;
    cells_.resize(n);
    counts_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      cells_[i]  = sketch_.cells(hashes[i]);
      counts_[i] = static_cast<std::uint8_t>(sketch_.estimate(cells_[i]));
    }
    const bool continuation = n >= 2 && counts_[1] > 0;
    begin_request(n);
    request_start_ = stamp_now() + 1;
    for (std::size_t i = 0; i < n; ++i) {
      const RefClass cls = reference_class(counts_[i], n - 1 - i, continuation);
      remember(hashes[i], cls, cells_[i].mix);
      classes_[i] = cls;
    }
    // Last to first, like the core's touch: the prefix head gets the newest stamp, so within a
    // class a request's blocks leave tail first and its reusable prefix stays whole longest.
    for (std::size_t i = n; i-- > 0;) {
      tick();
      model_.observe(hashes[i], classes_[i], now_, model_.sampled_mix(cells_[i].mix));
      // counts_ predate this request's increments: a hash repeated in the request (or a
      // counter shared with an earlier one) may skip an increment, which only under-counts.
      sketch_.increment(cells_[i], counts_[i]);
      const SlotId slot = slots[i];
      if (slot == kNil) continue;
      lists_[class_[slot]].remove(slot);
      class_[slot] = classes_[i];
      stamp_[slot] = stamp_now();
      lists_[classes_[i]].push_back(slot);
    }
  }
  void on_touch(SlotId, bool) override {}  // done in on_touch_request

  void on_insert(SlotId slot, BlockHash hash) override {
    ++epoch_;
    std::optional<RefClass> touched = request_class(hash);
    if (!touched) {
      // Stored without being touched first: not part of the last touch's request, so neither
      // it nor that request's blocks keep the protection (one clock tick marks the boundary).
      tick();
      request_start_ = stamp_now() + 1;
      forget_request();
      touched = untouched_class(hash);
    }
    const RefClass cls = *touched;
    class_[slot]       = cls;
    stamp_[slot]       = stamp_now();
    // A store's new blocks of one class share a stamp: link each before the one stored before
    // it, so the block nearest the prefix is the newest and the chain is cut from its tail.
    if (run_[cls] != kNil && stamp_[run_[cls]] == stamp_[slot]) {
      lists_[cls].insert_before(slot, run_[cls]);
    } else {
      lists_[cls].push_back(slot);
    }
    run_[cls] = slot;
  }

  void admit(std::span<const BlockHash> fresh,
             std::size_t free_slots,
             const SlotView& view,
             std::vector<bool>& admitted) const override {
    // The victims assumed here are kept (plan_) for the select_victims that follows.
    plan_.clear();
    plan_epoch_ = epoch_;
    VictimWalk walk{*this, view};
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      if (free_slots > 0) {
        --free_slots;
        continue;
      }
      float victim_density = 0;
      const int list       = walk.best(victim_density);
      if (list < 0) continue;  // nothing evictable: the core refuses the store as a whole
      if (admission_ && model_.density(class_of(fresh[i]), 0) < victim_density) {
        admitted[i] = false;
      } else {
        plan_.push_back(walk.take(list));
      }
    }
  }

  // The same walk as admit(): lowest density first among the list heads (each list's first
  // evictable block), ties to the older stamp. Right after admit() its plan is the answer.
  bool select_victims(std::size_t count,
                      const SlotView& view,
                      std::vector<SlotId>& out) const override {
    if (plan_epoch_ == epoch_ && plan_.size() == count &&
        std::all_of(plan_.begin(), plan_.end(), [&](SlotId s) { return view.evictable(s); })) {
      out.insert(out.end(), plan_.begin(), plan_.end());
      return true;
    }
    VictimWalk walk{*this, view};
    for (std::size_t taken = 0; taken < count; ++taken) {
      float density  = 0;
      const int list = walk.best(density);
      if (list < 0) return false;
      out.push_back(walk.take(list));
    }
    return true;
  }

  void evict(std::span<const SlotId> victims, const SlotView&) override {
    ++epoch_;
    run_.fill(kNil);  // a store commits: its inserts follow
    for (SlotId slot : victims)
      lists_[class_[slot]].remove(slot);
  }
  void erase(SlotId slot) override {
    ++epoch_;
    lists_[class_[slot]].remove(slot);
  }

  std::size_t memory_bytes() const noexcept override {
    return sizeof(*this) + links_.capacity() * sizeof(Links) +
           stamp_.capacity() * sizeof(std::uint32_t) + class_.capacity() +
           request_.capacity() * sizeof(RequestEntry) + cells_.capacity() * sizeof(Cells) +
           counts_.capacity() + plan_.capacity() * sizeof(SlotId) + classes_.capacity() +
           sketch_bytes();
  }
  std::size_t sketch_bytes() const noexcept override {
    return sketch_.memory_bytes() + model_.memory_bytes();
  }

  void check_invariants(const SlotView& view, std::size_t resident) const override {
    auto fail = [](const char* what) {
      throw std::logic_error(std::string{"kvoffload invariant broken: density "} + what);
    };
    std::size_t total = 0;
    for (std::size_t l = 0; l < kRefClasses; ++l) {
      std::uint32_t last = 0;
      const bool linked  = lists_[l].check([&](SlotId slot) {
        if (view[slot].state == SlotState::kFree) fail("free slot in a list");
        if (class_[slot] != l) fail("block in the list of another class");
        if (stamp_[slot] < last || stamp_[slot] > stamp_now()) fail("stamps out of order");
        last = stamp_[slot];
      });
      if (!linked) fail("list corrupt");
      total += lists_[l].size();
    }
    if (total != resident) fail("lists do not hold every block");
    model_.check_invariants();
  }

  [[nodiscard]] DensityState state() const {
    DensityState s;
    s.references = now_;
    s.horizon    = model_.horizon();
    s.updates    = model_.updates();
    s.samples    = model_.samples();
    s.dropped    = model_.dropped();
    for (std::size_t c = 0; c < kRefClasses; ++c) {
      s.resident[c]     = lists_[c].size();
      s.density_at_0[c] = model_.density(static_cast<RefClass>(c), 0);
    }
    return s;
  }
  [[nodiscard]] float density_of(RefClass cls, std::uint64_t age) const noexcept {
    return model_.density(cls, age);
  }

 private:
  using Cells = CountMinSketch::Cells;

  // Walks the class lists in victim order: each list's candidate is its first block evictable
  // in this call; the next victim is the candidate of lowest density (ties: older stamp, then
  // lower class). Blocks the last touch referenced (the request being served) count as
  // infinitely dense: they go last, and admission never evicts them for the request's own new
  // blocks. Densities are computed once per candidate.
  class VictimWalk {
   public:
    VictimWalk(const DensityPolicy& policy, const SlotView& view) : p_{policy}, view_{view} {
      for (std::size_t l = 0; l < kRefClasses; ++l) {
        slot_[l] = p_.lists_[l].front();
        settle(l);
      }
    }
    [[nodiscard]] int best(float& density) const noexcept {
      int best = -1;
      for (std::size_t l = 0; l < kRefClasses; ++l) {
        if (slot_[l] == kNil) continue;
        if (best < 0 || density_[l] < density ||
            (density_[l] == density && p_.stamp_[slot_[l]] < p_.stamp_[slot_[best]])) {
          best    = static_cast<int>(l);
          density = density_[l];
        }
      }
      return best;
    }
    /// The candidate of `list`, which the walk then passes.
    SlotId take(int list) noexcept {
      const auto l      = static_cast<std::size_t>(list);
      const SlotId slot = slot_[l];
      slot_[l]          = p_.lists_[l].next(slot);
      settle(l);
      return slot;
    }

   private:
    void settle(std::size_t l) noexcept {
      SlotId& slot = slot_[l];
      while (slot != kNil && !view_.evictable(slot))
        slot = p_.lists_[l].next(slot);
      if (slot == kNil) return;
      density_[l] = p_.stamp_[slot] >= p_.request_start_
                        ? std::numeric_limits<float>::infinity()
                        : p_.model_.density(static_cast<RefClass>(l),
                                            p_.stamp_now() - std::uint64_t{p_.stamp_[slot]});
    }
    const DensityPolicy& p_;
    const SlotView& view_;
    std::array<SlotId, kRefClasses> slot_{};
    std::array<float, kRefClasses> density_{};
  };

  // ---- Clock: references; slot stamps are 32-bit offsets from base_ (13 B/slot). ----------
  void tick() {
    ++now_;
    if (now_ - base_ >= 2 * std::uint64_t{rebase_period_}) rebase();
  }
  [[nodiscard]] std::uint32_t stamp_now() const noexcept {
    return static_cast<std::uint32_t>(now_ - base_);
  }
  // Every stamp moves down by the period (order kept); blocks older than the period (2^30
  // references by default, beyond any horizon) become equally old. The last touch's blocks
  // stay at or above request_start_ and all older ones below it, even when one touch outlasts
  // a period (possible only with the short periods tests use).
  void rebase() noexcept {
    const std::uint32_t shift = rebase_period_;
    const std::uint32_t start = request_start_ > shift ? request_start_ - shift : 1;
    for (const IntrusiveList& list : lists_) {
      for (SlotId slot = list.front(); slot != kNil; slot = list.next(slot)) {
        const std::uint32_t moved = stamp_[slot] >= shift ? stamp_[slot] - shift : 0;
        stamp_[slot] =
            stamp_[slot] >= request_start_ ? std::max(moved, start) : std::min(moved, start - 1);
      }
    }
    request_start_ = start;
    base_ += shift;
  }

  // ---- The classes of the last touched request, for the stores that follow it. ------------
  struct RequestEntry {
    BlockHash hash{0};
    std::uint32_t generation{0};
    RefClass cls{kNewDeep};
  };
  void begin_request(std::size_t n) {
    classes_.resize(n);
    const std::size_t size = std::bit_ceil(std::max<std::size_t>(16, 2 * n));
    if (request_.size() < size) {
      request_.assign(size, RequestEntry{});
      generation_ = 0;
    }
    if (++generation_ == 0) {  // wrapped: forget every entry
      std::fill(request_.begin(), request_.end(), RequestEntry{});
      generation_ = 1;
    }
  }
  void remember(BlockHash hash, RefClass cls, std::uint64_t mix) {
    const std::size_t mask = request_.size() - 1;
    for (std::size_t i = mix & mask;; i = (i + 1) & mask) {
      RequestEntry& e = request_[i];
      if (e.generation != generation_) {
        e = RequestEntry{hash, generation_, cls};
        return;
      }
      if (e.hash == hash) return;  // a repeat keeps its first class
    }
  }
  /// The class the last touch gave `hash`, if it named it.
  [[nodiscard]] std::optional<RefClass> request_class(BlockHash hash) const noexcept {
    if (request_.empty()) return std::nullopt;
    const std::size_t mask = request_.size() - 1;
    for (std::size_t i = mix_hash(hash) & mask;; i = (i + 1) & mask) {
      const RequestEntry& e = request_[i];
      if (e.generation != generation_) return std::nullopt;
      if (e.hash == hash) return e.cls;
    }
  }
  void forget_request() noexcept { begin_request(0); }
  /// The class of a hash stored without a touch: no request position is known.
  [[nodiscard]] RefClass untouched_class(BlockHash hash) const noexcept {
    return reference_class(sketch_.estimate(hash), 2, false);
  }
  [[nodiscard]] RefClass class_of(BlockHash hash) const noexcept {
    const std::optional<RefClass> touched = request_class(hash);
    return touched ? *touched : untouched_class(hash);
  }

  bool admission_;
  std::uint32_t rebase_period_;
  std::uint64_t now_{0};
  std::uint64_t base_{0};
  std::uint32_t request_start_{1};  // stamps >= this: touched by the last touch call
  // Per class, this store's last insert (see on_insert); reset when a store commits.
  std::array<SlotId, kRefClasses> run_ = make_filled<kRefClasses>(kNil);
  std::vector<Links> links_;
  std::vector<std::uint32_t> stamp_;
  std::vector<std::uint8_t> class_;
  std::array<IntrusiveList, kRefClasses> lists_;
  CountMinSketch sketch_;
  HitDensityModel model_;
  std::vector<RequestEntry> request_;
  std::uint32_t generation_{0};
  std::vector<Cells> cells_;
  std::vector<std::uint8_t> counts_;
  // admit()'s victims, valid while epoch_ (bumped by every change of order) is unchanged.
  std::uint64_t epoch_{0};
  mutable std::uint64_t plan_epoch_{~std::uint64_t{0}};
  mutable std::vector<SlotId> plan_;
  std::vector<RefClass> classes_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> make_density_policy(std::size_t num_blocks,
                                                    const DensityConfig& config,
                                                    int sample_shift,
                                                    std::uint32_t rebase_period,
                                                    std::uint64_t update_interval,
                                                    std::uint64_t min_horizon) {
  validate(config);
  const std::uint64_t horizon = horizon_references(
      num_blocks, config.horizon, min_horizon == 0 ? kMinReferences : min_horizon);
  const std::uint64_t interval =
      update_interval != 0 ? update_interval : std::max<std::uint64_t>(1024, num_blocks / 4);
  return std::make_unique<DensityPolicy>(
      num_blocks, config, sample_shift, rebase_period, horizon, std::min(interval, horizon));
}

std::optional<DensityState> density_state(const EvictionPolicy& policy) {
  const auto* density = dynamic_cast<const DensityPolicy*>(&policy);
  if (density == nullptr) return std::nullopt;
  return density->state();
}

}  // namespace detail

std::unique_ptr<OffloadingManager> make_density_manager(std::size_t num_blocks,
                                                        std::size_t block_size,
                                                        const DensityConfig& config,
                                                        bool enable_events) {
  detail::validate_num_blocks(num_blocks);
  return std::make_unique<detail::CoreManager>(detail::CoreConfig{.num_blocks    = num_blocks,
                                                                  .block_size    = block_size,
                                                                  .medium        = Medium::kCpu,
                                                                  .enable_events = enable_events},
                                               detail::make_density_policy(num_blocks, config));
}

}  // namespace kvoffload
