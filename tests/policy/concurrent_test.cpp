// The thread-safe wrapper (one mutex, or shards by hash) and the async front end: their rules
// in one thread, then stress from several threads with correctness checks. scripts/tsan.sh runs
// this file under ThreadSanitizer.
#include "lockstep.hpp"
#include "test_util.hpp"

#include <kvoffload/async_manager.hpp>
#include <kvoffload/concurrent_manager.hpp>
#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>

namespace kvoffload::testing {
namespace {

std::unique_ptr<ConcurrentManager> sharded(std::size_t n, std::size_t shards) {
  return std::make_unique<ConcurrentManager>(
      [](std::size_t size) { return make_lru_manager(size, 64); }, n, shards);
}

/// `count` hashes of shard `shard` (searching upward from `from`).
Hashes hashes_in_shard(const ConcurrentManager& m,
                       std::size_t shard,
                       std::size_t count,
                       BlockHash from = 1) {
  Hashes out;
  for (BlockHash h = from; out.size() < count; ++h) {
    if (m.shard_of(h) == shard) out.push_back(h);
  }
  return out;
}

TEST(ConcurrentManager, OneMutexKeepsTheWrappedContractExactly) {
  run_lockstep(
      [](std::size_t n) { return std::make_unique<ConcurrentManager>(make_lru_manager(n, 64)); },
      [](std::size_t n) { return make_lru_manager(n, 64); },
      {.sequences = 600});
}

TEST(ConcurrentManager, OneShardIsTheSameAsOneMutex) {
  run_lockstep([](std::size_t n) { return sharded(n, 1); },
               [](std::size_t n) { return make_lru_manager(n, 64); },
               {.sequences = 300});
}

TEST(ConcurrentManager, ShardsSplitTheCapacityAndNumberSlotsGlobally) {
  auto m = sharded(10, 3);
  EXPECT_EQ(m->stats().capacity, 10u);  // 4 + 3 + 3
  std::set<BlockId> ids;
  for (std::size_t shard = 0; shard < 3; ++shard) {
    const std::size_t size = shard == 0 ? 4 : 3;
    const Hashes hashes    = hashes_in_shard(*m, shard, size);
    const Ids got          = store(*m, hashes);
    ASSERT_EQ(got.size(), size);
    const BlockId offset = shard == 0 ? 0 : (shard == 1 ? 4 : 7);
    for (std::size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(got[i], offset + static_cast<BlockId>(i));
    ids.insert(got.begin(), got.end());
  }
  EXPECT_EQ(ids.size(), 10u);
  EXPECT_EQ(m->stats().ready, 10u);
  EXPECT_EQ(m->stats().free_slots, 0u);
}

TEST(ConcurrentManager, ShardedLookupReturnsTheReadyPrefixOfTheWholeInput) {
  auto m         = sharded(32, 4);
  const Hashes a = hashes_in_shard(*m, 0, 3);
  const Hashes b = hashes_in_shard(*m, 1, 3);
  store(*m, {a[0], a[1], b[0], b[2]});  // a[2] and b[1] absent
  EXPECT_EQ(m->lookup(Hashes{a[0], b[0], a[1], b[1], a[2]}), 3u);
  EXPECT_EQ(m->lookup(Hashes{a[0], b[0], a[1], a[2], b[1]}), 3u);
  EXPECT_EQ(m->lookup(Hashes{b[2], a[0], b[0], a[1]}), 4u);
  EXPECT_EQ(m->lookup(Hashes{a[2], a[0]}), 0u);
  const ManagerStats s = m->stats();
  EXPECT_EQ(s.lookups, 4u);
  EXPECT_EQ(s.lookup_blocks, 16u);
  EXPECT_EQ(s.hits, 10u);
  EXPECT_EQ(s.misses, 6u);
}

TEST(ConcurrentManager, ShardedStoreKeepsInputOrderAndSlotsMatchLoads) {
  auto m = sharded(16, 4);
  Hashes hashes;
  for (BlockHash h = 100; h < 110; ++h)
    hashes.push_back(h);
  hashes.push_back(103);  // a repeat is stored once
  auto out = m->prepare_store(hashes);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_to_store, Hashes(hashes.begin(), hashes.end() - 1));
  m->complete_store(out->block_hashes_to_store);
  EXPECT_EQ(m->prepare_load(out->block_hashes_to_store).block_ids, out->store_spec.block_ids);
  m->complete_load(out->block_hashes_to_store);
  EXPECT_EQ(m->stats().pinned, 0u);
}

TEST(ConcurrentManager, ShardedPrepareLoadThatThrowsPinsNothing) {
  auto m         = sharded(16, 2);
  const Hashes a = hashes_in_shard(*m, 0, 2);
  const Hashes b = hashes_in_shard(*m, 1, 2);
  store(*m, {a[0], a[1], b[0]});
  EXPECT_THROW((void)m->prepare_load(Hashes{a[0], a[1], b[1]}), logic_error);
  EXPECT_EQ(m->stats().pinned, 0u);
  (void)m->prepare_load(Hashes{a[0], b[0]});
  EXPECT_THROW(m->complete_load(Hashes{a[0], b[0], b[0]}), logic_error);
  EXPECT_EQ(m->stats().pinned, 2u);  // rolled back: both still referenced
  m->complete_load(Hashes{a[0], b[0]});
  EXPECT_EQ(m->stats().pinned, 0u);
}

TEST(ConcurrentManager, ShardedStoreRefusedByOneShardAbandonsTheOthers) {
  auto m         = sharded(4, 2);  // 2 slots per shard
  const Hashes a = hashes_in_shard(*m, 0, 3);
  const Hashes b = hashes_in_shard(*m, 1, 3);
  auto pending   = m->prepare_store(Hashes{b[0], b[1]});  // shard 1 full of pending blocks
  ASSERT_TRUE(pending);
  EXPECT_FALSE(m->prepare_store(Hashes{a[0], b[2]}));
  const ManagerStats s = m->stats();
  EXPECT_EQ(s.pending, 2u);  // a[0]'s grant was abandoned
  EXPECT_EQ(s.stores_failed, 1u);
  EXPECT_EQ(m->lookup(Hashes{a[0]}), 0u);
}

TEST(ConcurrentManager, WithLockRunsARequestAtomically) {
  ConcurrentManager m{make_lru_manager(8, 64)};
  const auto hits = m.with_lock([](OffloadingManager& inner) {
    auto out = inner.prepare_store(Hashes{1, 2});
    inner.complete_store(out->block_hashes_to_store);
    return inner.lookup(Hashes{1, 2});
  });
  EXPECT_EQ(hits, 2u);
  auto s = sharded(8, 2);
  EXPECT_THROW(s->with_lock([](OffloadingManager&) { return 0; }), logic_error);
  EXPECT_THROW(ConcurrentManager(nullptr), logic_error);
  EXPECT_THROW(sharded(8, 0), logic_error);
  EXPECT_THROW(sharded(8, 300), logic_error);
}

/// Several threads serve requests the way a runtime does; afterwards no reference or pending
/// block is left, the gauges add up, and the counters equal what the threads did.
void stress(OffloadingManager& m, std::size_t capacity, int threads, int requests) {
  std::atomic<std::uint64_t> lookups{0}, lookup_blocks{0}, completed{0}, failures{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937_64 rng{static_cast<std::uint64_t>(t) + 1};
      for (int r = 0; r < requests; ++r) {
        // Prefix chains shared across threads (hashes 1..) plus a private tail.
        Hashes hashes;
        const BlockHash base = 1 + rng() % 64;
        for (std::size_t i = 0; i < 1 + rng() % 6; ++i)
          hashes.push_back(base + i);
        hashes.push_back(1'000'000 * (t + 1) + r);
        const auto hit = m.lookup(hashes);
        lookups.fetch_add(1);
        lookup_blocks.fetch_add(hashes.size());
        if (!hit) {
          failures.fetch_add(1);
          continue;
        }
        m.touch(hashes);
        const std::span<const BlockHash> all{hashes};
        // Another thread may evict between lookup and load: a throw is a legal outcome, and
        // then no reference may be left behind.
        std::size_t loaded = 0;
        try {
          const LoadStoreSpec spec = m.prepare_load(all.first(*hit));
          if (spec.block_ids.size() != *hit) failures.fetch_add(1);
          for (BlockId id : spec.block_ids)
            if (id < 0 || static_cast<std::size_t>(id) >= capacity) failures.fetch_add(1);
          loaded = *hit;
        } catch (const logic_error&) {
        }
        if (auto out = m.prepare_store(all.subspan(*hit))) {
          for (BlockId id : out->store_spec.block_ids)
            if (id < 0 || static_cast<std::size_t>(id) >= capacity) failures.fetch_add(1);
          const bool success = rng() % 8 != 0;
          m.complete_store(out->block_hashes_to_store, success);
          if (success) completed.fetch_add(out->block_hashes_to_store.size());
        }
        if (loaded > 0) m.complete_load(all.first(loaded));
        if (r % 50 == 0) (void)m.take_events();
        if (r % 97 == 0) (void)m.stats();
      }
    });
  }
  for (auto& thread : pool)
    thread.join();
  EXPECT_EQ(failures.load(), 0u);
  const ManagerStats s = m.stats();
  EXPECT_EQ(s.lookups, lookups.load());
  EXPECT_EQ(s.lookup_blocks, lookup_blocks.load());
  EXPECT_EQ(s.stores_completed, completed.load());
  EXPECT_EQ(s.pinned, 0u);
  EXPECT_EQ(s.pending, 0u);
  EXPECT_EQ(s.ready + s.free_slots, capacity);
  EXPECT_EQ(s.capacity, capacity);
  EXPECT_LE(s.ready, capacity);
}

