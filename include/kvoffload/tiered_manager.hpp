/**
 * @file tiered_manager.hpp
 * @brief One manager over several tiers (e.g. GPU spill area / pinned host / disk), with
 * promotion, demotion and prefetch expressed as transfer plans.
 *
 * Tier 0 is the fastest. A prepare_store puts its new blocks, all together, into the fastest
 * tier that has enough free or evictable slots for the whole batch (tier 0 unless the batch is
 * larger than tier 0 can take; with `stores_to_tier_zero_only`, tier 0 or none); no tier can:
 * nullopt. Each tier keeps its blocks in LRU order. The
 * manager never moves bytes: every move comes out as a TransferPlan (source tier and slot ->
 * destination tier and slot) that the transfer engine executes and confirms with
 * `complete_transfer(plan.id, success)` (or `complete_prefetch(hashes)` for prefetches).
 *
 * ## Demotion (a tier's victim goes down one tier)
 * When tier t needs room, its least recently used idle ready block is demoted to tier t + 1
 * (which may demote its own victim, and so on); the last tier drops its victims (they are
 * reported in `block_hashes_evicted` and by a removed event). A victim also drops when the next
 * tier has no free or evictable slot (all pending, pinned or in flight). At planning time:
 * - the block moves to its destination slot, **pending** there (not a hit, not loadable, not
 *   evictable) until the plan completes; a removed event for the source medium is queued;
 * - its source slot is handed to whoever needed the room (a new block of prepare_store, or a
 *   block demoted or promoted into that tier), but **its bytes stay readable for the plan**:
 *   nobody may write that slot until the plan completes. The manager enforces this:
 *   `complete_store` of a block, or `complete_transfer` of a plan, whose slot is still the
 *   source of an unfinished plan throws logic_error naming that plan.
 * - success: the block is ready in its destination tier (stored event); failure: the block
 *   is lost (its destination slot is freed; counted in `dropped`).
 * Plans are returned in an order that is safe to execute one after the other: the move out of
 * a slot always comes before the move into it.
 *
 * ## Promotion (a block hit often enough goes up one tier)
 * A ready block in tier t > 0 touched `promote_after` times while there becomes a promotion
 * candidate; candidates that are idle when `take_transfer_plans()` runs get a plan to tier
 * t - 1 (making room there by demotion, as above). While a promotion or prefetch is in flight,
 * the block stays in its source slot but is **in flight**: `lookup` returns nullopt ("retry
 * later") when the ready prefix reaches it, and prepare_load rejects it. Success moves it
 * (removed event for the source medium, stored event for the destination's); failure leaves it
 * ready where it was.
 *
 * ## Prefetch
 * `hint_prefetch(hashes)` queues hints; `process_prefetch()` turns up to `lookahead` of them,
 * oldest first, into plans that bring a ready idle block from a slower tier straight to tier 0
 * (preceded by the demotions that make room). Hints for blocks that are absent by then (never
 * stored or evicted since) are dropped and counted; hints for blocks already in tier 0, or not
 * movable now (pending, pinned, in flight), are dropped and counted separately.
 * `complete_prefetch(hashes, success)` confirms them by hash.
 *
 * ## The plain OffloadingManager interface
 * Slots are numbered globally: tier t's slots are [offset(t), offset(t) + size(t)), offsets in
 * tier order. `prepare_store` returns the slots and medium of the tier it stores into and queues
 * its demotion plans for `take_transfer_plans()`; `prepare_load` returns global slots and the
 * medium of the first block's tier (use `prepare_load_tiers` for each block's own medium and tier
 * slot). Gauges: `pending` counts pending stores and destinations of transfers in flight, `ready`
 * the ready blocks (in flight or not), `evictable` the ready idle ones not in flight. With
 * `instant_transfers` every plan is confirmed as it is made (for replays and simulations
 * where no bytes move).
 */
#pragma once

#include <kvoffload/offloading_manager.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace kvoffload {

