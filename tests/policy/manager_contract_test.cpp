// The contract every manager shares (pending / ready / pinned, all-or-nothing stores, slot ids,
// events, clear, misuse), run against each policy spec in kContractSpecs.
#include "contract_specs.hpp"
#include "test_util.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>

#include <gtest/gtest.h>

#include <string>

namespace kvoffload::testing {
namespace {

class ManagerContract : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<OffloadingManager> make(std::size_t capacity, bool events = true) {
    return make_manager(GetParam(), capacity, 4096, events);
  }
  void TearDown() override {
    if (manager_) expect_invariants(*manager_);
  }
  OffloadingManager& with(std::size_t capacity, bool events = true) {
    manager_ = make(capacity, events);
    return *manager_;
  }
  std::unique_ptr<OffloadingManager> manager_;
};

TEST_P(ManagerContract, SlotIdsAscendThenReuseFreedAsAStack) {
  auto& m = with(4);
  EXPECT_EQ(store(m, {10, 11, 12}), (Ids{0, 1, 2}));
  EXPECT_EQ(store(m, {13}), (Ids{3}));
  // Full: the oldest block (10, in slot 0) is evicted and its slot reused.
  auto out = m.prepare_store(Hashes{14});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{10}));
  EXPECT_EQ(out->store_spec.block_ids, (Ids{0}));
}

TEST_P(ManagerContract, FreedSlotsComeBackMostRecentlyFreedFirst) {
  auto& m = with(4);
  EXPECT_EQ(store(m, {10, 11}), (Ids{0, 1}));
  auto out = m.prepare_store(Hashes{20, 21});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->store_spec.block_ids, (Ids{2, 3}));
  m.complete_store(Hashes{20, 21}, false);  // frees 2 then 3: 3 is on top
  auto again = m.prepare_store(Hashes{30, 31});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->store_spec.block_ids, (Ids{3, 2}));
  EXPECT_TRUE(again->block_hashes_evicted.empty());
}

TEST_P(ManagerContract, LookupCountsTheReadyPrefix) {
  auto& m = with(8);
  store(m, {1, 2, 3});
  auto out = m.prepare_store(Hashes{4});
  ASSERT_TRUE(out);
  EXPECT_EQ(m.lookup(Hashes{1, 2, 3}), 3u);
  EXPECT_EQ(m.lookup(Hashes{1, 9, 2}), 1u);     // stops at the absent 9
  EXPECT_EQ(m.lookup(Hashes{1, 2, 4, 3}), 2u);  // stops at the pending 4
  EXPECT_EQ(m.lookup(Hashes{}), 0u);
  const ManagerStats s = m.stats();
  EXPECT_EQ(s.lookups, 4u);
  EXPECT_EQ(s.lookup_blocks, 10u);
  EXPECT_EQ(s.hits, 6u);
  EXPECT_EQ(s.misses, 4u);
}

TEST_P(ManagerContract, LookupChangesNoRecency) {
  auto& m = with(2);
  store(m, {1});
  store(m, {2});
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(m.lookup(Hashes{1}), 1u);
  auto out = m.prepare_store(Hashes{3});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{1}));  // 1 is still the oldest
}

TEST_P(ManagerContract, PendingBlocksAreNeitherHitsNorLoadableNorEvictable) {
  auto& m  = with(2);
  auto out = m.prepare_store(Hashes{1, 2});
  ASSERT_TRUE(out);
  EXPECT_EQ(m.lookup(Hashes{1}), 0u);
  EXPECT_THROW((void)m.prepare_load(Hashes{1}), logic_error);
  EXPECT_FALSE(m.prepare_store(Hashes{3}));  // nothing evictable: all or nothing
  const ManagerStats s = m.stats();
  EXPECT_EQ(s.pending, 2u);
  EXPECT_EQ(s.evictable, 0u);
  EXPECT_EQ(s.store_rejections, 1u);
}

