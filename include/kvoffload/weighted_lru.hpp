/**
 * @file weighted_lru.hpp
 * @brief Weighted LRU: eviction by a priority that combines recency and access frequency.
 *
 * Every access (a store, or a touch) advances a logical clock by one tick and stamps the block
 * with it. A block's priority is
 *
 *     priority(b) = t(b) + D * level(b),   D = round(frequency_weight * num_blocks),
 *     level(b)    = floor(log2(1 + f(b))), f(b) = touches while ready, saturating at 255,
 *
 * where t(b) is the tick of its last access. The evictable block of lowest priority goes first
 * (ties: the older stamp first). D measures frequency in cache turnovers: with weight 0.5 a
 * block touched once is kept as if it had been accessed half a cache's worth of accesses
 * later; each doubling of its touches adds another D. Frequency weight 0 is exactly LRU. The
 * logarithm (and the cap, level <= 8) lets a block that was hot long ago age out.
 *
 * All blocks of one manager have the same size (the contract passes one `block_size`), so a
 * size term cancels out of the comparison and is not stored.
 *
 * Implementation: one LRU list per level (9 lists); within a list stamps ascend, so the
 * lowest priority is at the head of one of the 9 lists. Each operation is O(1); eviction is
 * O(9 * (victims + blocks skipped)), skipping only blocks whose priority is below the last
 * victim's. 13 bytes of policy metadata per slot.
 */
#pragma once

#include <kvoffload/offloading_manager.hpp>

#include <cstddef>
#include <memory>

namespace kvoffload {

/// Settings of the weighted LRU policy.
struct WeightedLruConfig {
  /// Ticks of credit per frequency level, in cache sizes; 0 = plain LRU. 0 to 1e6.
  double frequency_weight{0.5};
};

/**
 * @brief A weighted-LRU manager with `num_blocks` slots of medium kCpu.
 * @throws logic_error if num_blocks is 0 or above the core's maximum, or frequency_weight is
 * negative, not finite or above 1e6 (names the value)
 */
std::unique_ptr<OffloadingManager> make_weighted_lru_manager(std::size_t num_blocks,
                                                             std::size_t block_size,
                                                             const WeightedLruConfig& config = {},
                                                             bool enable_events = true);

}  // namespace kvoffload
