// Tiered manager: demotion chains and drops, promotion, prefetch, the ordering rule for slots
// still being read, failures, a one-tier lockstep against LRU, and random runs with invariants.
#include "lockstep.hpp"
#include "test_util.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/tiered_manager.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace kvoffload::testing {
namespace {

using Tiers = std::vector<std::optional<std::uint32_t>>;

TieredConfig three_tiers(std::size_t each, std::uint32_t promote_after = 2) {
  return TieredConfig{.tiers = {{Medium::kGpu, each}, {Medium::kCpu, each}, {Medium::kDisk, each}},
                      .promote_after = promote_after,
                      .lookahead     = 4};
}

void expect_plan(const TransferPlan& p,
                 TransferKind kind,
                 BlockHash hash,
                 std::uint32_t from_tier,
                 BlockId from_slot,
                 std::uint32_t to_tier,
                 BlockId to_slot) {
  EXPECT_EQ(p.kind, kind);
  EXPECT_EQ(p.hash, hash);
  EXPECT_EQ(p.source_tier, from_tier);
  EXPECT_EQ(p.source_slot, from_slot);
  EXPECT_EQ(p.destination_tier, to_tier);
  EXPECT_EQ(p.destination_slot, to_slot);
  const Medium media[] = {Medium::kGpu, Medium::kCpu, Medium::kDisk};
  EXPECT_EQ(p.source_medium, media[from_tier]);
  EXPECT_EQ(p.destination_medium, media[to_tier]);
}

TEST(Tiered, AVictimIsDemotedAndItsSlotStaysReadableUntilConfirmed) {
  TieredOffloadingManager m{three_tiers(2)};
  EXPECT_EQ(store(m, {1, 2}), (Ids{0, 1}));
  EXPECT_EQ(m.lookup_tiers(Hashes{1, 2}), (Tiers{0u, 0u}));
  auto out = m.prepare_store(Hashes{3});  // hot full: 1 (least recent) goes to warm
  ASSERT_TRUE(out);
  EXPECT_TRUE(out->block_hashes_evicted.empty());
  EXPECT_EQ(out->store_spec.medium, Medium::kGpu);
  EXPECT_EQ(out->store_spec.block_ids, (Ids{0}));  // 1's old slot, once the demotion read it
  const auto plans = m.take_transfer_plans();
  ASSERT_EQ(plans.size(), 1u);
  expect_plan(plans[0], TransferKind::kDemotion, 1, 0, 0, 1, 0);
  EXPECT_EQ(m.lookup(Hashes{2}), 1u);
  EXPECT_EQ(m.lookup(Hashes{1}), std::nullopt);  // in flight: retry later
  EXPECT_THROW((void)m.prepare_load(Hashes{1}), logic_error);
  // Writing block 3 before the demotion read slot 0 is refused, naming the plan.
  try {
    m.complete_store(Hashes{3});
    ADD_FAILURE() << "complete_store before the demotion completed";
  } catch (const logic_error& e) {
    EXPECT_NE(std::string{e.what()}.find("plan " + std::to_string(plans[0].id)), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(m.stats().pending, 2u);  // 3 (store) and 1 (arriving in warm)
  m.complete_transfer(plans[0].id);
  m.complete_store(Hashes{3});
  EXPECT_EQ(m.lookup_tiers(Hashes{1, 2, 3}), (Tiers{1u, 0u, 0u}));
  const auto where = m.prepare_load_tiers(Hashes{1, 3});
  ASSERT_EQ(where.size(), 2u);
  EXPECT_EQ(where[0].tier, 1u);
  EXPECT_EQ(where[0].medium, Medium::kCpu);
  EXPECT_EQ(where[0].slot, 0);
  EXPECT_EQ(where[1].medium, Medium::kGpu);
  m.complete_load(Hashes{1, 3});
  const auto events = m.take_events();
  ASSERT_EQ(events.size(), 4u);  // stored {1,2} gpu; removed {1} gpu; stored {1} cpu; stored {3}
  EXPECT_TRUE(events[1].removed);
  EXPECT_EQ(events[1].medium, Medium::kGpu);
  EXPECT_EQ(events[2].block_hashes, (Hashes{1}));
  EXPECT_EQ(events[2].medium, Medium::kCpu);
  EXPECT_FALSE(events[2].removed);
  m.check_invariants();
}

TEST(Tiered, DemotionsCascadeAndOnlyTheLastTierDrops) {
  TieredOffloadingManager m{three_tiers(1)};
  for (BlockHash h = 1; h <= 3; ++h) {
    ASSERT_TRUE(m.prepare_store(Hashes{h}));
    for (const auto& p : m.take_transfer_plans())
      m.complete_transfer(p.id);
    m.complete_store(Hashes{h});
  }
  EXPECT_EQ(m.lookup_tiers(Hashes{1, 2, 3}), (Tiers{2u, 1u, 0u}));
  auto out = m.prepare_store(Hashes{4});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{1}));  // dropped by the last tier
  const auto plans = m.take_transfer_plans();
  ASSERT_EQ(plans.size(), 2u);
  // Safe order: the move out of a slot before the move into it.
  expect_plan(plans[0], TransferKind::kDemotion, 2, 1, 0, 2, 0);
  expect_plan(plans[1], TransferKind::kDemotion, 3, 0, 0, 1, 0);
  EXPECT_THROW(m.complete_transfer(plans[1].id), logic_error);  // its destination is still read
  m.complete_transfer(plans[0].id);
  m.complete_transfer(plans[1].id);
  m.complete_store(Hashes{4});
  EXPECT_EQ(m.lookup_tiers(Hashes{1, 2, 3, 4}), (Tiers{std::nullopt, 2u, 1u, 0u}));
  EXPECT_EQ(m.tiered_stats().dropped, 1u);
  EXPECT_EQ(m.stats().evictions, 1u);
  EXPECT_THROW(m.complete_transfer(plans[0].id), logic_error);  // no longer in flight
  m.check_invariants();
}

TEST(Tiered, AFailedDemotionLosesTheBlock) {
  TieredOffloadingManager m{three_tiers(1)};
  store(m, {1});
  ASSERT_TRUE(m.prepare_store(Hashes{2}));
  const auto plans = m.take_transfer_plans();
  ASSERT_EQ(plans.size(), 1u);
  m.complete_transfer(plans[0].id, false);
  m.complete_store(Hashes{2});
  EXPECT_EQ(m.lookup_tiers(Hashes{1, 2}), (Tiers{std::nullopt, 0u}));
  EXPECT_EQ(m.tiered_stats().dropped, 1u);
  EXPECT_EQ(m.stats().free_slots, 2u);
  m.check_invariants();
}

TEST(Tiered, ABlockHitOftenEnoughIsPromotedOneTier) {
  TieredOffloadingManager m{three_tiers(2, 2)};
  store(m, {1, 2});
  ASSERT_TRUE(m.prepare_store(Hashes{3}));  // demotes 1 to warm
  for (const auto& p : m.take_transfer_plans())
    m.complete_transfer(p.id);
  m.complete_store(Hashes{3});
  m.touch(Hashes{1});
  EXPECT_TRUE(m.take_transfer_plans().empty());  // one touch is not enough
  (void)m.prepare_load(Hashes{1});
  m.touch(Hashes{1});
  EXPECT_TRUE(m.take_transfer_plans().empty());  // pinned: stays a candidate
  m.complete_load(Hashes{1});
  const auto plans = m.take_transfer_plans();
  ASSERT_EQ(plans.size(), 2u);
  expect_plan(plans[0], TransferKind::kDemotion, 2, 0, 1, 1, 1);  // make room in hot
  expect_plan(plans[1], TransferKind::kPromotion, 1, 1, 0, 0, 1);
  EXPECT_EQ(m.lookup(Hashes{1}), std::nullopt);                 // in flight
  EXPECT_THROW(m.complete_transfer(plans[1].id), logic_error);  // slot 1 of hot still read
  m.complete_transfer(plans[0].id);
  m.complete_transfer(plans[1].id);
  EXPECT_EQ(m.lookup_tiers(Hashes{1, 2, 3}), (Tiers{0u, 1u, 0u}));
  EXPECT_EQ(m.tiered_stats().promotions, 1u);
  m.check_invariants();
}

TEST(Tiered, AFailedPromotionLeavesTheBlockWhereItWas) {
  TieredOffloadingManager m{
      TieredConfig{.tiers = {{Medium::kGpu, 1}, {Medium::kCpu, 2}}, .promote_after = 1}};
  store(m, {1});
  ASSERT_TRUE(m.prepare_store(Hashes{2}));
  for (const auto& p : m.take_transfer_plans())
    m.complete_transfer(p.id);
  m.complete_store(Hashes{2});  // 1 in warm, 2 in hot
  m.touch(Hashes{1});
  const auto plans = m.take_transfer_plans();
  ASSERT_EQ(plans.size(), 2u);  // 2 down, 1 up
  m.complete_transfer(plans[0].id);
  m.complete_transfer(plans[1].id, false);
  EXPECT_EQ(m.lookup_tiers(Hashes{1, 2}), (Tiers{1u, 1u}));
  EXPECT_EQ(m.lookup(Hashes{1, 2}), 2u);
  EXPECT_EQ(m.stats().free_slots, 1u);
  m.check_invariants();
}

TEST(Tiered, PrefetchBringsHintedBlocksToTierZeroAndCountsDroppedHints) {
  TieredOffloadingManager m{TieredConfig{
      .tiers = {{Medium::kGpu, 2}, {Medium::kCpu, 4}}, .promote_after = 0, .lookahead = 1}};
  store(m, {1, 2});
  ASSERT_TRUE(m.prepare_store(Hashes{3, 4}));  // 1 and 2 go to warm
  for (const auto& p : m.take_transfer_plans())
    m.complete_transfer(p.id);
  m.complete_store(Hashes{3, 4});
  m.hint_prefetch(Hashes{99, 3, 1, 2});  // 99 absent, 3 already in tier 0
  auto plans = m.process_prefetch();     // lookahead 1: one prefetch (after its demotion)
  ASSERT_EQ(plans.size(), 2u);
  EXPECT_EQ(plans[0].kind, TransferKind::kDemotion);
  expect_plan(plans[1], TransferKind::kPrefetch, 1, 1, 0, 0, plans[0].source_slot);
  TieredStats s = m.tiered_stats();
  EXPECT_EQ(s.prefetch_hints, 4u);
  EXPECT_EQ(s.prefetch_dropped_absent, 1u);
  EXPECT_EQ(s.prefetch_dropped_other, 1u);
  EXPECT_EQ(s.in_flight, 2u);
  EXPECT_THROW(m.complete_prefetch(Hashes{1, 2}), logic_error);  // 2 has no prefetch
  EXPECT_EQ(m.tiered_stats().in_flight, 2u);                     // nothing changed
  EXPECT_THROW(m.complete_prefetch(Hashes{1}), logic_error);     // destination still read
  m.complete_transfer(plans[0].id);
  m.complete_prefetch(Hashes{1});
  EXPECT_EQ(m.lookup_tiers(Hashes{1})[0], 0u);
  plans = m.process_prefetch();  // the hint for 2
  ASSERT_EQ(plans.size(), 2u);
  for (const auto& p : plans)
    if (p.kind == TransferKind::kDemotion) m.complete_transfer(p.id);
  m.complete_prefetch(Hashes{2}, false);  // abandoned: stays in warm
  EXPECT_EQ(m.lookup_tiers(Hashes{2})[0], 1u);
  EXPECT_TRUE(m.process_prefetch().empty());
  s = m.tiered_stats();
  EXPECT_EQ(s.prefetches, 2u);
  EXPECT_EQ(s.in_flight, 0u);
  m.check_invariants();
}

TEST(Tiered, ABatchLargerThanTierZeroGoesToTheFirstTierThatTakesIt) {
  TieredOffloadingManager m{
      TieredConfig{.tiers = {{Medium::kGpu, 2}, {Medium::kCpu, 4}, {Medium::kDisk, 2}}}};
  auto out = m.prepare_store(Hashes{1, 2, 3});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->store_spec.medium, Medium::kCpu);
  EXPECT_EQ(out->store_spec.block_ids, (Ids{2, 3, 4}));  // warm's slots, numbered globally
  m.complete_store(Hashes{1, 2, 3});
  EXPECT_EQ(m.lookup_tiers(Hashes{1, 2, 3}), (Tiers{1u, 1u, 1u}));
  EXPECT_FALSE(m.prepare_store(Hashes{4, 5, 6, 7, 8}));  // no tier takes five
  EXPECT_EQ(m.stats().store_rejections, 1u);
  m.check_invariants();
}