/// One tier: its medium and its number of slots.
struct TierConfig {
  Medium medium{Medium::kCpu};
  std::size_t num_blocks{0};
};

/// Settings of a TieredOffloadingManager.
struct TieredConfig {
  std::vector<TierConfig> tiers{};  ///< fastest first; 1 to 8 tiers, each with slots
  std::uint32_t promote_after{2};   ///< touches in a slower tier that promote; 0 = never
  std::size_t lookahead{32};        ///< most prefetch plans per process_prefetch()
  bool instant_transfers{false};    ///< confirm every plan as it is made
  /// prepare_store uses tier 0 only (nullopt when it cannot take the batch). An Offloader sets
  /// it: new blocks come from the GPU into host memory, never straight to disk.
  bool stores_to_tier_zero_only{false};
  std::size_t block_size{0};  ///< carried into events
  bool enable_events{true};
};

/// A tier size as a spec gives it: a count of blocks, or a fraction of the total.
struct TierSize {
  double fraction{0};  ///< used when blocks is 0
  std::size_t blocks{0};
};

/// The tiered settings of a spec ("tiered:hot=0.2,warm=0.3"): hot and warm sized, cold takes
/// the rest (cold = false: two tiers, warm takes the rest).
struct TieredOptions {
  TierSize hot{.fraction = 0.2};
  TierSize warm{.fraction = 0.3};
  bool cold{true};
  Medium hot_medium{Medium::kGpu};
  Medium warm_medium{Medium::kCpu};
  Medium cold_medium{Medium::kDisk};
  std::uint32_t promote_after{2};
  std::size_t lookahead{32};
  bool instant_transfers{false};
};

/**
 * @brief The TieredConfig of `options` for `num_blocks` slots in total.
 * @throws logic_error naming the tier whose size does not fit
 */
TieredConfig resolve_tiers(const TieredOptions& options,
                           std::size_t num_blocks,
                           std::size_t block_size,
                           bool enable_events);

enum class TransferKind : std::uint8_t { kDemotion, kPromotion, kPrefetch };

/// One move for the transfer engine: copy `hash`'s block from source to destination.
struct TransferPlan {
  std::uint64_t id{0};
  TransferKind kind{TransferKind::kDemotion};
  BlockHash hash{0};
  std::uint32_t source_tier{0};
  Medium source_medium{Medium::kCpu};
  BlockId source_slot{0};  ///< slot inside the source tier
  std::uint32_t destination_tier{0};
  Medium destination_medium{Medium::kCpu};
  BlockId destination_slot{0};  ///< slot inside the destination tier
};

/// Where a block is: its tier, that tier's medium, and its slot inside the tier.
struct TierLocation {
  std::uint32_t tier{0};
  Medium medium{Medium::kCpu};
  BlockId slot{0};
};

/// Per-tier gauges and the tiered counters.
struct TieredStats {
  struct Tier {
    Medium medium{Medium::kCpu};
    std::size_t capacity{0}, ready{0}, pending{0}, free_slots{0};
  };
  std::vector<Tier> tiers;
  std::uint64_t demotions{0};         ///< demotion plans made
  std::uint64_t promotions{0};        ///< promotion plans made
  std::uint64_t prefetches{0};        ///< prefetch plans made
  std::uint64_t dropped{0};           ///< blocks dropped by the last tier or by a failed demotion
  std::uint64_t in_flight{0};         ///< plans not yet completed
  std::uint64_t lookups_deferred{0};  ///< lookups answered nullopt (a block in flight)
  std::uint64_t prefetch_hints{0};    ///< hints queued
  std::uint64_t prefetch_dropped_absent{0};  ///< hints for absent (or evicted) blocks
  std::uint64_t prefetch_dropped_other{0};   ///< hints for blocks already fast or not movable
  std::uint64_t adopted{0};    ///< blocks taken in ready by adopt_ready (a restart's recovery)
  std::uint64_t discarded{0};  ///< ready blocks dropped by discard (e.g. found corrupt)
};

