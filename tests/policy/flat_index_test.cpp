// The flat index against std::unordered_map under random inserts and erases, including keys
// whose fingerprints collide (same home bucket) and wrap-around at the table's end.
#include "policy/flat_index.hpp"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>
#include <vector>

namespace kvoffload::detail {
namespace {

TEST(FlatIndex, MatchesAnUnorderedMapUnderRandomChurn) {
  for (std::size_t max_keys : {1u, 3u, 17u, 500u}) {
    std::vector<std::uint64_t> keys(max_keys);  // the owner's key of id i
    FlatIndex index{max_keys, keys.data(), sizeof(std::uint64_t)};
    std::unordered_map<std::uint64_t, std::uint32_t> model;
    std::vector<std::uint32_t> free_ids;
    for (std::uint32_t i = 0; i < max_keys; ++i)
      free_ids.push_back(i);
    std::mt19937_64 rng{max_keys};
    for (int step = 0; step < 20000; ++step) {
      // A small key universe forces collisions and long runs.
      const std::uint64_t key = rng() % (3 * max_keys + 3);
      const auto it           = model.find(key);
      if (it == model.end() && !free_ids.empty() && rng() % 2) {
        const std::uint32_t id = free_ids.back();
        free_ids.pop_back();
        keys[id] = key;
        index.insert(key, id);
        model.emplace(key, id);
      } else if (it != model.end() && rng() % 2) {
        EXPECT_TRUE(index.erase(key));
        free_ids.push_back(it->second);
        model.erase(it);
      } else {
        EXPECT_FALSE(it == model.end() && index.erase(key));
      }
      ASSERT_EQ(index.size(), model.size());
      for (std::uint64_t probe = 0; probe < 3 * max_keys + 3; probe += 1 + max_keys / 50) {
        const auto m = model.find(probe);
        ASSERT_EQ(index.find(probe), m == model.end() ? kNil : m->second)
            << "max_keys " << max_keys << " step " << step << " key " << probe;
      }
    }
  }
}

TEST(FlatIndex, MixHashSpreadsDenseKeys) {
  // Dense integer ids (as in real traces) must not land in the same few buckets.
  std::vector<int> hits(64, 0);
  for (std::uint64_t k = 0; k < 6400; ++k)
    ++hits[(mix_hash(k) >> 32) % 64];
  for (int h : hits) {
    EXPECT_GT(h, 50);
    EXPECT_LT(h, 150);
  }
}

}  // namespace
}  // namespace kvoffload::detail
