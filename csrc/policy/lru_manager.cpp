// LRU: one recency list over the resident slots; victims are taken from the oldest end,
// skipping blocks that are pending, pinned or named by the current store.
#include "intrusive_list.hpp"
#include "manager_core.hpp"
#include "policies.hpp"

namespace kvoffload {
namespace detail {
namespace {

class LruPolicy final : public EvictionPolicy {
 public:
  explicit LruPolicy(std::size_t num_blocks) : links_(num_blocks), order_{&links_} {}

  const char* name() const noexcept override { return "lru"; }
  void on_insert(SlotId slot, BlockHash) override { order_.push_back(slot); }
  void on_touch(SlotId slot, bool) override { order_.move_to_back(slot); }

  bool select_victims(std::size_t count,
                      const SlotView& view,
                      std::vector<SlotId>& out) const override {
    const std::size_t wanted = out.size() + count;
    for (SlotId slot = order_.front(); slot != kNil && out.size() < wanted;
         slot        = order_.next(slot)) {
      if (view.evictable(slot)) out.push_back(slot);
    }
    return out.size() == wanted;
  }

  void evict(std::span<const SlotId> victims, const SlotView&) override {
    for (SlotId slot : victims)
      order_.remove(slot);
  }
  void erase(SlotId slot) override { order_.remove(slot); }

  std::size_t memory_bytes() const noexcept override {
    return sizeof(*this) + links_.capacity() * sizeof(Links);
  }

  void check_invariants(const SlotView& view, std::size_t resident) const override {
    const bool linked = order_.check([&](SlotId slot) {
      if (view[slot].state == SlotState::kFree) {
        throw std::logic_error("kvoffload invariant broken: LRU list holds a free slot");
      }
    });
    if (!linked) throw std::logic_error("kvoffload invariant broken: LRU list corrupt");
    if (order_.size() != resident) {
      throw std::logic_error("kvoffload invariant broken: LRU list does not hold every block");
    }
  }

 private:
  std::vector<Links> links_;
  IntrusiveList order_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> make_lru_policy(std::size_t num_blocks) {
  return std::make_unique<LruPolicy>(num_blocks);
}

}  // namespace detail

std::unique_ptr<OffloadingManager> make_lru_manager(std::size_t num_blocks,
                                                    std::size_t block_size,
                                                    bool enable_events) {
  detail::validate_num_blocks(num_blocks);
  return std::make_unique<detail::CoreManager>(detail::CoreConfig{.num_blocks    = num_blocks,
                                                                  .block_size    = block_size,
                                                                  .medium        = Medium::kCpu,
                                                                  .enable_events = enable_events,
                                                                  .index_buckets_per_slot = 4},
                                               detail::make_lru_policy(num_blocks));
}

}  // namespace kvoffload
