/**
 * @file density_manager.hpp
 * @brief The "density" policy: evicts the block with the lowest learned hit density and
 * declines to store a new block worth less than the block it would evict.
 *
 * Each touch is a reference. A reference gets a class from what is known at that moment:
 * how often the hash was seen before (a count-min sketch over the last `horizon` references)
 * and, for a first sighting, where it sits in its request (last block, second to last, deeper;
 * deeper ones split by whether the request's second block was seen before). The policy learns,
 * per class, how likely and how soon blocks are referenced again, from a fixed 1-in-16 sample
 * of hashes that it follows whether or not they are resident, and turns that into a hit
 * density: expected hits per unit of cache space-time from a block's current age on. The
 * evictable block of lowest density goes first; a new block whose density at age 0 is below
 * that victim's is declined (prepare_store leaves it out; stats().stores_declined counts it).
 * The formula and the evidence are in docs/managers.md.
 *
 * What it needs from the caller: touch() with each request's hashes in request order, as
 * vLLM does; without touches it has nothing to learn from and behaves like LRU. The blocks of
 * the last touch are evicted last; a store of hashes that touch did not name ends that
 * protection.
 *
 * Cost: 13 bytes of policy metadata per slot beside the core's, plus a sketch and the sample
 * table sized by the horizon (stats().sketch_bytes; about 2 bytes per reference of horizon).
 */
#pragma once

#include <kvoffload/offloading_manager.hpp>

#include <cstddef>
#include <memory>

namespace kvoffload {

/// Settings of the density policy.
struct DensityConfig {
  /// How far it looks: references, in multiples of num_blocks, that a sampled block is
  /// followed and that the frequency sketch remembers. 1 to 1024.
  double horizon{16.0};
  /// Decline new blocks of lower density than their victim (false: store every block).
  bool admission{true};
};

/**
 * @brief A density-policy manager with `num_blocks` slots of medium kCpu.
 * @throws logic_error if num_blocks is 0 or above the core's maximum, or horizon is not a
 * number in [1, 1024] (names the value)
 */
std::unique_ptr<OffloadingManager> make_density_manager(std::size_t num_blocks,
                                                        std::size_t block_size,
                                                        const DensityConfig& config = {},
                                                        bool enable_events          = true);

}  // namespace kvoffload
