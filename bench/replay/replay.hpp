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
  std::uint64_t block_ops{0};     ///< hashes passed to manager calls, plus transfer plans
                                  ///< confirmed (one block operation each)
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
  /// Metadata per slot without the sketches (the managers' budget is at most 64 bytes per slot).
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
 * must have events enabled), prefix hits from lookup(). A TieredOffloadingManager's transfer
 * plans are confirmed as they are taken (after prepare_store, before its complete_store, and
 * once more after each request for promotions), as an engine that finishes instantly would.
 * A wrapper (+filter, +mutex, +sharded) hides those plans: give such a tiered manager
 * instant_transfers (kvoffload-replay does), or its complete_store throws.
 */
ReplayResult replay(const Trace& trace, OffloadingManager& manager);

/// @brief Hits of Belady's MIN (evict the block used farthest in the future; a block never
/// used again, or used later than every resident one, is not admitted), per block reference.
std::size_t belady_hits(const Trace& trace, std::size_t capacity);

/// A capacity as written: a whole number of blocks ("9140") or a percentage ("5%").
struct CapacitySpec {
  std::string text;  ///< as written
  bool percent{false};
  double value{0};  ///< blocks, or percent (0 < value <= 100)

  /**
   * @brief The capacity in blocks for a trace of `distinct_ids` (a percentage is rounded).
   * @throws kvoffload::logic_error naming the text if it gives 0 blocks
   */
  [[nodiscard]] std::size_t blocks(std::size_t distinct_ids) const;
};

/**
 * @brief Parse "N" (blocks) or "P%" (percent of the distinct ids, above 0 and at most 100);
 * needs no trace, so a command line can be checked before the trace is read.
 * @throws kvoffload::logic_error naming the text if it is neither, or above 100%
 */
CapacitySpec parse_capacity_spec(const std::string& text);

/**
 * @brief Capacity in blocks from "N" (blocks) or "P%" (percent of the distinct ids, rounded).
 * @throws kvoffload::logic_error naming the text if it is neither, above 100% or gives 0 blocks.
 */
std::size_t parse_capacity(const std::string& text, std::size_t distinct_ids);

}  // namespace kvoffload::replay
