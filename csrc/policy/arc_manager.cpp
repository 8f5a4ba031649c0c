// ARC (Megiddo & Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST'03), as
// vLLM's offloading manager adapts it: residents in T1 (seen once) and T2 (touched again while
// ready), ghost hashes in B1 and B2, and an adaptive target size p for T1.
#include "intrusive_list.hpp"
#include "manager_core.hpp"
#include "policies.hpp"

#include <algorithm>
#include <cstdint>

namespace kvoffload {
namespace detail {
namespace {

enum class ArcList : std::uint8_t { kNone, kT1, kT2, kB1, kB2 };

class ArcPolicy final : public EvictionPolicy {
 public:
  explicit ArcPolicy(std::size_t num_blocks)
      : capacity_{num_blocks},
        links_(num_blocks),
        list_of_(num_blocks, ArcList::kNone),
        t1_{&links_},
        t2_{&links_},
        ghost_hash_(2 * num_blocks),
        ghost_links_(2 * num_blocks),
        ghost_list_of_(2 * num_blocks, ArcList::kNone),
        ghost_index_{2 * num_blocks, ghost_hash_.data(), sizeof(BlockHash)},
        b1_{&ghost_links_},
        b2_{&ghost_links_},
        ghost_free_{&ghost_links_} {
    for (std::uint32_t id = 0; id < 2 * num_blocks; ++id)
      ghost_free_.push_back(id);
  }

  const char* name() const noexcept override { return "arc"; }

  // Case IV of the paper (a miss everywhere) and cases II/III's "move x to T2" for a re-admitted
  // ghost: in this contract a store is always new, so it enters T1 and leaves the ghosts.
  void on_insert(SlotId slot, BlockHash hash) override {
    if (const std::uint32_t ghost = ghost_index_.find(hash); ghost != kNil) drop_ghost(ghost);
    t1_.push_back(slot);
    list_of_[slot] = ArcList::kT1;
  }

  void on_touch(SlotId slot, bool ready) override {
    if (list_of_[slot] == ArcList::kT1) {
      if (ready) {
        // Case I: a hit in T1 moves x to the MRU position of T2.
        t1_.remove(slot);
        t2_.push_back(slot);
        list_of_[slot] = ArcList::kT2;
      } else {
        // A pending block has not been used yet: it stays in T1, refreshed.
        t1_.move_to_back(slot);
      }
    } else {
      // Case I: a hit in T2 moves x to the MRU position of T2.
      t2_.move_to_back(slot);
    }
  }

  // A touch of a ghost adapts p and, as vLLM does, moves the ghost to its list's MRU end, so
  // later trims drop the ghosts nobody asked for (the same ghosts vLLM's lists drop).
  void on_touch_absent(BlockHash hash) override {
    const std::uint32_t ghost = ghost_index_.find(hash);
    if (ghost == kNil) return;
    const double b1 = static_cast<double>(b1_.size());
    const double b2 = static_cast<double>(b2_.size());
    if (ghost_list_of_[ghost] == ArcList::kB1) {
      // Case II: p = min(p + delta1, c), delta1 = max(1, |B2|/|B1|).
      p_ = std::min(p_ + std::max(1.0, b2 / b1), static_cast<double>(capacity_));
      b1_.move_to_back(ghost);
    } else {
      // Case III: p = max(p - delta2, 0), delta2 = max(1, |B1|/|B2|).
      p_ = std::max(p_ - std::max(1.0, b1 / b2), 0.0);
      b2_.move_to_back(ghost);
    }
  }

  // REPLACE(x, p), once per victim: take T1's LRU if |T1| (less the victims already taken from
  // it) >= p, else T2's LRU; when one side has no eligible block, the other. One cursor per list,
  // so no list is scanned more than once per call.
  bool select_victims(std::size_t count,
                      const SlotView& view,
                      std::vector<SlotId>& out) const override {
    SlotId t1_cursor          = first_eligible(t1_, t1_.front(), view);
    SlotId t2_cursor          = first_eligible(t2_, t2_.front(), view);
    std::size_t taken_from_t1 = 0;
    const auto target         = static_cast<std::size_t>(p_);
    for (std::size_t i = 0; i < count; ++i) {
      bool from_t1 = t1_.size() - taken_from_t1 >= target && t1_cursor != kNil;
      if (!from_t1 && t2_cursor == kNil) from_t1 = true;
      SlotId& cursor = from_t1 ? t1_cursor : t2_cursor;
      if (cursor == kNil) return false;
      out.push_back(cursor);
      taken_from_t1 += from_t1;
      cursor =
          first_eligible(from_t1 ? t1_ : t2_, from_t1 ? t1_.next(cursor) : t2_.next(cursor), view);
    }
    return true;
  }

  void evict(std::span<const SlotId> victims, const SlotView& view) override {
    for (SlotId slot : victims) {
      // T1 victims become B1 ghosts, T2 victims B2 ghosts, at the MRU end.
      const bool from_t1 = list_of_[slot] == ArcList::kT1;
      (from_t1 ? t1_ : t2_).remove(slot);
      list_of_[slot] = ArcList::kNone;
      add_ghost(view[slot].hash, from_t1 ? ArcList::kB1 : ArcList::kB2);
    }
    // Each ghost list is trimmed to c after the round (done while adding: the oldest go first,
    // which leaves the same lists).
  }

