// ARC's own rules: T1 -> T2 promotion, ghost lists, the adaptive target p, and REPLACE.
#include "policy/policies.hpp"
#include "test_util.hpp"

#include <kvoffload/offloading_manager.hpp>

#include <gtest/gtest.h>

namespace kvoffload::testing {
namespace {

detail::ArcState state_of(const OffloadingManager& m) {
  auto* core = dynamic_cast<const detail::CoreManager*>(&m);
  EXPECT_NE(core, nullptr);
  auto s = detail::arc_state(core->policy());
  EXPECT_TRUE(s.has_value());
  return s.value_or(detail::ArcState{});
}

TEST(Arc, ATouchedReadyBlockMovesToT2AndAPendingOneStaysInT1) {
  auto m = make_arc_manager(4, 16);
  store(*m, {1, 2});
  ASSERT_TRUE(m->prepare_store(Hashes{3}));
  m->touch(Hashes{1, 3});
  auto s = state_of(*m);
  EXPECT_EQ(s.t1, 2u);  // 2 and the pending 3
  EXPECT_EQ(s.t2, 1u);  // 1
  expect_invariants(*m);
}

TEST(Arc, T1VictimsBecomeB1GhostsAndT2VictimsB2Ghosts) {
  auto m = make_arc_manager(2, 16);
  store(*m, {1, 2});
  m->touch(Hashes{2});  // T1 = [1], T2 = [2]
  // p = 0: |T1| = 1 >= 0, so T1's LRU goes first, then T2's.
  auto out = m->prepare_store(Hashes{3, 4});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{1, 2}));
  auto s = state_of(*m);
  EXPECT_EQ(s.b1, 1u);
  EXPECT_EQ(s.b2, 1u);
  EXPECT_EQ(s.t1, 2u);
  expect_invariants(*m);
}

TEST(Arc, AB1HitRaisesPAndAB2HitLowersIt) {
  auto m = make_arc_manager(2, 16);
  store(*m, {1, 2});
  m->touch(Hashes{2});
  m->complete_store(m->prepare_store(Hashes{3, 4})->block_hashes_to_store);  // B1 = [1], B2 = [2]
  m->touch(Hashes{1});  // B1 hit: p += max(1, |B2|/|B1|) = 1
  EXPECT_DOUBLE_EQ(state_of(*m).p, 1.0);
  m->touch(Hashes{1});  // again: capped at c = 2
  m->touch(Hashes{1});
  EXPECT_DOUBLE_EQ(state_of(*m).p, 2.0);
  m->touch(Hashes{2});  // B2 hit: p -= max(1, |B1|/|B2|) = 1
  EXPECT_DOUBLE_EQ(state_of(*m).p, 1.0);
  m->touch(Hashes{2, 2});
  EXPECT_DOUBLE_EQ(state_of(*m).p, 0.0);  // floored at 0
  EXPECT_EQ(m->lookup(Hashes{1}), 0u);    // a ghost hit re-admits nothing
  expect_invariants(*m);
}

TEST(Arc, AGhostHitDeltaIsTheRatioOfTheGhostLists) {
  auto m = make_arc_manager(4, 16);
  store(*m, {1, 2, 3, 4});
  m->touch(Hashes{2, 3, 4});  // T1 = [1], T2 = [4, 3, 2]
  // p = 0: the first victim is T1's 1, then T1 is empty so T2's oldest, 4 and 3.
  auto out = m->prepare_store(Hashes{5, 6, 7});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{1, 4, 3}));
  m->complete_store(out->block_hashes_to_store);
  m->touch(Hashes{1});  // |B1| = 1, |B2| = 2: p += 2
  EXPECT_DOUBLE_EQ(state_of(*m).p, 2.0);
}

TEST(Arc, WhenT1IsBelowTargetVictimsComeFromT2) {
  auto m = make_arc_manager(3, 16);
  store(*m, {1, 2, 3});
  m->touch(Hashes{3});                                                    // T1 = [1, 2], T2 = [3]
  m->complete_store(m->prepare_store(Hashes{4})->block_hashes_to_store);  // evicts 1 -> B1
  m->touch(Hashes{1});                                                    // p = 1
  m->touch(Hashes{1});                                                    // p = 2
  m->touch(Hashes{1});                                                    // p = 3 (cap)
  // |T1| = 2 (2, 4) < p = 3: the victim is T2's LRU, 3.
  auto out = m->prepare_store(Hashes{5});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{3}));
  expect_invariants(*m);
}

