/**
 * @file lockstep.hpp
 * @brief Drives two managers through the same random call sequence and checks that every
 * answer, exception, event and gauge agrees (for managers that must behave identically, e.g.
 * weighted LRU at weight 0 and LRU, or a fast policy and its brute-force twin).
 */
#pragma once

#include "test_util.hpp"

#include <kvoffload/error.hpp>

#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <span>
#include <sstream>
#include <string>

namespace kvoffload::testing {

using ManagerMaker = std::function<std::unique_ptr<OffloadingManager>(std::size_t capacity)>;

struct LockstepOptions {
  int sequences{1500};
  int steps{60};
  std::uint64_t seed{20261126};
  /// Called after every step on both managers (invariant checks).
  std::function<void(const OffloadingManager&)> check{};
  /// Look every hash up before storing it (so an admission filter at threshold 1 admits all).
  bool lookup_before_store{false};
};

template <class F>
bool throws_logic_error(F&& f) {
  try {
    f();
    return false;
  } catch (const logic_error&) {
    return true;
  }
}

inline void expect_same_events(const std::vector<OffloadingEvent>& a,
                               const std::vector<OffloadingEvent>& b,
                               const std::string& where) {
  ASSERT_EQ(a.size(), b.size()) << where;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].block_hashes, b[i].block_hashes) << where;
    EXPECT_EQ(a[i].removed, b[i].removed) << where;
    EXPECT_EQ(a[i].block_size, b[i].block_size) << where;
    EXPECT_EQ(a[i].medium, b[i].medium) << where;
  }
}

/// Runs random sequences on make_a(capacity) and make_b(capacity) and compares them.
inline void run_lockstep(const ManagerMaker& make_a,
                         const ManagerMaker& make_b,
                         const LockstepOptions& options = {}) {
  std::mt19937_64 rng{options.seed};
  for (int sequence = 0; sequence < options.sequences; ++sequence) {
    const std::size_t capacity = 1 + rng() % 7;
    const BlockHash universe   = 2 + rng() % (3 * capacity + 2);
    auto a                     = make_a(capacity);
    auto b                     = make_b(capacity);
    std::ostringstream log;
    for (int step = 0; step < options.steps; ++step) {
      Hashes hashes(rng() % 5);
      for (auto& h : hashes)
        h = rng() % universe;
      const int op = static_cast<int>(rng() % 100);
      log << "op" << op << "[";
      for (auto h : hashes)
        log << h << " ";
      log << "] ";
      const std::string where = "capacity " + std::to_string(capacity) + ": " + log.str();
      if (op < 8) {
        // One request the way a runtime serves it: the calls pass the same hashes, a prefix or
        // a suffix of them (the core resolves them once through its memo).
        const auto hit = a->lookup(hashes);
        ASSERT_EQ(hit, b->lookup(hashes)) << where;
        a->touch(hashes);
        b->touch(hashes);
        if (hit) {  // nullopt = "retry later": the request goes no further
          const std::span<const BlockHash> all{hashes};
          const auto prefix = all.first(*hit);
          EXPECT_EQ(a->prepare_load(prefix).block_ids, b->prepare_load(prefix).block_ids) << where;
          auto got  = a->prepare_store(all.subspan(*hit));
          auto want = b->prepare_store(all.subspan(*hit));
          ASSERT_EQ(got.has_value(), want.has_value()) << where;
          if (got) {
            EXPECT_EQ(got->block_hashes_to_store, want->block_hashes_to_store) << where;
            EXPECT_EQ(got->store_spec.block_ids, want->store_spec.block_ids) << where;
            EXPECT_EQ(got->block_hashes_evicted, want->block_hashes_evicted) << where;
            if (rng() % 3) {
              const bool success = rng() % 5 != 0;
              a->complete_store(got->block_hashes_to_store, success);
              b->complete_store(want->block_hashes_to_store, success);
            }
          }
          if (rng() % 2) {
            a->complete_load(prefix);
            b->complete_load(prefix);
          }
        }
      } else if (op < 15) {
        EXPECT_EQ(a->lookup(hashes), b->lookup(hashes)) << where;
      } else if (op < 35) {
        a->touch(hashes);
        b->touch(hashes);
      } else if (op < 48) {
        LoadStoreSpec got, want;
        const bool ta = throws_logic_error([&] { got = a->prepare_load(hashes); });
        const bool tb = throws_logic_error([&] { want = b->prepare_load(hashes); });
        ASSERT_EQ(ta, tb) << where;
        EXPECT_EQ(got.block_ids, want.block_ids) << where;
      } else if (op < 60) {
        const bool ta = throws_logic_error([&] { a->complete_load(hashes); });
        const bool tb = throws_logic_error([&] { b->complete_load(hashes); });
        ASSERT_EQ(ta, tb) << where;
      } else if (op < 82) {
        if (options.lookup_before_store) {
          EXPECT_EQ(a->lookup(hashes), b->lookup(hashes)) << where;
        }
        auto got  = a->prepare_store(hashes);
        auto want = b->prepare_store(hashes);
        ASSERT_EQ(got.has_value(), want.has_value()) << where;
        if (got) {
          EXPECT_EQ(got->block_hashes_to_store, want->block_hashes_to_store) << where;
          EXPECT_EQ(got->store_spec.block_ids, want->store_spec.block_ids) << where;
          EXPECT_EQ(got->block_hashes_evicted, want->block_hashes_evicted) << where;
        }
      } else if (op < 97) {
        const bool success = rng() % 4 != 0;
        const bool ta      = throws_logic_error([&] { a->complete_store(hashes, success); });
        const bool tb      = throws_logic_error([&] { b->complete_store(hashes, success); });
        ASSERT_EQ(ta, tb) << where;
      } else {
        a->clear();
        b->clear();
      }
      expect_same_events(a->take_events(), b->take_events(), where);
      ASSERT_EQ(gauges(a->stats()), gauges(b->stats())) << where;
      if (options.check) {
        ASSERT_NO_THROW(options.check(*a)) << where;
        ASSERT_NO_THROW(options.check(*b)) << where;
      }
      if (::testing::Test::HasFailure()) return;
    }
  }
}

}  // namespace kvoffload::testing
