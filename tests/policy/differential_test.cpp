// Thousands of random call sequences against the reference model: every return value, every
// exception, every event and the gauges must agree, and the core's invariants must hold after
// every step (the driver is lockstep.hpp's, shared with the other managers' tests).
#include "lockstep.hpp"
#include "reference_model.hpp"

#include <gtest/gtest.h>

#include <ostream>

namespace kvoffload::testing {
namespace {

struct Case {
  const char* name;
  ReferenceModel::Kind kind;
  std::unique_ptr<OffloadingManager> (*make)(std::size_t, std::size_t, bool);
};
// What a failure prints as GetParam(), instead of the struct's bytes.
void PrintTo(const Case& c, std::ostream* out) {
  *out << c.name;
}

class Differential : public ::testing::TestWithParam<Case> {};

TEST_P(Differential, RandomSequencesMatchTheReferenceModel) {
  const Case& c = GetParam();
  run_lockstep([&](std::size_t capacity) { return c.make(capacity, 64, true); },
               [&](std::size_t capacity) -> std::unique_ptr<OffloadingManager> {
                 return std::make_unique<ReferenceModel>(c.kind, capacity, 64);
               },
               LockstepOptions{.sequences = 3000, .check = check_core});
}

INSTANTIATE_TEST_SUITE_P(
    Policies,
    Differential,
    ::testing::Values(Case{"lru", ReferenceModel::Kind::kLru, &make_lru_manager},
                      Case{"arc", ReferenceModel::Kind::kArc, &make_arc_manager}),
    [](const auto& info) { return std::string{info.param.name}; });

}  // namespace
}  // namespace kvoffload::testing
