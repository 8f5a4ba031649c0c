// A store / load round trip checked byte for byte, written once for every engine: random data,
// random block ids, poisoned destinations, untouched bytes checked to stay poisoned.
#pragma once

#include "transfer/layouts.hpp"

#include <kvoffload/transfer/transfer_engine.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <ostream>
#include <random>
#include <vector>

namespace kvoffload::transfer {

/// A method's name in test names and failure messages (not a byte dump of the enum).
inline void PrintTo(Method method, std::ostream* os) {
  *os << to_string(method);
}

}  // namespace kvoffload::transfer

namespace kvoffload::transfer::testing {

inline constexpr std::byte kPoison{0xA5};

/// Copies between the arena ("GPU" memory) and the test's host mirror of it. Both must be
/// complete on return, as seen from every stream: the engine's streams are non-blocking, so a
/// device upload that is still in flight would race the engine's first copy.
struct ArenaAccess {
  std::function<void(std::byte* arena, const std::byte* from, std::size_t bytes)> upload;
  std::function<void(std::byte* to, const std::byte* arena, std::size_t bytes)> download;
};

/// Distinct random ids in [0, limit).
inline std::vector<BlockId> random_ids(std::mt19937_64& rng, std::size_t count, std::size_t limit) {
  EXPECT_LE(count, limit);
  std::vector<BlockId> all(limit);
  std::iota(all.begin(), all.end(), BlockId{0});
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(count);
  return all;
}

/// Expected host image of GPU block `block`: its chunks in tensor order.
inline void expect_block_image(const KvLayout& layout,
                               const std::vector<std::byte>& arena_mirror,
                               const std::byte* arena,
                               BlockId block,
                               const std::byte* image,
                               const std::string& where) {
  for (std::size_t t = 0; t < layout.num_tensors(); ++t) {
    const std::size_t arena_offset = static_cast<std::size_t>(layout.gpu_chunk(t, block) - arena);
    const std::size_t n            = layout.tensors()[t].chunk_bytes;
    ASSERT_EQ(0,
              std::memcmp(image + layout.tensor_offset(t), arena_mirror.data() + arena_offset, n))
        << where << ": block " << block << " tensor " << t;
  }
}

/**
 * Store `blocks` random GPU blocks into random host slots, check the slots (and that other
 * slots and slot padding stay poisoned), then load them into other random GPU blocks and check
 * those (and that every other arena byte is unchanged).
 */
inline void check_round_trip(
    TransferEngine& engine,
    std::byte* arena,
    std::size_t arena_bytes,
    const ArenaAccess& access,
    std::byte* host,
    const HostSlots& slots,
    std::size_t slot_count,
    Method method,
    std::uint64_t seed,
    const std::function<void()>& host_visible = [] {}) {
  const KvLayout& layout = engine.layout();
  const std::size_t k    = layout.gpu_blocks_per_slot();
  std::mt19937_64 rng{seed};
  std::vector<std::byte> mirror(arena_bytes);
  for (auto& b : mirror)
    b = static_cast<std::byte>(rng());
  access.upload(arena, mirror.data(), arena_bytes);
  std::fill(host, host + slots.slot_bytes * slots.num_slots, kPoison);
  host_visible();

  TransferRequest store{.direction  = Direction::kStore,
                        .gpu_blocks = random_ids(rng, slot_count * k, layout.num_gpu_blocks()),
                        .host_slots = random_ids(rng, slot_count, slots.num_slots),
                        .method     = method};
  const JobStatus stored = engine.wait(engine.submit(store));
  ASSERT_EQ(stored.state, JobState::kDone) << stored.error;
  host_visible();
  std::vector<bool> used(slots.num_slots, false);
  for (std::size_t i = 0; i < slot_count; ++i) {
    const std::size_t slot = static_cast<std::size_t>(store.host_slots[i]);
    used[slot]             = true;
    const std::byte* image = host + slot * slots.slot_bytes;
    for (std::size_t sub = 0; sub < k; ++sub) {
      expect_block_image(layout,
                         mirror,
                         arena,
                         store.gpu_blocks[i * k + sub],
                         image + sub * layout.gpu_block_bytes(),
                         "store");
    }
    for (std::size_t b = layout.host_slot_bytes(); b < slots.slot_bytes; ++b) {
      ASSERT_EQ(image[b], kPoison) << "store wrote slot " << slot << " padding byte " << b;
    }
  }
  for (std::size_t s = 0; s < slots.num_slots; ++s) {
    if (used[s]) continue;
    const std::byte* image = host + s * slots.slot_bytes;
    ASSERT_TRUE(
        std::all_of(image, image + slots.slot_bytes, [](std::byte b) { return b == kPoison; }))
        << "store wrote unrequested slot " << s;
  }

  // Load the stored slots into other random GPU blocks of a poisoned arena.
  std::vector<std::byte> poisoned(arena_bytes, kPoison);
  access.upload(arena, poisoned.data(), arena_bytes);
  TransferRequest load{.direction  = Direction::kLoad,
                       .gpu_blocks = random_ids(rng, slot_count * k, layout.num_gpu_blocks()),
                       .host_slots = store.host_slots,
                       .method     = method};
  const JobStatus loaded = engine.wait(engine.submit(load));
  ASSERT_EQ(loaded.state, JobState::kDone) << loaded.error;
  std::vector<std::byte> after(arena_bytes);
  access.download(after.data(), arena, arena_bytes);
  // Expected arena: poison, with each loaded block's chunks equal to the stored block's.
  std::vector<std::byte> expected = poisoned;
  for (std::size_t i = 0; i < slot_count * k; ++i) {
    for (std::size_t t = 0; t < layout.num_tensors(); ++t) {
      const auto to   = static_cast<std::size_t>(layout.gpu_chunk(t, load.gpu_blocks[i]) - arena);
      const auto from = static_cast<std::size_t>(layout.gpu_chunk(t, store.gpu_blocks[i]) - arena);
      std::memcpy(expected.data() + to, mirror.data() + from, layout.tensors()[t].chunk_bytes);
    }
  }
  for (std::size_t b = 0; b < arena_bytes; ++b) {
    ASSERT_EQ(after[b], expected[b]) << "load: arena byte " << b << " differs";
  }
}

}  // namespace kvoffload::transfer::testing
