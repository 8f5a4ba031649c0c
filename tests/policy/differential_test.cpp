// Thousands of random call sequences against the reference model: every return value, every
// exception, every event and the gauges must agree, and the core's invariants must hold.
#include "reference_model.hpp"
#include "test_util.hpp"

#include <kvoffload/error.hpp>

#include <gtest/gtest.h>

#include <random>
#include <sstream>

namespace kvoffload::testing {
namespace {

struct Case {
  const char* name;
  ReferenceModel::Kind kind;
  std::unique_ptr<OffloadingManager> (*make)(std::size_t, std::size_t, bool);
};

class Differential : public ::testing::TestWithParam<Case> {};

template <class F>
bool throws(F&& f) {
  try {
    f();
    return false;
  } catch (const logic_error&) {
    return true;
  }
}

void expect_same_events(const std::vector<OffloadingEvent>& a,
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

TEST_P(Differential, RandomSequencesMatchTheReferenceModel) {
  const Case& c = GetParam();
  std::mt19937_64 rng{20261126};
  constexpr int kSequences = 3000;
  constexpr int kSteps     = 60;
  for (int sequence = 0; sequence < kSequences; ++sequence) {
    const std::size_t capacity = 1 + rng() % 6;
    const BlockHash universe   = 2 + rng() % (3 * capacity + 2);
    auto manager               = c.make(capacity, 64, true);
    ReferenceModel model{c.kind, capacity, 64};
    std::ostringstream log;
    for (int step = 0; step < kSteps; ++step) {
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
        const auto hit = manager->lookup(hashes);
        ASSERT_EQ(hit, model.lookup(hashes)) << where;
        manager->touch(hashes);
        model.touch(hashes);
        const std::span<const BlockHash> all{hashes};
        const auto prefix = all.first(*hit);
        EXPECT_EQ(manager->prepare_load(prefix).block_ids, model.prepare_load(prefix).block_ids)
            << where;
        auto got  = manager->prepare_store(all.subspan(*hit));
        auto want = model.prepare_store(all.subspan(*hit));
        ASSERT_EQ(got.has_value(), want.has_value()) << where;
        if (got) {
          EXPECT_EQ(got->store_spec.block_ids, want->store_spec.block_ids) << where;
          EXPECT_EQ(got->block_hashes_evicted, want->block_hashes_evicted) << where;
          if (rng() % 3) {
            const bool success = rng() % 5 != 0;
            manager->complete_store(got->block_hashes_to_store, success);
            model.complete_store(want->block_hashes_to_store, success);
          }
        }
        if (rng() % 2) {
          manager->complete_load(prefix);
          model.complete_load(prefix);
        }
      } else if (op < 20) {
        EXPECT_EQ(manager->lookup(hashes), model.lookup(hashes)) << where;
      } else if (op < 35) {
        manager->touch(hashes);
        model.touch(hashes);
      } else if (op < 50) {
        LoadStoreSpec got, want;
        const bool a = throws([&] { got = manager->prepare_load(hashes); });
        const bool b = throws([&] { want = model.prepare_load(hashes); });
        ASSERT_EQ(a, b) << where;
        EXPECT_EQ(got.block_ids, want.block_ids) << where;
      } else if (op < 62) {
        const bool a = throws([&] { manager->complete_load(hashes); });
        const bool b = throws([&] { model.complete_load(hashes); });
        ASSERT_EQ(a, b) << where;
      } else if (op < 82) {
        auto got  = manager->prepare_store(hashes);
        auto want = model.prepare_store(hashes);
        ASSERT_EQ(got.has_value(), want.has_value()) << where;
        if (got) {
          EXPECT_EQ(got->block_hashes_to_store, want->block_hashes_to_store) << where;
          EXPECT_EQ(got->store_spec.block_ids, want->store_spec.block_ids) << where;
          EXPECT_EQ(got->block_hashes_evicted, want->block_hashes_evicted) << where;
        }
      } else if (op < 97) {
        const bool success = rng() % 4 != 0;
        const bool a       = throws([&] { manager->complete_store(hashes, success); });
        const bool b       = throws([&] { model.complete_store(hashes, success); });
        ASSERT_EQ(a, b) << where;
      } else {
        manager->clear();
        model.clear();
      }
      expect_same_events(manager->take_events(), model.take_events(), where);
      ASSERT_EQ(gauges(manager->stats()), gauges(model.stats())) << where;
      auto* core = dynamic_cast<const detail::CoreManager*>(manager.get());
      ASSERT_NE(core, nullptr);
      ASSERT_NO_THROW(core->check_invariants()) << where;
      if (::testing::Test::HasFailure()) return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Policies,
    Differential,
    ::testing::Values(Case{"lru", ReferenceModel::Kind::kLru, &make_lru_manager},
                      Case{"arc", ReferenceModel::Kind::kArc, &make_arc_manager}),
    [](const auto& info) { return std::string{info.param.name}; });

}  // namespace
}  // namespace kvoffload::testing