TEST_P(ManagerContract, PinnedBlocksStayUntilTheirLastReferenceIsReleased) {
  auto& m = with(2);
  store(m, {1, 2});
  EXPECT_EQ(m.prepare_load(Hashes{1, 2}).block_ids, (Ids{0, 1}));
  EXPECT_EQ(m.prepare_load(Hashes{1}).block_ids, (Ids{0}));
  EXPECT_EQ(m.stats().pinned, 2u);
  EXPECT_FALSE(m.prepare_store(Hashes{3}));
  m.complete_load(Hashes{1, 2});
  // 2 is idle now, 1 still holds a reference.
  auto out = m.prepare_store(Hashes{3});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{2}));
  EXPECT_EQ(out->store_spec.block_ids, (Ids{1}));
  EXPECT_EQ(m.lookup(Hashes{1}), 1u);
  m.complete_load(Hashes{1});
  EXPECT_EQ(m.stats().pinned, 0u);
}

TEST_P(ManagerContract, AllOrNothingWhenTooFewBlocksAreEvictable) {
  auto& m = with(3);
  store(m, {1, 2});
  auto pending = m.prepare_store(Hashes{3});
  ASSERT_TRUE(pending);
  (void)m.take_events();
  const ManagerStats before = m.stats();
  EXPECT_FALSE(m.prepare_store(Hashes{4, 5, 6}));  // needs 3, only 2 evictable
  EXPECT_EQ(gauges(m.stats()), gauges(before));
  EXPECT_EQ(m.lookup(Hashes{1, 2}), 2u);
  EXPECT_TRUE(m.take_events().empty());
  EXPECT_FALSE(m.prepare_store(Hashes{4, 5, 6, 7}));  // more than the capacity
}

TEST_P(ManagerContract, BlocksNamedInTheCallAreNeverItsVictims) {
  auto& m = with(2);
  store(m, {1});
  store(m, {2});
  // 1 is the policy's first victim, but the call names it: 2 goes instead.
  auto out = m.prepare_store(Hashes{1, 3});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_to_store, (Hashes{3}));
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{2}));
  EXPECT_EQ(out->store_spec.block_ids, (Ids{1}));
  m.complete_store(out->block_hashes_to_store);
  // Both residents named: nothing may be evicted.
  EXPECT_FALSE(m.prepare_store(Hashes{3, 1, 4}));
  EXPECT_EQ(m.lookup(Hashes{1, 3}), 2u);
}

TEST_P(ManagerContract, PresentHashesAreSkippedInAnyState) {
  auto& m = with(4);
  store(m, {1});
  ASSERT_TRUE(m.prepare_store(Hashes{2}));
  (void)m.prepare_load(Hashes{1});
  auto out = m.prepare_store(Hashes{1, 2, 3});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_to_store, (Hashes{3}));
  EXPECT_EQ(out->store_spec.block_ids, (Ids{2}));
  EXPECT_EQ(out->store_spec.medium, Medium::kCpu);
}

TEST_P(ManagerContract, RepeatedHashesInAStoreAreStoredOnce) {
  auto& m  = with(4);
  auto out = m.prepare_store(Hashes{5, 6, 5, 7, 6});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_to_store, (Hashes{5, 6, 7}));
  EXPECT_EQ(out->store_spec.block_ids, (Ids{0, 1, 2}));
  m.complete_store(Hashes{5, 6, 5, 7, 6});
  auto events = m.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].block_hashes, (Hashes{5, 6, 7}));
  EXPECT_EQ(m.stats().free_slots, 1u);
}

TEST_P(ManagerContract, FailedStoreDropsPendingBlocksAndKeepsReadyOnes) {
  auto& m = with(4);
  store(m, {1});
  ASSERT_TRUE(m.prepare_store(Hashes{2, 3}));
  (void)m.take_events();
  m.complete_store(Hashes{1, 2, 3, 99}, false);  // 99 is absent: ignored on failure
  EXPECT_EQ(m.lookup(Hashes{1}), 1u);
  EXPECT_TRUE(m.take_events().empty());
  const ManagerStats s = m.stats();
  EXPECT_EQ(s.pending, 0u);
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.free_slots, 3u);
  EXPECT_EQ(s.stores_failed, 2u);
  // The hashes can be stored again: never-used slot 3 first, then the freed 2 (freed last).
  EXPECT_EQ(store(m, {2, 3}), (Ids{3, 2}));
}

