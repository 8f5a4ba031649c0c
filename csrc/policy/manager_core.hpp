/**
 * @file manager_core.hpp
 * @brief CoreManager: the OffloadingManager contract over one medium's slots and a policy.
 */
#pragma once

#include "eviction_policy.hpp"
#include "flat_index.hpp"

#include <kvoffload/offloading_manager.hpp>

#include <memory>
#include <vector>

namespace kvoffload::detail {

struct CoreConfig {
  std::size_t num_blocks{0};
  std::size_t block_size{0};
  Medium medium{Medium::kCpu};
  bool enable_events{true};
  /// Hash-index buckets per slot (8 B each): 2 keeps the load <= 0.5 (16 B/slot); 4 (load
  /// <= 0.25, 32 B/slot) ends most finds of random 64-bit hashes at their first bucket, which
  /// measured 20-30% faster in the replay. Policies choose by their memory budget.
  std::size_t index_buckets_per_slot{2};
};

/// Validates num_blocks against the 32-bit slot ids; throws logic_error naming the value.
void validate_num_blocks(std::size_t num_blocks);

class CoreManager final : public OffloadingManager {
 public:
  CoreManager(const CoreConfig& config, std::unique_ptr<EvictionPolicy> policy);

  std::optional<std::size_t> lookup(std::span<const BlockHash> hashes) override;
  LoadStoreSpec prepare_load(std::span<const BlockHash> hashes) override;
  void touch(std::span<const BlockHash> hashes) override;
  void complete_load(std::span<const BlockHash> hashes) override;
  std::optional<PrepareStoreOutput> prepare_store(std::span<const BlockHash> hashes) override;
  void complete_store(std::span<const BlockHash> hashes, bool success = true) override;
  std::vector<OffloadingEvent> take_events() override;
  ManagerStats stats() const override;
  void clear() override;

  /// Throws std::logic_error if any internal invariant is broken (used by tests).
  void check_invariants() const;
  [[nodiscard]] const EvictionPolicy& policy() const noexcept { return *policy_; }
  [[nodiscard]] std::size_t memory_bytes() const noexcept;

 private:
  [[nodiscard]] SlotId find(BlockHash hash) const noexcept { return index_.find(hash); }

  /// Slot ids of `hashes` (kNil where absent), resolved lazily through the memo: the calls
  /// that serve one request pass the same hashes, or a prefix or suffix of them, so each hash
  /// is looked up in the index once per request rather than once per call.
  class Resolved {
   public:
    Resolved(const CoreManager& core, const BlockHash* hashes, SlotId* slots) noexcept
        : core_{core}, hashes_{hashes}, slots_{slots} {}
    SlotId operator[](std::size_t i) const noexcept {
      if (slots_[i] == kUnresolved) slots_[i] = core_.find(hashes_[i]);
      return slots_[i];
    }

   private:
    const CoreManager& core_;
    const BlockHash* hashes_;
    SlotId* slots_;
  };
  static constexpr SlotId kUnresolved = kNil - 1;
  Resolved resolve(std::span<const BlockHash> hashes);
  /// Forget the memo: the hash -> slot mapping changed.
  void invalidate_memo() noexcept { memo_hashes_.clear(); }
  [[nodiscard]] std::size_t free_count() const noexcept {
    return (config_.num_blocks - next_unused_) + freed_;
  }
  SlotId allocate_slot() noexcept;
  void release_slot(SlotId slot) noexcept;
  void emit(std::vector<BlockHash> hashes, bool removed);
  void unprotect() noexcept;
  bool seen_before(BlockHash hash);

  CoreConfig config_;
  std::unique_ptr<EvictionPolicy> policy_;
  EvictionPolicy::Hooks hooks_{};
  std::vector<SlotMeta> slots_;  // fixed size: index_ reads hashes through its data()
  FlatIndex index_;
  // Freed slots form a stack threaded through SlotMeta::refs of free slots (no extra memory).
  SlotId free_head_{kNil};
  std::size_t freed_{0};
  SlotId next_unused_{0};  // slots [next_unused_, num_blocks) were never used

  std::size_t pending_{0};
  std::size_t ready_{0};
  std::size_t pinned_{0};
  ManagerStats counters_{};
  std::vector<OffloadingEvent> events_;

  // Scratch reused across calls so the hot path does not allocate once warm.
  std::vector<SlotId> protected_;
  std::vector<SlotId> victims_;
  std::vector<SlotId> found_;
  std::vector<bool> admitted_;
  std::vector<BlockHash> memo_hashes_;
  std::vector<SlotId> memo_slots_;   // mutable cache: kUnresolved until first asked
  std::vector<std::uint64_t> seen_;  // duplicate detection in prepare_store (open addressing)
};

}  // namespace kvoffload::detail
