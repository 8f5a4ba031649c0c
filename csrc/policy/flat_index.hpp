/**
 * @file flat_index.hpp
 * @brief Fixed-capacity open-addressing map from a 64-bit block hash to a 32-bit id.
 *
 * Each bucket holds 8 bytes: a 32-bit fingerprint (the high half of the mixed hash) and the
 * id. The full key lives with its owner (a slot or ghost array the index is bound to), which is
 * read only when a fingerprint matches. The home bucket is derived from the fingerprint alone,
 * so backward-shift deletion never re-hashes or touches the owner's memory.
 *
 * Linear probing, no tombstones, at most 0.5 load: sized once for a maximum number of keys,
 * so nothing allocates or rehashes after construction. 16 bytes per key at full load.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace kvoffload::detail {

inline constexpr std::uint32_t kNil = 0xFFFFFFFFu;

/// splitmix64's finalizer: block hashes may be small dense integers, so mix before bucketing.
inline std::uint64_t mix_hash(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

class FlatIndex {
 public:
  /// Largest key count an index may be sized for (buckets must fit 32-bit arithmetic).
  static constexpr std::size_t kMaxKeys = std::size_t{1} << 30;

  /**
   * @param max_keys most keys held at once
   * @param keys     the owner's key of id i is at `keys + i * stride` bytes (a BlockHash)
   * @param buckets_per_key 2 (load <= 0.5, 16 B/key) or more: fewer probes, fewer mispredicted
   *                 branches, more memory
   */
  FlatIndex(std::size_t max_keys,
            const void* keys,
            std::size_t stride,
            std::size_t buckets_per_key = 2)
      : buckets_{buckets_per_key * max_keys + 2},
        table_{new Bucket[buckets_]},
        keys_{static_cast<const unsigned char*>(keys)},
        stride_{stride} {
    clear();
  }

  /// The id stored for `key`, or kNil.
  [[nodiscard]] std::uint32_t find(std::uint64_t key) const noexcept {
    const std::uint32_t fp = fingerprint(key);
    for (std::size_t i = home(fp);; i = next(i)) {
      const Bucket b = table_[i];
      if (b.id == kNil) return kNil;
      if (b.fp == fp && key_of(b.id) == key) return b.id;
    }
  }

  /// Insert an absent key whose owner entry `id` already holds it. size() < max_keys.
  void insert(std::uint64_t key, std::uint32_t id) noexcept {
    const std::uint32_t fp = fingerprint(key);
    std::size_t i          = home(fp);
    while (table_[i].id != kNil)
      i = next(i);
    table_[i] = Bucket{fp, id};
    ++size_;
  }

  /// Remove `key` (its owner entry must still hold it); returns whether it was present.
  bool erase(std::uint64_t key) noexcept {
    const std::uint32_t fp = fingerprint(key);
    for (std::size_t i = home(fp);; i = next(i)) {
      const Bucket b = table_[i];
      if (b.id == kNil) return false;
      if (b.fp == fp && key_of(b.id) == key) {
        remove_at(i);
        return true;
      }
    }
  }

  /// Remove the entry of `key` that maps to `id` (present): matches on the id, so the owner's
  /// key is not read.
  void erase(std::uint64_t key, std::uint32_t id) noexcept {
    std::size_t i = home(fingerprint(key));
    while (table_[i].id != id)
      i = next(i);
    remove_at(i);
  }
  void clear() noexcept {
    for (std::size_t i = 0; i < buckets_; ++i)
      table_[i] = Bucket{0, kNil};
    size_ = 0;
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t memory_bytes() const noexcept { return buckets_ * sizeof(Bucket); }

 private:
  struct Bucket {
    std::uint32_t fp;
    std::uint32_t id;  // kNil marks an empty bucket
  };

  static std::uint32_t fingerprint(std::uint64_t key) noexcept {
    // One xor-fold and one multiply (Fibonacci hashing): the high half of the product depends
    // on every key bit, which is all the bucket choice needs.
    return static_cast<std::uint32_t>(((key ^ (key >> 32)) * 0x9e3779b97f4a7c15ULL) >> 32);
  }
  void remove_at(std::size_t hole) noexcept {
    // Backward shift: pull later entries of the run into the hole unless their home lies
    // cyclically in (hole, j].
    for (std::size_t j = next(hole); table_[j].id != kNil; j = next(j)) {
      const std::size_t h = home(table_[j].fp);
      const bool stays    = (hole < j) ? (hole < h && h <= j) : (hole < h || h <= j);
      if (stays) continue;
      table_[hole] = table_[j];
      hole         = j;
    }
    table_[hole].id = kNil;
    --size_;
  }

  [[nodiscard]] std::size_t home(std::uint32_t fp) const noexcept {
    // Lemire's multiply-shift range reduction: no power-of-two bucket count needed.
    return static_cast<std::size_t>((std::uint64_t{fp} * buckets_) >> 32);
  }
  [[nodiscard]] std::size_t next(std::size_t i) const noexcept {
    return (i + 1 == buckets_) ? 0 : i + 1;
  }
  [[nodiscard]] std::uint64_t key_of(std::uint32_t id) const noexcept {
    std::uint64_t key;
    __builtin_memcpy(&key, keys_ + std::size_t{id} * stride_, sizeof key);
    return key;
  }

  std::size_t buckets_;
  std::unique_ptr<Bucket[]> table_;
  const unsigned char* keys_;
  std::size_t stride_;
  std::size_t size_{0};
};

}  // namespace kvoffload::detail