TEST_P(ManagerContract, CompleteStoreOfReadyBlocksQueuesNoEvent) {
  auto& m = with(4);
  store(m, {1, 2});
  (void)m.take_events();
  m.complete_store(Hashes{1, 2});
  EXPECT_TRUE(m.take_events().empty());
}

TEST_P(ManagerContract, EventsComeInOrderAndCarryTheBlockSize) {
  auto& m = with(2);
  store(m, {1, 2});
  auto out = m.prepare_store(Hashes{3});
  ASSERT_TRUE(out);
  m.complete_store(Hashes{3});
  auto events = m.take_events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_FALSE(events[0].removed);
  EXPECT_EQ(events[0].block_hashes, (Hashes{1, 2}));
  EXPECT_TRUE(events[1].removed);
  EXPECT_EQ(events[1].block_hashes, out->block_hashes_evicted);
  EXPECT_FALSE(events[2].removed);
  EXPECT_EQ(events[2].block_hashes, (Hashes{3}));
  for (const auto& e : events) {
    EXPECT_EQ(e.block_size, 4096u);
    EXPECT_EQ(e.medium, Medium::kCpu);
  }
  EXPECT_TRUE(m.take_events().empty());
}

TEST_P(ManagerContract, DisabledEventsQueueNothing) {
  auto& m = with(1, /*events=*/false);
  store(m, {1});
  store(m, {2});
  m.clear();
  EXPECT_TRUE(m.take_events().empty());
  EXPECT_EQ(m.stats().evictions, 1u);
}

TEST_P(ManagerContract, ClearRemovesIdleReadyBlocksOnly) {
  auto& m = with(4);
  store(m, {1, 2, 3});
  (void)m.prepare_load(Hashes{2});
  ASSERT_TRUE(m.prepare_store(Hashes{4}));
  (void)m.take_events();
  m.clear();
  auto events = m.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].removed);
  EXPECT_EQ(events[0].block_hashes, (Hashes{1, 3}));
  EXPECT_EQ(m.lookup(Hashes{2}), 1u);
  EXPECT_EQ(m.lookup(Hashes{1}), 0u);
  const ManagerStats s = m.stats();
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.pending, 1u);
  EXPECT_EQ(s.free_slots, 2u);
  m.complete_store(Hashes{4});
  m.complete_load(Hashes{2});
  EXPECT_EQ(m.lookup(Hashes{2, 4}), 2u);
}

TEST_P(ManagerContract, TouchIgnoresAbsentHashes) {
  auto& m = with(2);
  store(m, {1});
  m.touch(Hashes{42, 1, 43});
  m.touch(Hashes{});
  EXPECT_EQ(m.lookup(Hashes{1}), 1u);
  EXPECT_EQ(m.lookup(Hashes{42}), 0u);
}

TEST_P(ManagerContract, DuplicateLoadsTakeOneReferenceEach) {
  auto& m = with(2);
  store(m, {1});
  EXPECT_EQ(m.prepare_load(Hashes{1, 1}).block_ids, (Ids{0, 0}));
  m.complete_load(Hashes{1});
  EXPECT_EQ(m.stats().pinned, 1u);
  m.complete_load(Hashes{1});
  EXPECT_EQ(m.stats().pinned, 0u);
  EXPECT_EQ(m.stats().loads, 2u);
}

TEST_P(ManagerContract, StatsCountStoresEvictionsAndGauges) {
  auto& m = with(2);
  store(m, {1, 2});
  store(m, {3});
  (void)m.prepare_load(Hashes{3});
  const ManagerStats s = m.stats();
  EXPECT_EQ(s.capacity, 2u);
  EXPECT_EQ(s.stores, 3u);
  EXPECT_EQ(s.stores_completed, 3u);
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.ready, 2u);
  EXPECT_EQ(s.pinned, 1u);
  EXPECT_EQ(s.evictable, 1u);
  EXPECT_EQ(s.free_slots, 0u);
  EXPECT_GT(s.metadata_bytes, 0u);
}

