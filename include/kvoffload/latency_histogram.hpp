/**
 * @file latency_histogram.hpp
 * @brief How long jobs took, in fixed buckets (10 us to 30 s), as Prometheus histograms count
 * them: exported by write_prometheus as `kvoffload_offloader_job_latency_seconds`.
 */
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace kvoffload {

/// Job latencies: a count per bucket (not cumulative), the total count and the sum.
struct LatencyHistogram {
  /// Upper bounds of the buckets, in seconds; one more bucket counts what lies above the last.
  static constexpr std::array<double, 20> kBoundsSeconds{
      1e-5,   2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
      2.5e-2, 5e-2,   0.1,  0.25, 0.5,    1.0,  2.5,  5.0,    10.0, 30.0};

  std::array<std::uint64_t, kBoundsSeconds.size() + 1> buckets{};
  std::uint64_t count{0};
  double sum_seconds{0};

  /// Counts one job that took `elapsed` (a negative duration counts as 0).
  void record(std::chrono::nanoseconds elapsed) noexcept {
    const double seconds = elapsed.count() > 0 ? static_cast<double>(elapsed.count()) * 1e-9 : 0;
    std::size_t bucket   = 0;
    while (bucket < kBoundsSeconds.size() && seconds > kBoundsSeconds[bucket])
      ++bucket;
    ++buckets[bucket];
    ++count;
    sum_seconds += seconds;
  }
};

}  // namespace kvoffload
