/**
 * @file weighted_lru.hpp
 * @brief The weighted-LRU eviction policy (internal; see include/kvoffload/weighted_lru.hpp
 * for the formula).
 */
#pragma once

#include "eviction_policy.hpp"

#include <cstdint>
#include <memory>
#include <optional>

namespace kvoffload::detail {

/// Ticks between two rebases of the 32-bit stamps (see WeightedLruPolicy::tick).
inline constexpr std::uint32_t kWeightedLruRebasePeriod = std::uint32_t{1} << 31;

/**
 * @param rebase_period the clock is rebased when it reaches 2 * rebase_period (tests shrink it)
 * @throws logic_error if frequency_weight is out of range
 */
std::unique_ptr<EvictionPolicy> make_weighted_lru_policy(
    std::size_t num_blocks,
    double frequency_weight,
    std::uint32_t rebase_period = kWeightedLruRebasePeriod);

/// A resident block as the weighted policy sees it (for tests).
struct WeightedLruEntry {
  std::uint64_t priority{0};
  std::uint32_t stamp{0};
  std::uint32_t frequency{0};
  std::uint32_t level{0};
};

/// The entry of `slot` if `policy` is the weighted LRU policy and the slot is resident.
std::optional<WeightedLruEntry> weighted_lru_entry(const EvictionPolicy& policy, SlotId slot);

}  // namespace kvoffload::detail