/// @brief The tiered manager (see the file comment for the rules).
class TieredOffloadingManager final : public OffloadingManager {
 public:
  /// @throws logic_error if there are no tiers, more than 8, a tier without slots, or more
  /// slots than the index allows (names the tier)
  explicit TieredOffloadingManager(const TieredConfig& config);
  ~TieredOffloadingManager() override;

  std::optional<std::size_t> lookup(std::span<const BlockHash> hashes) override;
  LoadStoreSpec prepare_load(std::span<const BlockHash> hashes) override;
  void touch(std::span<const BlockHash> hashes) override;
  void complete_load(std::span<const BlockHash> hashes) override;
  std::optional<PrepareStoreOutput> prepare_store(std::span<const BlockHash> hashes) override;
  void complete_store(std::span<const BlockHash> hashes, bool success = true) override;
  std::vector<OffloadingEvent> take_events() override;
  ManagerStats stats() const override;
  void clear() override;
  /// Always: promotions and demotions are transfer plans.
  [[nodiscard]] bool plans_transfers() const noexcept override { return true; }

  /// @brief The tier of each hash that is ready and not in flight; nullopt otherwise. Changes
  /// nothing, counts nothing.
  [[nodiscard]] std::vector<std::optional<std::uint32_t>> lookup_tiers(
      std::span<const BlockHash> hashes) const;
  /// @brief prepare_load, answering each block's tier, medium and slot inside its tier.
  /// @throws logic_error like prepare_load
  std::vector<TierLocation> prepare_load_tiers(std::span<const BlockHash> hashes);
  /// @brief Plans queued since the last call (demotions of stores) plus promotions of the
  /// idle candidates, in a safe execution order.
  [[nodiscard]] std::vector<TransferPlan> take_transfer_plans();
  /// @brief Confirm (success) or abandon one plan.
  /// @throws logic_error if the id is not in flight, or its destination slot is still the
  /// source of another unfinished plan (names it)
  void complete_transfer(std::uint64_t plan_id, bool success = true);

  /// @brief Queue prefetch hints (any hashes; judged when processed).
  void hint_prefetch(std::span<const BlockHash> hashes);
  /// @brief Up to `lookahead` prefetch plans, each after the demotions that make its room;
  /// the blocks of `keep` (e.g. the host part of the prefix being looked up) are not demoted
  /// for it.
  [[nodiscard]] std::vector<TransferPlan> process_prefetch(std::span<const BlockHash> keep = {});
  /// @brief Complete the prefetch of each hash. @throws logic_error if a hash has no prefetch
  /// in flight (names it); nothing changes then.
  void complete_prefetch(std::span<const BlockHash> hashes, bool success = true);

  /**
   * @brief Take in blocks that already sit in tier `tier` (e.g. a persistent disk store's
   * blocks after a restart) as ready and idle, at `slots[i]` (slots inside the tier), the first
   * hash the least recently used; a stored event for the tier's medium names them. Free slots
   * are handed out afterwards in ascending order, then the most recently freed.
   * @throws logic_error naming the offending value, and nothing changes, if the sizes differ,
   * the tier or a slot is out of range, a slot is in use or given twice, or a hash is stored
   * already or given twice
   */
  void adopt_ready(std::uint32_t tier,
                   std::span<const BlockHash> hashes,
                   std::span<const BlockId> slots);
  /**
   * @brief Drop ready blocks whose bytes must not be used any more (e.g. a disk read found them
   * corrupt): removed event, counted in `discarded`; their slots are free again.
   * @throws logic_error naming the first hash that is not stored, or is pending, pinned or in
   * flight; nothing changes then
   */
  void discard(std::span<const BlockHash> hashes);
  /// The configuration it was built with.
  [[nodiscard]] const TieredConfig& config() const noexcept;

  [[nodiscard]] TieredStats tiered_stats() const;
  /// @brief Throws std::logic_error if an internal invariant is broken (tests call it).
  void check_invariants() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvoffload
