/**
 * @file hit_density.hpp
 * @brief Learned hit density of KV blocks by reference class and age (the "density" policy's
 * model; plain C++).
 *
 * A block's value to a cache is its expected hits per unit of cache space-time from now on
 * (LHD, Beckmann et al., NSDI 2018). This model estimates it per reference class (what was
 * known when the block was last referenced: how often it had been seen, where it sat in its
 * request) and per age (references since then):
 *
 *     density(c, a) = E[hits after age a] / E[cache time spent after age a],
 *
 * for a block that is either referenced again (a hit) or dropped at the horizon M.
 *
 * Unlike LHD, the estimate does not come from the cache's own hits and evictions (which a
 * policy censors: blocks it evicts young never show their reuse). It follows a fixed sample
 * of hashes (1 in 2^sample_shift, chosen by hash) whether or not they are resident, for up to
 * M references after each reference. Reuses that have not happened yet are handled as
 * Kaplan-Meier censoring (a sample still waiting at age a counts as "at risk" up to a), so a
 * young trace does not look more reusable than it is. Sparse estimates (old ages, rare
 * classes) shrink towards the hazard of all classes pooled. Counts halve every M references.
 */
#pragma once

#include "flat_index.hpp"

#include <kvoffload/types.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvoffload::detail {

/// Reference classes: what is known about a block when it is referenced.
enum RefClass : std::uint8_t {
  kNewLast = 0,          ///< first seen, last block of its request (usually partial)
  kNewSecondLast,        ///< first seen, second to last
  kNewDeep,              ///< first seen, deeper, in a request with no known prefix
  kNewDeepContinuation,  ///< first seen, deeper, in a request whose 2nd block was seen before
  kSeenOnce,             ///< seen once before
  kSeenTwice,            ///< seen twice before
  kSeenFew,              ///< seen 3 to 7 times before
  kSeenMany,             ///< seen 8 or more times before
  kRefClasses
};

/// The class of a reference: `prior` earlier references (a sketch estimate), `from_end`
/// blocks after it in its request, `continuation` whether the request's second block was
/// seen before (a follow-up turn or a shared document rather than a new conversation).
[[nodiscard]] RefClass reference_class(unsigned prior,
                                       std::size_t from_end,
                                       bool continuation) noexcept;

/// Age bins: [0, 16), then quarter octaves; bin 1 + 4e + k starts at 16 * 2^e * (4 + k) / 4.
[[nodiscard]] inline int age_bin(std::uint64_t age) noexcept {
  if (age < 16) return 0;
  const int e = static_cast<int>(std::bit_width(age)) - 1;  // >= 4
  const int k = static_cast<int>((age >> (e - 2)) & 3);
  return 1 + 4 * (e - 4) + k;
}
[[nodiscard]] std::uint64_t bin_start(int bin) noexcept;

class HitDensityModel {
 public:
  struct Options {
    std::uint64_t horizon{1 << 16};          ///< M: references a sample is followed, <= 2^30
    int sample_shift{6};                     ///< follow 1 in 2^sample_shift hashes
    std::uint64_t update_interval{1 << 12};  ///< references between re-estimates
  };

  explicit HitDensityModel(const Options& options);

  /// Whether the model follows a hash whose mix_hash() is `mix` (its top bits choose).
  [[nodiscard]] bool sampled_mix(std::uint64_t mix) const noexcept {
    return options_.sample_shift == 0 || (mix >> (64 - options_.sample_shift)) == 0;
  }
  [[nodiscard]] bool sampled(BlockHash hash) const noexcept { return sampled_mix(mix_hash(hash)); }

  /// Reference number `now` (increasing) of `hash`, of class `cls`; `is_sampled` must be
  /// sampled(hash). Unsampled hashes only advance the clock; re-estimates when due.
  void observe(BlockHash hash, RefClass cls, std::uint64_t now, bool is_sampled);
  void observe(BlockHash hash, RefClass cls, std::uint64_t now) {
    observe(hash, cls, now, sampled(hash));
  }

  /// Expected hits per reference of cache time for a block of class `cls` at age `age`; 0 at
  /// or past the horizon. Before the first estimate: 1 / (1 + bin), i.e. recency order.
  [[nodiscard]] float density(RefClass cls, std::uint64_t age) const noexcept {
    if (age >= options_.horizon) return 0.0F;
    return density_[static_cast<std::size_t>(cls) * bins_ + static_cast<std::size_t>(age_bin(age))];
  }

  /// Re-estimate now (expires samples past the horizon).
  void update(std::uint64_t now);

  [[nodiscard]] std::uint64_t horizon() const noexcept { return options_.horizon; }
  [[nodiscard]] std::size_t bins() const noexcept { return bins_; }
  [[nodiscard]] std::size_t samples() const noexcept { return index_.size(); }
  [[nodiscard]] std::uint64_t updates() const noexcept { return updates_; }
  /// References not followed because the sample table was full (see sample_capacity).
  [[nodiscard]] std::uint64_t dropped() const noexcept { return dropped_; }
  [[nodiscard]] std::size_t memory_bytes() const noexcept;

  /// Throws std::logic_error when the sample table or the counts are inconsistent.
  void check_invariants() const;

 private:
  static constexpr std::uint8_t kFreeSample = 0xFF;
  // 16 bytes. The stamp keeps the low 32 bits of the reference number: ages stay below the
  // horizon (<= 2^30) plus one update interval, so now - stamp modulo 2^32 is exact.
  struct Sample {
    BlockHash hash{0};  // first: FlatIndex reads it
    std::uint32_t stamp{0};
    std::uint8_t cls{kFreeSample};
  };
  [[nodiscard]] static std::uint64_t age_of(const Sample& s, std::uint64_t now) noexcept {
    return static_cast<std::uint32_t>(static_cast<std::uint32_t>(now) - s.stamp);
  }

  void add_sample(BlockHash hash, RefClass cls, std::uint64_t now);
  void estimate();  // densities from reused_, expired_ and pending_

  Options options_;
  std::size_t bins_;
  std::vector<Sample> samples_;  // fixed size: index_ reads hashes through its data()
  FlatIndex index_;
  std::vector<std::uint32_t> free_;
  std::vector<double> reused_;   // [class][bin]: reuses at that gap (decayed)
  std::vector<double> expired_;  // [class]: references not reused within the horizon
  std::vector<double> pending_;  // scratch: samples still waiting, by current age
  std::vector<double> risk_;     // scratch: references that reached each age
  std::vector<float> density_;   // [class][bin]
  std::uint64_t next_update_;
  std::uint64_t next_decay_;
  std::uint64_t updates_{0};
  std::uint64_t dropped_{0};
};

}  // namespace kvoffload::detail