TEST(ConcurrentManager, StressOneMutex) {
  ConcurrentManager m{make_arc_manager(48, 64)};
  stress(m, 48, 4, 3000);
  m.with_lock([](OffloadingManager& inner) { expect_invariants(inner); });
}

TEST(ConcurrentManager, StressShards) {
  auto m = sharded(48, 4);
  stress(*m, 48, 4, 3000);
}

TEST(ConcurrentManager, StressFactorySpecs) {
  for (const char* spec : {"weighted+mutex", "lru+filter:threshold=1+sharded:shards=3"}) {
    SCOPED_TRACE(spec);
    auto m = make_manager(spec, 40, 64);
    stress(*m, 40, 3, 1500);
  }
}

TEST(AsyncManager, RunsCallsInSubmissionOrder) {
  AsyncManager m{make_lru_manager(4, 64)};
  auto store       = m.prepare_store({1, 2});
  auto complete    = m.complete_store({1, 2});
  auto hits        = m.lookup({1, 2, 3});
  auto load        = m.prepare_load({2});
  auto unload      = m.complete_load({2});
  auto stats       = m.stats();
  const auto first = store.get();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->store_spec.block_ids, (Ids{0, 1}));
  complete.get();
  EXPECT_EQ(hits.get(), 2u);
  EXPECT_EQ(load.get().block_ids, (Ids{1}));
  unload.get();
  const ManagerStats s = stats.get();
  EXPECT_EQ(s.ready, 2u);
  EXPECT_EQ(s.pinned, 0u);
  const auto events = m.take_events().get();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].block_hashes, (Hashes{1, 2}));
}

