// LRU's own rules: recency order, touch order, skipping, multi-victim slot reuse.
#include "test_util.hpp"

#include <kvoffload/offloading_manager.hpp>

#include <gtest/gtest.h>

namespace kvoffload::testing {
namespace {

TEST(Lru, TouchMakesTheFirstHashMostRecent) {
  auto m = make_lru_manager(3, 16);
  store(*m, {1});
  store(*m, {2});
  store(*m, {3});
  m->touch(Hashes{1, 2});  // order, oldest first: 3, 2, 1
  auto out = m->prepare_store(Hashes{4});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{3}));
  m->complete_store(Hashes{4});
  out = m->prepare_store(Hashes{5});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{2}));
  expect_invariants(*m);
}

TEST(Lru, NewBlocksEnterAtTheMostRecentEndInInputOrder) {
  auto m = make_lru_manager(3, 16);
  store(*m, {1, 2, 3});
  auto out = m->prepare_store(Hashes{4, 5});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{1, 2}));
}

TEST(Lru, VictimsSkipPinnedPendingAndNamedBlocks) {
  auto m = make_lru_manager(5, 16);
  store(*m, {1, 2, 3, 4});
  ASSERT_TRUE(m->prepare_store(Hashes{5}));      // 5 pending
  (void)m->prepare_load(Hashes{1});              // 1 pinned
  auto out = m->prepare_store(Hashes{2, 6, 7});  // 2 named by the call
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{3, 4}));
  EXPECT_EQ(out->block_hashes_to_store, (Hashes{6, 7}));
  // Victims freed slots 2 then 3; the most recently freed (3) is reused first.
  EXPECT_EQ(out->store_spec.block_ids, (Ids{3, 2}));
  expect_invariants(*m);
}

TEST(Lru, TouchOfAPendingBlockRefreshesIt) {
  auto m = make_lru_manager(2, 16);
  store(*m, {1});
  ASSERT_TRUE(m->prepare_store(Hashes{2}));
  m->touch(Hashes{1, 2});
  m->complete_store(Hashes{2});
  m->touch(Hashes{1});
  auto out = m->prepare_store(Hashes{3});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{2}));
}

TEST(Lru, MetadataStaysUnder64BytesPerSlot) {
  const std::size_t slots = 100'000;
  auto m                  = make_lru_manager(slots, 16);
  EXPECT_LE(m->stats().metadata_bytes, 64 * slots);
}

}  // namespace
}  // namespace kvoffload::testing
