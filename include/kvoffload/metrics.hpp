/**
 * @file metrics.hpp
 * @brief Every manager's and Offloader's counters, gauges and job latency histograms in the
 * Prometheus text exposition format.
 *
 * Names start with `kvoffload_`. Each family has one `# HELP` and one `# TYPE` line, followed
 * by one sample per manager, labelled `manager="<name>"`:
 * - counters (`ManagerStats` lookups ... loads; a tiered manager's demotions ... dropped
 *   blocks) end in `_total` and only grow while the manager lives;
 * - gauges (capacity, pending, ready, pinned, evictable, free slots, metadata bytes; per tier of
 *   a tiered manager with labels `tier="0"` and `medium="gpu"`) are the current values.
 * A tiered manager's families are written when one of the managers is tiered, directly or under
 * `+filter`, `+mutex` or `+sharded` (the shards' tier figures summed, tier by tier).
 *
 * An Offloader's figures (collect_metrics(offloader, name)) add, under the same
 * `manager="<name>"`: counters `kvoffload_offloader_*_total` (bytes moved per medium, disk
 * writes and reads done, dropped and failed, blocks lost and recovered, deferrals) and the
 * histogram `kvoffload_offloader_job_latency_seconds` with `job="store"`, `"load"`,
 * `"disk_write"` or `"disk_read"` (buckets `le` from 10 us to 30 s, then `+Inf`, `_sum` and
 * `_count`; see OffloaderStats for what a latency spans).
 *
 * Reading the figures calls `stats()` (and `tiered_stats()`): like any manager call, not
 * concurrently with other calls on a manager that is not thread-safe.
 */
#pragma once

#include <kvoffload/offloader_stats.hpp>
#include <kvoffload/offloading_manager.hpp>
#include <kvoffload/tiered_manager.hpp>
#include <kvoffload/types.hpp>

#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>

namespace kvoffload {

class Offloader;

/// One manager's figures at one moment, under the name its samples carry as `manager="..."`.
struct ManagerMetrics {
  std::string name;
  ManagerStats stats{};
  std::optional<TieredStats> tiered{};        ///< set for a tiered manager
  std::optional<OffloaderStats> offloader{};  ///< set when read from an Offloader
};

/// @brief The tiered manager `manager` is or wraps (through +filter or +mutex); null otherwise.
[[nodiscard]] TieredOffloadingManager* find_tiered_manager(OffloadingManager& manager);
[[nodiscard]] const TieredOffloadingManager* find_tiered_manager(const OffloadingManager& manager);

/// @brief Read `manager`'s statistics (and tier statistics, if it is tiered) now.
[[nodiscard]] ManagerMetrics collect_metrics(const OffloadingManager& manager, std::string name);

/// @brief Read an Offloader's manager's statistics and the Offloader's own now.
[[nodiscard]] ManagerMetrics collect_metrics(const Offloader& offloader, std::string name);

/**
 * @brief Write the figures of several managers, family by family, in the Prometheus text
 * format (version 0.0.4), ending with a newline.
 * @throws logic_error if two managers share a name, or a name is empty (names it)
 */
void write_prometheus(std::ostream& out, std::span<const ManagerMetrics> managers);

/// @brief Write one manager's figures under `manager="<name>"`.
void write_prometheus(std::ostream& out,
                      const OffloadingManager& manager,
                      std::string_view name = "default");

}  // namespace kvoffload