TEST(Tiered, OneTierBehavesExactlyLikeLru) {
  run_lockstep(
      [](std::size_t n) {
        return std::make_unique<TieredOffloadingManager>(
            TieredConfig{.tiers = {{Medium::kCpu, n}}, .block_size = 64});
      },
      [](std::size_t n) { return make_lru_manager(n, 64); },
      {.sequences = 800, .check = [](const OffloadingManager& m) {
         if (auto* t = dynamic_cast<const TieredOffloadingManager*>(&m)) t->check_invariants();
       }});
}

TEST(Tiered, RandomRunsKeepEveryInvariant) {
  std::mt19937_64 rng{7};
  for (int run = 0; run < 300; ++run) {
    TieredOffloadingManager m{TieredConfig{.tiers         = {{Medium::kGpu, 1 + rng() % 3},
                                                             {Medium::kCpu, 1 + rng() % 3},
                                                             {Medium::kDisk, 1 + rng() % 3}},
                                           .promote_after = static_cast<std::uint32_t>(rng() % 3),
                                           .lookahead     = 1 + rng() % 3}};
    std::vector<TransferPlan> open;
    for (int step = 0; step < 80; ++step) {
      Hashes hashes(rng() % 4);
      for (auto& h : hashes)
        h = rng() % 14;
      const int op = static_cast<int>(rng() % 10);
      try {
        switch (op) {
          case 0:
            (void)m.lookup(hashes);
            break;
          case 1:
            m.touch(hashes);
            break;
          case 2:
            (void)m.prepare_load(hashes);
            break;
          case 3:
            m.complete_load(hashes);
            break;
          case 4:
            (void)m.prepare_store(hashes);
            break;
          case 5:
            m.complete_store(hashes, rng() % 4 != 0);
            break;
          case 6: {
            auto plans = m.take_transfer_plans();
            open.insert(open.end(), plans.begin(), plans.end());
            break;
          }
          case 7:
            if (!open.empty()) {
              const std::size_t i = rng() % open.size();
              m.complete_transfer(open[i].id, rng() % 5 != 0);
              open.erase(open.begin() + static_cast<std::ptrdiff_t>(i));
            }
            break;
          case 8: {
            m.hint_prefetch(hashes);
            auto plans = m.process_prefetch();
            open.insert(open.end(), plans.begin(), plans.end());
            break;
          }
          default:
            m.clear();
        }
      } catch (const logic_error&) {
        // Misuse is part of the run; what matters is that it changed nothing inconsistent.
      }
      ASSERT_NO_THROW(m.check_invariants()) << "run " << run << " step " << step << " op " << op;
      const ManagerStats s = m.stats();
      ASSERT_EQ(s.pending + s.ready + s.free_slots, s.capacity);
      ASSERT_GE(m.tiered_stats().in_flight, open.size()) << "run " << run;
    }
    // Run every plan, oldest first (the safe order): nothing stays in flight or deferred.
    auto rest = m.take_transfer_plans();
    open.insert(open.end(), rest.begin(), rest.end());
    std::sort(open.begin(), open.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    for (const auto& plan : open)
      ASSERT_NO_THROW(m.complete_transfer(plan.id)) << "run " << run << " plan " << plan.id;
    EXPECT_EQ(m.tiered_stats().in_flight, 0u);
    for (BlockHash h = 0; h < 14; ++h)
      EXPECT_TRUE(m.lookup(Hashes{h}).has_value());
    ASSERT_NO_THROW(m.check_invariants());
  }
}

TEST(Tiered, SpecsAndSizes) {
  ManagerConfig c = parse_manager_spec("tiered:hot=0.1,warm=300,cold_medium=cpu,promote=3");
  EXPECT_DOUBLE_EQ(c.tiered.hot.fraction, 0.1);
  EXPECT_EQ(c.tiered.warm.blocks, 300u);
  EXPECT_EQ(c.tiered.cold_medium, Medium::kCpu);
  EXPECT_EQ(c.tiered.promote_after, 3u);
  const TieredConfig t = resolve_tiers(c.tiered, 1000, 64, true);
  ASSERT_EQ(t.tiers.size(), 3u);
  EXPECT_EQ(t.tiers[0].num_blocks, 100u);
  EXPECT_EQ(t.tiers[1].num_blocks, 300u);
  EXPECT_EQ(t.tiers[2].num_blocks, 600u);
  EXPECT_EQ(t.tiers[2].medium, Medium::kCpu);
  auto two           = make_manager("tiered:hot=0.5,cold=0", 10, 64);
  const auto* tiered = dynamic_cast<TieredOffloadingManager*>(two.get());
  ASSERT_NE(tiered, nullptr);
  EXPECT_EQ(tiered->tiered_stats().tiers.size(), 2u);
  EXPECT_EQ(two->stats().capacity, 10u);

  auto error_of = [](std::string_view spec, std::size_t n = 100) -> std::string {
    try {
      (void)make_manager(spec, n, 64);
    } catch (const logic_error& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_NE(error_of("tiered:hot=1.5").find("'hot' as a fraction must be in (0, 1), got '1.5'"),
            std::string::npos);
  EXPECT_NE(error_of("tiered:hot_medium=tape").find("gpu, cpu or disk, got 'tape'"),
            std::string::npos);
  EXPECT_NE(error_of("tiered:cold=5").find("only 'cold=0'"), std::string::npos);
  EXPECT_NE(error_of("tiered:hot=60,warm=40").find("hot and warm need 100 blocks"),
            std::string::npos);
  EXPECT_NE(error_of("tiered:instant=yes").find("needs 0 or 1, got 'yes'"), std::string::npos);
  EXPECT_THROW(TieredOffloadingManager(TieredConfig{}), logic_error);
  EXPECT_THROW(TieredOffloadingManager(TieredConfig{.tiers = {{Medium::kCpu, 0}}}), logic_error);
}

TEST(Tiered, MetadataStaysWithin64BytesPerSlot) {
  constexpr std::size_t n = 1'000'000;
  auto m                  = make_manager("tiered", n, 64);
  EXPECT_LE(static_cast<double>(m->stats().metadata_bytes) / n, 64.0);
}

TieredConfig host_and_disk(std::size_t host, std::size_t disk) {
  return TieredConfig{.tiers                    = {{Medium::kCpu, host}, {Medium::kDisk, disk}},
                      .promote_after            = 0,
                      .stores_to_tier_zero_only = true};
}

TEST(Tiered, StoresToTierZeroOnlyRefusesABatchTierZeroCannotTake) {
  TieredOffloadingManager m{host_and_disk(2, 8)};
  EXPECT_EQ(m.prepare_store(Hashes{1, 2, 3}), std::nullopt);  // would have gone to disk
  EXPECT_EQ(m.stats().store_rejections, 1u);
  EXPECT_EQ(store(m, {1, 2}), (Ids{0, 1}));
  m.check_invariants();
}

TEST(Tiered, AdoptReadyTakesBlocksInAtTheirSlotsAndAnnouncesThem) {
  TieredOffloadingManager m{host_and_disk(2, 4)};
  (void)m.take_events();
  m.adopt_ready(1, Hashes{70, 71}, Ids{3, 1});
  m.check_invariants();
  EXPECT_EQ(m.lookup_tiers(Hashes{70, 71}), (Tiers{1u, 1u}));
  const auto events = m.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_FALSE(events[0].removed);
  EXPECT_EQ(events[0].medium, Medium::kDisk);
  EXPECT_EQ(events[0].block_hashes, (Hashes{70, 71}));
  EXPECT_EQ(m.tiered_stats().adopted, 2u);
  EXPECT_EQ(m.tiered_stats().tiers[1].ready, 2u);
  // Demotions fill the free disk slots 0 and 2, ascending, never an adopted one.
  EXPECT_EQ(store(m, {1, 2}), (Ids{0, 1}));
  auto out = m.prepare_store(Hashes{3, 4});
  ASSERT_TRUE(out);
  auto plans = m.take_transfer_plans();
  ASSERT_EQ(plans.size(), 2u);
  EXPECT_EQ(plans[0].destination_slot, 0u);
  EXPECT_EQ(plans[1].destination_slot, 2u);
  for (const auto& p : plans)
    m.complete_transfer(p.id, true);
  m.complete_store(out->block_hashes_to_store, true);
  m.check_invariants();
  // The disk is full now: the next demotion drops the least recent disk block, adopted 70.
  out = m.prepare_store(Hashes{5});
  ASSERT_TRUE(out);
  plans = m.take_transfer_plans();
  ASSERT_EQ(plans.size(), 1u);
  EXPECT_EQ(plans[0].destination_slot, 3u);
  EXPECT_EQ(m.lookup(Hashes{70}), 0u);
  m.complete_transfer(plans[0].id, true);
  m.complete_store(out->block_hashes_to_store, true);
  m.check_invariants();
}

TEST(Tiered, AdoptReadyRefusesBadInputAndChangesNothing) {
  TieredOffloadingManager m{host_and_disk(2, 4)};
  EXPECT_EQ(store(m, {1}), (Ids{0}));
  auto refused = [&](std::uint32_t tier, Hashes hashes, Ids slots, const std::string& part) {
    try {
      m.adopt_ready(tier, hashes, slots);
      ADD_FAILURE() << "accepted: " << part;
    } catch (const logic_error& e) {
      expect_contains(e.what(), part);
    }
    m.check_invariants();
    EXPECT_EQ(m.tiered_stats().adopted, 0u);
  };
  refused(1, {5, 6}, {0}, "2 hashes but 1 slots");
  refused(2, {5}, {0}, "tier 2 does not exist");
  refused(1, {5}, {4}, "slot 4 is out of range");
  refused(1, {5, 6}, {2, 2}, "slot 2 of tier 1 is in use or given twice");
  refused(0, {5}, {0}, "slot 0 of tier 0 is in use");
  refused(1, {5, 5}, {0, 1}, "block hash 5 is given twice");
  refused(1, {1}, {0}, "block hash 1 is stored already");
  EXPECT_EQ(m.lookup(Hashes{5}), 0u);
}

TEST(Tiered, DiscardDropsAReadyBlockAndRefusesABusyOne) {
  TieredOffloadingManager m{host_and_disk(2, 4)};
  m.adopt_ready(1, Hashes{9}, Ids{0});
  EXPECT_EQ(store(m, {1}), (Ids{0}));
  (void)m.prepare_load(Hashes{1});
  (void)m.take_events();
  try {
    m.discard(Hashes{9, 1});
    ADD_FAILURE() << "a pinned block was discarded";
  } catch (const logic_error& e) {
    expect_contains(e.what(), "block hash 1 is pending, pinned or in flight");
  }
  EXPECT_EQ(m.lookup(Hashes{9}), 1u);  // nothing changed
  m.discard(Hashes{9});
  EXPECT_EQ(m.lookup(Hashes{9}), 0u);
  const auto events = m.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].removed);
  EXPECT_EQ(events[0].medium, Medium::kDisk);
  EXPECT_EQ(m.tiered_stats().discarded, 1u);
  EXPECT_EQ(m.tiered_stats().tiers[1].free_slots, 4u);
  m.complete_load(Hashes{1});
  m.check_invariants();
}

TEST(Tiered, PrefetchDoesNotDemoteTheBlocksItIsToldToKeep) {
  TieredOffloadingManager m{host_and_disk(2, 4)};
  m.adopt_ready(1, Hashes{9}, Ids{0});
  EXPECT_EQ(store(m, {1, 2}), (Ids{0, 1}));
  m.hint_prefetch(Hashes{9});
  EXPECT_TRUE(m.process_prefetch(Hashes{1, 2}).empty());  // no room but the kept blocks
  EXPECT_EQ(m.tiered_stats().prefetch_dropped_other, 1u);
  m.hint_prefetch(Hashes{9});
  const auto plans = m.process_prefetch(Hashes{1});  // 2 makes the room, 1 stays
  ASSERT_EQ(plans.size(), 2u);
  EXPECT_EQ(plans[0].kind, TransferKind::kDemotion);
  EXPECT_EQ(plans[0].hash, 2u);
  EXPECT_EQ(plans[1].kind, TransferKind::kPrefetch);
  EXPECT_EQ(m.lookup_tiers(Hashes{1}), (Tiers{0u}));
  m.check_invariants();
}

}  // namespace
}  // namespace kvoffload::testing
