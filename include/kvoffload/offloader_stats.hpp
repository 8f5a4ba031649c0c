/**
 * @file offloader_stats.hpp
 * @brief An Offloader's counters, gauges and job latency histograms (Offloader::stats()),
 * apart from the Offloader so that metrics code needs no CUDA header.
 */
#pragma once

#include <kvoffload/latency_histogram.hpp>
#include <kvoffload/types.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvoffload {

/// Gauges and counters of an Offloader (see stats()).
struct OffloaderStats {
  /// One per tier: the host tier, then the disk tier (host + disk only).
  struct Tier {
    Medium medium{Medium::kCpu};
    std::size_t capacity{0}, ready{0}, pending{0}, free_slots{0};
  };
  std::vector<Tier> tiers;
  std::uint64_t bytes_stored{0};        ///< GPU -> host, by jobs that succeeded
  std::uint64_t bytes_loaded{0};        ///< host -> GPU, by jobs that succeeded
  std::uint64_t bytes_written_disk{0};  ///< host -> disk (demotions that succeeded)
  std::uint64_t bytes_read_disk{0};     ///< disk -> host (promotions, prefetches that succeeded)
  std::uint64_t demotions{0};           ///< blocks written to disk
  std::uint64_t demotions_dropped{0};   ///< demotions not attempted: too many disk jobs
  std::uint64_t demotions_failed{0};    ///< demotions whose write failed (the block is dropped)
  std::uint64_t promotions{0};          ///< blocks read up to the host (promotion or prefetch)
  std::uint64_t reads_dropped{0};       ///< promotions and prefetches not attempted: disk busy
  std::uint64_t reads_failed{0};        ///< reads that failed (lost blocks included)
  std::uint64_t blocks_lost{0};         ///< disk blocks that failed the hash or CRC check
  std::uint64_t blocks_recovered{0};    ///< adopted from a persistent store at construction
  std::uint64_t lookups_deferred{0};    ///< lookups answered nullopt (a block on its way up)
  std::uint64_t lookups_disk_busy{0};   ///< lookups answered the host part: disk jobs at the cap
  std::uint64_t stores_deferred{0};     ///< stores that waited for a demotion to read a slot
  std::size_t disk_jobs_in_flight{0};   ///< disk jobs submitted or waiting to be
  /// Job latencies, from store()/load() (a store deferred behind a demotion included) until
  /// poll() or wait() saw the job finish, so they include how long the caller took to poll;
  /// failed jobs count too.
  LatencyHistogram store_latency, load_latency;
  /// Disk jobs, from the plans reaching the disk tier (waiting for a slot included) until the
  /// Offloader saw them finish.
  LatencyHistogram disk_write_latency, disk_read_latency;
};

}  // namespace kvoffload