TEST(AsyncManager, ExceptionsComeThroughTheFuture) {
  AsyncManager m{make_lru_manager(4, 64)};
  auto bad = m.prepare_load({42});
  EXPECT_THROW((void)bad.get(), logic_error);
  auto later = m.lookup({42});  // the worker survived
  EXPECT_EQ(later.get(), 0u);
  EXPECT_THROW(AsyncManager{nullptr}, logic_error);
}

TEST(AsyncManager, BatchesRunRequestsInOrderInOneTurn) {
  AsyncManager m{make_lru_manager(4, 64)};
  auto stores     = m.prepare_store_batch({{1, 2}, {3}, {4, 5}});  // the last one needs an eviction
  const auto outs = stores.get();
  ASSERT_EQ(outs.size(), 3u);
  ASSERT_TRUE(outs[0] && outs[1]);
  EXPECT_FALSE(outs[2]);  // all four slots pending: nothing evictable
  m.complete_store_batch({{1, 2}, {3}}).get();
  const auto hits = m.lookup_batch({{1, 2}, {3, 1}, {9}}).get();
  EXPECT_EQ(hits, (std::vector<std::optional<std::size_t>>{2u, 2u, 0u}));
}

TEST(AsyncManager, SubmitRunsARequestAtomicallyAndCallbacksGetTheResult) {
  AsyncManager m{make_lru_manager(8, 64)};
  auto result = m.submit([](OffloadingManager& inner) {
    auto out = inner.prepare_store(Hashes{7, 8});
    inner.complete_store(out->block_hashes_to_store);
    return inner.lookup(Hashes{7, 8});
  });
  EXPECT_EQ(result.get(), 2u);
  std::promise<std::size_t> seen;
  std::promise<bool> threw;
  m.submit([](OffloadingManager& inner) { return inner.prepare_load(Hashes{7}).block_ids.size(); },
           [&seen](std::future<std::size_t> done) { seen.set_value(done.get()); });
  m.submit([](OffloadingManager& inner) { return inner.prepare_load(Hashes{99}); },
           [&threw](std::future<LoadStoreSpec> done) {
             try {
               (void)done.get();
               threw.set_value(false);
             } catch (const logic_error&) {
               threw.set_value(true);
             }
           });
  EXPECT_EQ(seen.get_future().get(), 1u);
  EXPECT_TRUE(threw.get_future().get());
  m.drain();
  EXPECT_EQ(m.stats().get().pinned, 1u);
}