  void erase(SlotId slot) override {
    (list_of_[slot] == ArcList::kT1 ? t1_ : t2_).remove(slot);
    list_of_[slot] = ArcList::kNone;
  }

  std::size_t memory_bytes() const noexcept override {
    return sizeof(*this) + links_.capacity() * sizeof(Links) + list_of_.capacity() +
           ghost_hash_.capacity() * sizeof(BlockHash) + ghost_links_.capacity() * sizeof(Links) +
           ghost_list_of_.capacity() + ghost_index_.memory_bytes();
  }

  void check_invariants(const SlotView& view, std::size_t resident) const override {
    auto fail = [](const char* what) {
      throw std::logic_error(std::string{"kvoffload invariant broken: ARC "} + what);
    };
    if (t1_.size() + t2_.size() != resident) fail("T1 + T2 do not hold every block");
    for (const auto* list : {&t1_, &t2_}) {
      const ArcList tag = list == &t1_ ? ArcList::kT1 : ArcList::kT2;
      std::size_t n     = 0;
      for (SlotId s = list->front(); s != kNil; s = list->next(s)) {
        if (list_of_[s] != tag || view[s].state == SlotState::kFree || ++n > list->size()) {
          fail("resident list corrupt");
        }
        if (tag == ArcList::kT2 && view[s].state != SlotState::kReady) fail("pending block in T2");
      }
      if (n != list->size()) fail("resident list size drifted");
    }
    if (b1_.size() > capacity_ || b2_.size() > capacity_) fail("ghost list above capacity");
    if (ghost_index_.size() != b1_.size() + b2_.size()) fail("ghost index drifted");
    for (const auto* list : {&b1_, &b2_}) {
      const ArcList tag = list == &b1_ ? ArcList::kB1 : ArcList::kB2;
      for (std::uint32_t g = list->front(); g != kNil; g = list->next(g)) {
        if (ghost_list_of_[g] != tag || ghost_index_.find(ghost_hash_[g]) != g) {
          fail("ghost list corrupt");
        }
      }
    }
    if (p_ < 0.0 || p_ > static_cast<double>(capacity_)) fail("p out of [0, c]");
  }

  [[nodiscard]] double target_t1() const noexcept { return p_; }
  [[nodiscard]] std::size_t t1_size() const noexcept { return t1_.size(); }
  [[nodiscard]] std::size_t t2_size() const noexcept { return t2_.size(); }
  [[nodiscard]] std::size_t b1_size() const noexcept { return b1_.size(); }
  [[nodiscard]] std::size_t b2_size() const noexcept { return b2_.size(); }

 private:
  static SlotId first_eligible(const IntrusiveList& list, SlotId from, const SlotView& view) {
    SlotId slot = from;
    while (slot != kNil && !view.evictable(slot))
      slot = list.next(slot);
    return slot;
  }

  void add_ghost(BlockHash hash, ArcList which) {
    IntrusiveList& list = which == ArcList::kB1 ? b1_ : b2_;
    if (list.size() == capacity_) drop_ghost(list.front());
    const std::uint32_t ghost = ghost_free_.pop_front();
    ghost_hash_[ghost]        = hash;
    ghost_list_of_[ghost]     = which;
    list.push_back(ghost);
    ghost_index_.insert(hash, ghost);
  }

  void drop_ghost(std::uint32_t ghost) {
    (ghost_list_of_[ghost] == ArcList::kB1 ? b1_ : b2_).remove(ghost);
    ghost_index_.erase(ghost_hash_[ghost], ghost);
    ghost_list_of_[ghost] = ArcList::kNone;
    ghost_free_.push_back(ghost);
  }

  std::size_t capacity_;
  double p_{0.0};
  std::vector<Links> links_;
  std::vector<ArcList> list_of_;
  IntrusiveList t1_, t2_;
  std::vector<BlockHash> ghost_hash_;
  std::vector<Links> ghost_links_;
  std::vector<ArcList> ghost_list_of_;
  FlatIndex ghost_index_;
  IntrusiveList b1_, b2_, ghost_free_;
};

}  // namespace

std::optional<ArcState> arc_state(const EvictionPolicy& policy) {
  const auto* arc = dynamic_cast<const ArcPolicy*>(&policy);
  if (arc == nullptr) return std::nullopt;
  return ArcState{arc->target_t1(), arc->t1_size(), arc->t2_size(), arc->b1_size(), arc->b2_size()};
}

std::unique_ptr<EvictionPolicy> make_arc_policy(std::size_t num_blocks) {
  return std::make_unique<ArcPolicy>(num_blocks);
}

}  // namespace detail

std::unique_ptr<OffloadingManager> make_arc_manager(std::size_t num_blocks,
                                                    std::size_t block_size,
                                                    bool enable_events) {
  detail::validate_num_blocks(num_blocks);
  return std::make_unique<detail::CoreManager>(detail::CoreConfig{.num_blocks    = num_blocks,
                                                                  .block_size    = block_size,
                                                                  .medium        = Medium::kCpu,
                                                                  .enable_events = enable_events,
                                                                  .index_buckets_per_slot = 4},
                                               detail::make_arc_policy(num_blocks));
}

}  // namespace kvoffload
