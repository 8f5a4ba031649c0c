/**
 * @file replay.hpp
 * @brief Replaying a request trace through an OffloadingManager, and Belady's optimum.
 */
#pragma once

#include "replay/trace.hpp"

#include <kvoffload/offloading_manager.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace kvoffload::replay {

struct ReplayResult {
  std::size_t capacity{0};
  std::size_t requests{0};
  std::size_t references{0};
  std::size_t hits{0};            ///< referenced blocks that were ready when their request came
  std::size_t prefix_hits{0};     ///< sum over requests of lookup()'s ready prefix
  std::uint64_t block_ops{0};     ///< hashes passed to manager calls (one block operation each)
  double manager_seconds{0};      ///< time spent inside manager calls
  std::size_t metadata_bytes{0};  ///< the manager's bookkeeping, sketches included
  std::size_t sketch_bytes{0};    ///< of which frequency sketches / sampled statistics

  [[nodiscard]] double hit_rate() const {
    return references ? double(hits) / double(references) : 0;
  }
  [[nodiscard]] double prefix_hit_rate() const {
    return references ? double(prefix_hits) / double(references) : 0;
  }
  [[nodiscard]] double ops_per_second() const {
    return manager_seconds > 0 ? double(block_ops) / manager_seconds : 0;
  }
  /// Metadata per slot without the sketches (issue 3's "at most 64 bytes per slot").
  [[nodiscard]] double bytes_per_slot() const {
    return capacity ? double(metadata_bytes - sketch_bytes) / double(capacity) : 0;
  }
  [[nodiscard]] double sketch_bytes_per_slot() const {
    return capacity ? double(sketch_bytes) / double(capacity) : 0;
  }
};

/**
 * @brief Replay `trace` through `manager` the way a runtime drives it: per request lookup,
 * touch, prepare_load/complete_load of the ready prefix, prepare_store/complete_store of the
 * rest. Hits are counted per block reference from the manager's own events (so the manager
 * must have events enabled), prefix hits from lookup().
 */
ReplayResult replay(const Trace& trace, OffloadingManager& manager);

/// @brief Hits of Belady's MIN (evict the block used farthest in the future; a block never
/// used again, or used later than every resident one, is not admitted), per block reference.
std::size_t belady_hits(const Trace& trace, std::size_t capacity);

/**
 * @brief Capacity in blocks from "N" (blocks) or "P%" (percent of the distinct ids, rounded).
 * @throws kvoffload::logic_error naming the text if it is neither or gives 0 blocks.
 */
std::size_t parse_capacity(const std::string& text, std::size_t distinct_ids);

}  // namespace kvoffload::replay
