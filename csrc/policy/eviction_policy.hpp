/**
 * @file eviction_policy.hpp
 * @brief The seam between the manager core (state rules, slots, events) and a policy.
 *
 * The core owns every block's state (pending / ready / references), the hash index, the slot
 * allocator, events and statistics, and enforces the contract. A policy only orders the
 * resident blocks and names victims; it never allocates payload or moves bytes.
 */
#pragma once

#include <kvoffload/types.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace kvoffload::detail {

using SlotId = std::uint32_t;

enum class SlotState : std::uint8_t { kFree, kPending, kReady };

/// Per-slot state owned by the core (16 bytes).
struct SlotMeta {
  BlockHash hash{0};
  std::uint32_t refs{0};  ///< load references (prepare_load minus complete_load)
  SlotState state{SlotState::kFree};
  bool protected_in_call{false};  ///< named by the prepare_store in progress: not evictable
};
static_assert(sizeof(SlotMeta) == 16);

/// Read-only view the core lends to a policy while it picks victims.
class SlotView {
 public:
  explicit SlotView(const SlotMeta* slots) noexcept : slots_{slots} {}
  [[nodiscard]] bool evictable(SlotId slot) const noexcept {
    const SlotMeta& m = slots_[slot];
    return m.state == SlotState::kReady && m.refs == 0 && !m.protected_in_call;
  }
  [[nodiscard]] const SlotMeta& operator[](SlotId slot) const noexcept { return slots_[slot]; }

 private:
  const SlotMeta* slots_;
};

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;

  /// Short name for reports ("lru", "arc", ...).
  [[nodiscard]] virtual const char* name() const noexcept = 0;

  /// A new pending block took `slot`: link it at the most-recent end.
  virtual void on_insert(SlotId slot, BlockHash hash) = 0;

  /// A pending block became ready (complete_store succeeded). Recency unchanged.
  virtual void on_ready(SlotId /*slot*/) {}

  /// A resident block was touched; `ready` is false for a pending one.
  virtual void on_touch(SlotId slot, bool ready) = 0;

  /// A touched hash that is not resident (ghost bookkeeping, frequency sketches).
  virtual void on_touch_absent(BlockHash /*hash*/) {}

  /// The optional hooks a policy overrides. The core calls only these and skips the
  /// bookkeeping of the others (the slot copy for on_touch_request, the admission pass).
  /// Queried once, when the core is built: a policy that overrides on_touch_request or admit
  /// must say so here, or the override is never called.
  struct Hooks {
    bool touch_request{false};  ///< on_touch_request
    bool admission{false};      ///< admit
  };
  [[nodiscard]] virtual Hooks hooks() const noexcept { return {}; }

  /**
   * @brief A touch call, once, before its per-hash on_touch / on_touch_absent calls: the
   * hashes in request order and their slots (kNil where absent). For policies that learn from
   * a request's shape (where a block sits in it, whether its prefix was seen before).
   */
  virtual void on_touch_request(std::span<const BlockHash> /*hashes*/,
                                std::span<const SlotId> /*slots*/) {}

  /**
   * @brief Admission: prepare_store's new hashes (distinct, in call order), before victims are
   * chosen, with `free_slots` slots free. `admitted` (same length) arrives all true; set an
   * entry false to leave that hash out of the store, which is not an error. Must not change
   * the policy's state: the store may still be abandoned, and select_victims must then pick
   * the victims this decision assumed. Default: admit all.
   */
  virtual void admit(std::span<const BlockHash> /*fresh*/,
                     std::size_t /*free_slots*/,
                     const SlotView& /*view*/,
                     std::vector<bool>& /*admitted*/) const {}

  /**
   * @brief Append `count` victims to `out`, in eviction order, each with view.evictable().
   * Must not change the policy's state: the core commits with evict() afterwards.
   * @return false if fewer than `count` evictable blocks exist (the core then abandons).
   */
  virtual bool select_victims(std::size_t count,
                              const SlotView& view,
                              std::vector<SlotId>& out) const = 0;

  /// Commit the victims chosen by select_victims (same order): unlink them. The slots still
  /// hold the victims' metadata during the call.
  virtual void evict(std::span<const SlotId> victims, const SlotView& view) = 0;

  /// Unlink a block that leaves without being evicted (failed store, clear()).
  virtual void erase(SlotId slot) = 0;

  /// Bytes of metadata the policy holds (lists, ghosts, sketches).
  [[nodiscard]] virtual std::size_t memory_bytes() const noexcept = 0;

  /// The part of memory_bytes() in frequency sketches and sampled statistics: sized by the
  /// policy's own settings rather than one record per slot.
  [[nodiscard]] virtual std::size_t sketch_bytes() const noexcept { return 0; }

  /// Throws std::logic_error when an internal invariant is broken (tests call it).
  virtual void check_invariants(const SlotView& view, std::size_t resident) const = 0;
};

}  // namespace kvoffload::detail
