// Admission filter (vLLM's FilterReusedOffloadingManager): what it counts, what it admits, the
// bounded tracker, pass-through of everything else, and its errors.
#include "lockstep.hpp"
#include "test_util.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/filter_manager.hpp>

#include <gtest/gtest.h>

namespace kvoffload::testing {
namespace {

std::unique_ptr<FilterReusedOffloadingManager> filtered(std::size_t capacity,
                                                        std::size_t threshold,
                                                        std::size_t tracker = 64'000) {
  return std::make_unique<FilterReusedOffloadingManager>(
      make_lru_manager(capacity, 64), threshold, tracker);
}

TEST(Filter, ThresholdZeroReturnsTheBackingManagerUnwrapped) {
  auto backing           = make_lru_manager(4, 64);
  OffloadingManager* raw = backing.get();
  auto m                 = make_filter_reused_manager(std::move(backing), 0, 64'000);
  EXPECT_EQ(m.get(), raw);
  auto wrapped = make_filter_reused_manager(make_lru_manager(4, 64), 2, 64'000);
  EXPECT_NE(dynamic_cast<FilterReusedOffloadingManager*>(wrapped.get()), nullptr);
}

TEST(Filter, StoresOnlyBlocksLookedUpThresholdTimes) {
  auto m = filtered(8, 2);
  EXPECT_EQ(m->lookup(Hashes{1, 2, 3}), 0u);
  auto out = m->prepare_store(Hashes{1, 2, 3});
  ASSERT_TRUE(out);
  EXPECT_TRUE(out->block_hashes_to_store.empty());
  EXPECT_TRUE(out->store_spec.block_ids.empty());
  EXPECT_EQ(m->filtered_blocks(), 3u);
  EXPECT_EQ(m->stats().stores, 0u);

  EXPECT_EQ(m->lookup(Hashes{2, 3}), 0u);  // 2 and 3 now counted twice, 1 once
  out = m->prepare_store(Hashes{1, 2, 3});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_to_store, (Hashes{2, 3}));
  EXPECT_EQ(out->store_spec.block_ids, (Ids{0, 1}));
  m->complete_store(out->block_hashes_to_store);
  EXPECT_EQ(m->filtered_blocks(), 4u);
  EXPECT_EQ(m->lookup(Hashes{2, 3}), 2u);
}

TEST(Filter, CountsEveryHashPassedNotOnlyTheHitPrefix) {
  // The hashes past the first miss are the ones a runtime stores next: they must count.
  auto m = filtered(8, 2);
  store(m->backing(), {1});
  EXPECT_EQ(m->lookup(Hashes{1, 2, 3}), 1u);
  EXPECT_EQ(m->lookup(Hashes{9, 2, 3}), 0u);  // misses at once, still counts 2 and 3
  EXPECT_EQ(m->lookup_count(1), 1u);
  EXPECT_EQ(m->lookup_count(2), 2u);
  EXPECT_EQ(m->lookup_count(3), 2u);
  EXPECT_EQ(m->lookup_count(9), 1u);
  EXPECT_EQ(m->lookup_count(4), 0u);
}

TEST(Filter, DuplicatesInOneLookupCountEachTime) {
  auto m = filtered(8, 3);
  (void)m->lookup(Hashes{5, 5, 5});
  EXPECT_EQ(m->lookup_count(5), 3u);
  auto out = m->prepare_store(Hashes{5});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_to_store, (Hashes{5}));
}

TEST(Filter, TrackerForgetsTheLeastRecentlyLookedUpHash) {
  auto m = filtered(8, 2, 2);
  (void)m->lookup(Hashes{1, 2});
  (void)m->lookup(Hashes{1});  // 1: count 2, most recent; 2: count 1
  (void)m->lookup(Hashes{3});  // full: 2 goes
  EXPECT_EQ(m->tracked(), 2u);
  EXPECT_EQ(m->lookup_count(1), 2u);
  EXPECT_EQ(m->lookup_count(2), 0u);
  EXPECT_EQ(m->lookup_count(3), 1u);
  (void)m->lookup(Hashes{2});  // back with a fresh count; 1 is the oldest now and goes
  EXPECT_EQ(m->lookup_count(2), 1u);
  EXPECT_EQ(m->lookup_count(1), 0u);
  auto out = m->prepare_store(Hashes{1, 2, 3});
  ASSERT_TRUE(out);
  EXPECT_TRUE(out->block_hashes_to_store.empty());
}

TEST(Filter, ThresholdOneWithLookupsBeforeStoresBehavesLikeTheBackingManager) {
  run_lockstep(
      [](std::size_t n) { return make_filter_reused_manager(make_lru_manager(n, 64), 1, 1000); },
      [](std::size_t n) { return make_lru_manager(n, 64); },
      {.sequences = 800, .lookup_before_store = true});
}

TEST(Filter, RefusedStoresCountNothingAsFiltered) {
  auto m = filtered(1, 1);
  (void)m->lookup(Hashes{1, 2, 3});
  auto out = m->prepare_store(Hashes{1});
  ASSERT_TRUE(out);  // 1 pending: nothing evictable for the next store
  EXPECT_FALSE(m->prepare_store(Hashes{2, 7}));
  EXPECT_EQ(m->filtered_blocks(), 0u);
  EXPECT_EQ(m->stats().store_rejections, 1u);
}

TEST(Filter, PassesEveryOtherCallThrough) {
  auto m = filtered(2, 1);
  (void)m->lookup(Hashes{1, 2});
  auto out = m->prepare_store(Hashes{1, 2});
  ASSERT_TRUE(out);
  m->complete_store(Hashes{1, 2});
  EXPECT_EQ(m->prepare_load(Hashes{2}).block_ids, (Ids{1}));
  EXPECT_EQ(m->stats().pinned, 1u);
  m->complete_load(Hashes{2});
  m->touch(Hashes{1});  // 2 is now the least recent
  (void)m->lookup(Hashes{3});
  out = m->prepare_store(Hashes{3});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{2}));
  const auto events = m->take_events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].block_hashes, (Hashes{1, 2}));
  EXPECT_TRUE(events[1].removed);
  EXPECT_THROW(m->complete_load(Hashes{1}), logic_error);
  m->complete_store(Hashes{3}, false);
  m->clear();
  EXPECT_EQ(m->stats().ready, 0u);
  EXPECT_EQ(m->lookup_count(1), 1u);  // clear() leaves the tracker alone
  expect_invariants(m->backing());
}

TEST(Filter, MetadataIncludesTheTracker) {
  auto m = filtered(16, 2, 1000);
  EXPECT_GE(m->stats().metadata_bytes, m->backing().stats().metadata_bytes + 1000 * 24);
}

TEST(Filter, RejectsBadArgumentsNamingTheValue) {
  try {
    (void)make_filter_reused_manager(make_lru_manager(4, 64), 2, 0);
    ADD_FAILURE() << "accepted max_tracker_size 0";
  } catch (const logic_error& e) {
    EXPECT_NE(std::string{e.what()}.find("max_tracker_size"), std::string::npos) << e.what();
    EXPECT_NE(std::string{e.what()}.find("got 0"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)make_filter_reused_manager(nullptr, 2, 10), logic_error);
  EXPECT_THROW((void)make_filter_reused_manager(nullptr, 0, 10), logic_error);
  EXPECT_THROW(FilterReusedOffloadingManager(make_lru_manager(4, 64), 0, 10), logic_error);
  EXPECT_THROW(
      (void)make_filter_reused_manager(make_lru_manager(4, 64), 2, (std::size_t{1} << 30) + 1),
      logic_error);
}

}  // namespace
}  // namespace kvoffload::testing