// ---- misuse: a clear exception naming the hash, and no state change ----

TEST_P(ManagerContract, PrepareLoadOfAnAbsentBlockThrowsAndPinsNothing) {
  auto& m = with(4);
  store(m, {1});
  try {
    (void)m.prepare_load(Hashes{1, 777});
    FAIL() << "expected logic_error";
  } catch (const logic_error& e) {
    EXPECT_NE(std::string{e.what()}.find("777"), std::string::npos) << e.what();
  }
  EXPECT_EQ(m.stats().pinned, 0u);
  EXPECT_THROW(m.complete_load(Hashes{1}), logic_error);  // no reference was taken
}

TEST_P(ManagerContract, PrepareLoadOfAPendingBlockSaysItIsPending) {
  auto& m = with(4);
  ASSERT_TRUE(m.prepare_store(Hashes{5}));
  try {
    (void)m.prepare_load(Hashes{5});
    FAIL() << "expected logic_error";
  } catch (const logic_error& e) {
    EXPECT_NE(std::string{e.what()}.find("5 is pending"), std::string::npos) << e.what();
  }
  EXPECT_EQ(m.stats().pending, 1u);
}

TEST_P(ManagerContract, CompleteLoadWithoutAReferenceThrowsAndKeepsReferences) {
  auto& m = with(4);
  store(m, {1, 2});
  (void)m.prepare_load(Hashes{1});
  try {
    m.complete_load(Hashes{1, 2});
    FAIL() << "expected logic_error";
  } catch (const logic_error& e) {
    EXPECT_NE(std::string{e.what()}.find("2 holds no load reference"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(m.stats().pinned, 1u);
  EXPECT_THROW(m.complete_load(Hashes{1, 1}), logic_error);  // one reference, two releases
  EXPECT_EQ(m.stats().pinned, 1u);
  EXPECT_THROW(m.complete_load(Hashes{404}), logic_error);
  m.complete_load(Hashes{1});
  EXPECT_EQ(m.stats().pinned, 0u);
}

TEST_P(ManagerContract, CompleteStoreOfAnAbsentBlockThrowsAndCompletesNothing) {
  auto& m = with(4);
  ASSERT_TRUE(m.prepare_store(Hashes{2}));
  (void)m.take_events();
  try {
    m.complete_store(Hashes{2, 99});
    FAIL() << "expected logic_error";
  } catch (const logic_error& e) {
    EXPECT_NE(std::string{e.what()}.find("99 is not stored"), std::string::npos) << e.what();
  }
  EXPECT_EQ(m.lookup(Hashes{2}), 0u);
  EXPECT_EQ(m.stats().pending, 1u);
  EXPECT_TRUE(m.take_events().empty());
}

TEST_P(ManagerContract, EmptySpansAreValidNoOps) {
  auto& m = with(2);
  store(m, {1});
  (void)m.take_events();
  const ManagerStats before = m.stats();
  EXPECT_EQ(m.lookup({}), 0u);
  EXPECT_TRUE(m.prepare_load({}).block_ids.empty());
  m.touch({});
  m.complete_load({});
  auto out = m.prepare_store({});
  ASSERT_TRUE(out);
  EXPECT_TRUE(out->block_hashes_to_store.empty());
  EXPECT_TRUE(out->block_hashes_evicted.empty());
  m.complete_store({});
  m.complete_store({}, false);
  EXPECT_EQ(gauges(m.stats()), gauges(before));
  EXPECT_TRUE(m.take_events().empty());
}

TEST_P(ManagerContract, ZeroCapacityIsRejected) {
  try {
    (void)make(0);
    FAIL() << "expected logic_error";
  } catch (const logic_error& e) {
    EXPECT_NE(std::string{e.what()}.find("num_blocks"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Policies,
                         ManagerContract,
                         ::testing::ValuesIn(kContractSpecs),
                         [](const auto& info) {
                           std::string name;
                           for (char c : info.param)
                             name += std::isalnum(c) ? c : '_';
                           return name;
                         });

}  // namespace
}  // namespace kvoffload::testing