TEST(Arc, ReplaceCountsVictimsAlreadyTakenFromT1) {
  auto m = make_arc_manager(4, 16);
  store(*m, {1, 2, 3, 4});
  m->touch(Hashes{3, 4});  // T1 = [1, 2], T2 = [4, 3]
  m->complete_store(m->prepare_store(Hashes{5})->block_hashes_to_store);  // evicts 1 -> B1
  m->touch(Hashes{1});                                                    // p = 1
  // T1 = [2, 5]. Victim 1: |T1| = 2 >= 1 -> 2. Victim 2: |T1| - 1 = 1 >= 1 -> 5.
  // Victim 3: |T1| - 2 = 0 < 1 -> T2's LRU, 4.
  auto out = m->prepare_store(Hashes{6, 7, 8});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{2, 5, 4}));
  expect_invariants(*m);
}

TEST(Arc, GhostListsAreTrimmedToTheCapacity) {
  auto m = make_arc_manager(2, 16);
  for (BlockHash h = 0; h < 20; h += 2)
    store(*m, {h, h + 1});
  auto s = state_of(*m);
  EXPECT_EQ(s.b1, 2u);
  EXPECT_EQ(s.t1, 2u);
  expect_invariants(*m);
}

// vLLM moves a touched ghost to the MRU end of its list, so the next trim drops another one.
TEST(Arc, ATouchedGhostMovesToItsListsMruEndAndOutlivesTheNextTrim) {
  auto m = make_arc_manager(2, 16);
  store(*m, {1, 2});
  store(*m, {3, 4});    // p = 0: 1 then 2 leave T1, B1 = [1, 2] (oldest first)
  m->touch(Hashes{1});  // B1 hit: p = 1, and B1 = [2, 1]
  ASSERT_DOUBLE_EQ(state_of(*m).p, 1.0);
  store(*m, {5});  // |T1| = 2 >= p: 3 leaves T1; B1 is full, so its oldest ghost, 2, goes
  EXPECT_EQ(state_of(*m).b1, 2u);
  m->touch(Hashes{2});  // 2 is no ghost any more: p unchanged
  EXPECT_DOUBLE_EQ(state_of(*m).p, 1.0);
  m->touch(Hashes{1});  // 1 still is: p = min(1 + max(1, |B2|/|B1|), 2) = 2
  EXPECT_DOUBLE_EQ(state_of(*m).p, 2.0);
  expect_invariants(*m);
}

TEST(Arc, AStoredBlockLeavesTheGhostLists) {
  auto m = make_arc_manager(2, 16);
  store(*m, {1});
  store(*m, {2});
  store(*m, {3});  // 1 -> B1
  EXPECT_EQ(state_of(*m).b1, 1u);
  store(*m, {1});  // 2 -> B1, then 1 re-enters T1 and leaves B1
  auto s = state_of(*m);
  EXPECT_EQ(s.b1, 1u);
  m->touch(Hashes{1});  // 1 is resident in T1: promoted, no ghost hit
  EXPECT_DOUBLE_EQ(state_of(*m).p, 0.0);
  EXPECT_EQ(state_of(*m).t2, 1u);
  expect_invariants(*m);
}

TEST(Arc, MetadataWithFullGhostListsStaysUnder128BytesPerSlot) {
  const std::size_t slots = 50'000;
  auto m                  = make_arc_manager(slots, 16);
  Hashes batch(1000);
  for (BlockHash base = 0; base < 4 * slots; base += batch.size()) {
    for (std::size_t i = 0; i < batch.size(); ++i)
      batch[i] = base + i;
    store(*m, batch);
    if (base % 3 == 0) m->touch(batch);
  }
  auto s = state_of(*m);
  EXPECT_EQ(s.t1 + s.t2, slots);
  EXPECT_EQ(s.b1, slots);  // the ghost list is full
  EXPECT_LE(m->stats().metadata_bytes, 128 * slots);
}

}  // namespace
}  // namespace kvoffload::testing