TEST(AsyncManager, StressManySubmittersAndDestructionDrainsTheQueue) {
  std::atomic<int> callbacks{0};
  std::atomic<std::uint64_t> completed{0};
  constexpr int kThreads  = 4;
  constexpr int kRequests = 1500;
  {
    AsyncManager m{make_weighted_lru_manager(32, 64)};
    std::vector<std::thread> pool;
    for (int t = 0; t < kThreads; ++t) {
      pool.emplace_back([&, t] {
        for (int r = 0; r < kRequests; ++r) {
          const Hashes hashes{BlockHash(1 + (t * 7 + r) % 40), BlockHash(100'000 * (t + 1) + r)};
          // One whole request per submission: lookup, load the prefix, store the rest.
          m.submit(
              [hashes](OffloadingManager& inner) {
                const std::size_t hit = *inner.lookup(hashes);
                const std::span<const BlockHash> all{hashes};
                (void)inner.prepare_load(all.first(hit));
                std::size_t stored = 0;
                if (auto out = inner.prepare_store(all.subspan(hit))) {
                  inner.complete_store(out->block_hashes_to_store);
                  stored = out->block_hashes_to_store.size();
                }
                inner.complete_load(all.first(hit));
                return stored;
              },
              [&](std::future<std::size_t> done) {
                completed.fetch_add(done.get());
                callbacks.fetch_add(1);
              });
        }
      });
    }
    for (auto& thread : pool)
      thread.join();
    auto stats           = m.stats();  // runs after every request queued before it
    const ManagerStats s = stats.get();
    EXPECT_EQ(s.lookups, std::uint64_t{kThreads} * kRequests);
    EXPECT_EQ(s.pinned, 0u);
    EXPECT_EQ(s.pending, 0u);
    for (int i = 0; i < 100; ++i)
      (void)m.lookup({1, 2, 3});  // still queued when the destructor starts
  }
  EXPECT_EQ(callbacks.load(), kThreads * kRequests);
  EXPECT_GT(completed.load(), 0u);
}

}  // namespace
}  // namespace kvoffload::testing
