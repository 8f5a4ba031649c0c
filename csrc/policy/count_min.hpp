/**
 * @file count_min.hpp
 * @brief A count-min sketch of 4-bit counters (4 rows) that halves itself periodically.
 *
 * Estimates how often a hash was referenced recently without storing the hash: 2 bytes per
 * counter column (4 rows x 4 bits). Conservative update (only the minimal counters grow)
 * keeps over-estimates low. When the increment count reaches `period`, all counters and the
 * count itself halve (TinyLFU's reset), so old popularity fades. Counts saturate at 15.
 */
#pragma once

#include "flat_index.hpp"  // mix_hash

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvoffload::detail {

class CountMinSketch {
 public:
  static constexpr int kRows             = 4;
  static constexpr unsigned kMax         = 15;
  static constexpr int kPerWord          = 16;  // 4-bit counters in a 64-bit word
  static constexpr std::size_t kMinWidth = 64;

  /// Positions of one hash's counters, computed once per reference.
  struct Cells {
    std::array<std::uint64_t, kRows> index;
    std::uint64_t mix;  ///< the hash's first mix, for callers that need more random bits
  };

  /// `width` counters per row (rounded up to a power of two), reset period `period`.
  CountMinSketch(std::size_t width, std::uint64_t period)
      : width_{std::bit_ceil(width < kMinWidth ? kMinWidth : width)},
        period_{period == 0 ? 1 : period},
        words_(kRows * width_ / kPerWord, 0) {}

  [[nodiscard]] Cells cells(std::uint64_t hash) const noexcept {
    // Kirsch-Mitzenmacher: row r uses h1 + r * h2.
    const std::uint64_t h1 = mix_hash(hash);
    const std::uint64_t h2 = mix_hash(hash ^ 0x9e3779b97f4a7c15ULL) | 1;
    Cells c;
    c.mix = h1;
    for (int r = 0; r < kRows; ++r)
      c.index[r] = static_cast<std::uint64_t>(r) * width_ + ((h1 + r * h2) & (width_ - 1));
    return c;
  }

  [[nodiscard]] unsigned estimate(const Cells& c) const noexcept {
    unsigned m = kMax;
    for (std::uint64_t i : c.index) {
      const unsigned v = get(i);
      m                = v < m ? v : m;
    }
    return m;
  }
  [[nodiscard]] unsigned estimate(std::uint64_t hash) const noexcept {
    return estimate(cells(hash));
  }

  /// Count one reference; `current` = estimate(c), when the caller has it already.
  void increment(const Cells& c, unsigned current) noexcept {
    const unsigned m = current;
    if (m < kMax) {
      for (std::uint64_t i : c.index)
        if (get(i) == m) add_one(i);
    }
    if (++increments_ >= period_) halve();
  }
  void increment(const Cells& c) noexcept { increment(c, estimate(c)); }

  [[nodiscard]] std::size_t width() const noexcept { return width_; }
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return words_.capacity() * sizeof(std::uint64_t);
  }

 private:
  [[nodiscard]] unsigned get(std::uint64_t i) const noexcept {
    return static_cast<unsigned>((words_[i / kPerWord] >> (4 * (i % kPerWord))) & 0xF);
  }
  void add_one(std::uint64_t i) noexcept {
    words_[i / kPerWord] += std::uint64_t{1} << (4 * (i % kPerWord));
  }
  void halve() noexcept {
    for (std::uint64_t& w : words_)
      w = (w >> 1) & 0x7777777777777777ULL;
    increments_ /= 2;
  }

  std::size_t width_;
  std::uint64_t period_;
  std::uint64_t increments_{0};
  std::vector<std::uint64_t> words_;
};

}  // namespace kvoffload::detail
