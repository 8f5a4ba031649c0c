// The factory: spec strings, ManagerConfig, what each spec builds, and errors that name the
// offending part of the spec.
#include "test_util.hpp"

#include <kvoffload/concurrent_manager.hpp>
#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/filter_manager.hpp>

#include <gtest/gtest.h>

#include <string>

namespace kvoffload::testing {
namespace {

TEST(Factory, EveryListedPolicyBuildsAndStores) {
  const auto specs = policy_specs();
  for (const char* name : {"lru", "arc", "weighted", "tiered:instant=1"}) {
    EXPECT_NE(std::find(specs.begin(), specs.end(), name), specs.end()) << name;
  }
  for (const std::string& spec : specs) {
    auto m = make_manager(spec, 8, 64);
    ASSERT_NE(m, nullptr) << spec;
    EXPECT_EQ(store(*m, {1, 2, 3}).size(), 3u) << spec;
    EXPECT_EQ(m->lookup(Hashes{1, 2, 3}), 3u) << spec;
    EXPECT_EQ(m->stats().capacity, 8u) << spec;
  }
}

TEST(Factory, ParsesOptionsIntoTheConfig) {
  ManagerConfig c = parse_manager_spec("weighted:frequency_weight=0.25");
  EXPECT_EQ(c.policy, "weighted");
  EXPECT_DOUBLE_EQ(c.weighted.frequency_weight, 0.25);
  EXPECT_EQ(c.filter.store_threshold, 0u);
  EXPECT_EQ(c.concurrency.mode, Concurrency::kNone);

  c = parse_manager_spec("lru+filter:threshold=3,max_tracker=500");
  EXPECT_EQ(c.policy, "lru");
  EXPECT_EQ(c.filter.store_threshold, 3u);
  EXPECT_EQ(c.filter.max_tracker_size, 500u);

  c = parse_manager_spec("arc+filter");
  EXPECT_EQ(c.filter.store_threshold, 2u);  // the decorator's default
  EXPECT_EQ(c.filter.max_tracker_size, kDefaultMaxTrackerSize);

  c = parse_manager_spec("arc+sharded:shards=8+filter:threshold=2");
  EXPECT_EQ(c.concurrency.mode, Concurrency::kSharded);
  EXPECT_EQ(c.concurrency.shards, 8u);
  EXPECT_EQ(c.filter.store_threshold, 2u);

  c = parse_manager_spec("lru+mutex");
  EXPECT_EQ(c.concurrency.mode, Concurrency::kMutex);
}

TEST(Factory, BuildsTheDecoratorsTheSpecNames) {
  auto filtered = make_manager("lru+filter:threshold=2", 8, 64);
  auto* filter  = dynamic_cast<FilterReusedOffloadingManager*>(filtered.get());
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(filter->store_threshold(), 2u);
  // The filter really filters: one lookup is not enough.
  (void)filtered->lookup(Hashes{1});
  auto out = filtered->prepare_store(Hashes{1});
  ASSERT_TRUE(out);
  EXPECT_TRUE(out->block_hashes_to_store.empty());

  auto off = make_manager("lru+filter:threshold=0", 8, 64);
  EXPECT_NE(dynamic_cast<detail::CoreManager*>(off.get()), nullptr);

  auto locked = make_manager("weighted+mutex", 8, 64);
  auto* mutex = dynamic_cast<ConcurrentManager*>(locked.get());
  ASSERT_NE(mutex, nullptr);
  EXPECT_EQ(mutex->shards(), 1u);

  auto sharded = make_manager("arc+filter:threshold=1+sharded:shards=3", 10, 64);
  auto* shards = dynamic_cast<ConcurrentManager*>(sharded.get());
  ASSERT_NE(shards, nullptr);
  EXPECT_EQ(shards->shards(), 3u);
  EXPECT_EQ(sharded->stats().capacity, 10u);
  (void)sharded->lookup(Hashes{1, 2});
  EXPECT_EQ(store(*sharded, {1, 2}).size(), 2u);
}

TEST(Factory, ConfigAggregateBuildsWithDesignatedInitializers) {
  auto m = make_manager(ManagerConfig{.policy     = "weighted",
                                      .num_blocks = 4,
                                      .block_size = 128,
                                      .weighted   = {.frequency_weight = 0}});
  store(*m, {1, 2, 3, 4});
  m->touch(Hashes{1});
  auto out = m->prepare_store(Hashes{5});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->block_hashes_evicted, (Hashes{2}));  // weight 0: plain LRU
  const auto events = m->take_events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().block_size, 128u);
}

TEST(Factory, TheOldOverloadStillBuildsLruAndArc) {
  auto lru = make_manager("lru", 4, 64, false);
  store(*lru, {1});
  EXPECT_TRUE(lru->take_events().empty());
  auto arc = make_manager("arc", 4, 64);
  EXPECT_EQ(arc->stats().capacity, 4u);
}

TEST(Factory, ErrorsNameTheOffendingPart) {
  std::string e = spec_error("lfu");
  expect_contains(e, "unknown policy 'lfu'");
  expect_contains(e, "lru, arc, weighted");

  e = spec_error("weighted:frequency_weigth=0.5");
  expect_contains(e, "unknown option 'frequency_weigth' for 'weighted'");
  expect_contains(e, "frequency_weight=W");

  e = spec_error("weighted:frequency_weight=abc");
  expect_contains(e, "'frequency_weight' needs a number, got 'abc'");

  e = spec_error("weighted:frequency_weight=-1");
  expect_contains(e, "frequency_weight");
  expect_contains(e, "-1");

  e = spec_error("lru:size=4");
  expect_contains(e, "unknown option 'size' for 'lru' (it takes none)");

  e = spec_error("lru+fliter");
  expect_contains(e, "unknown decorator 'fliter'");
  expect_contains(e, "filter, mutex, sharded");

  e = spec_error("lru+filter:threshold");
  expect_contains(e, "'threshold' in 'filter' is not of the form key=value");

  e = spec_error("lru+filter:threshold=two");
  expect_contains(e, "'threshold' needs a non-negative integer, got 'two'");

  e = spec_error("lru+filter+filter");
  expect_contains(e, "decorator 'filter' given twice");

  e = spec_error("lru+mutex+sharded");
  expect_contains(e, "mutex and sharded exclude each other");

  e = spec_error("lru++mutex");
  expect_contains(e, "empty policy or decorator name");

  e = spec_error("");
  expect_contains(e, "empty");

  e = spec_error("lru+sharded:shards=0");
  expect_contains(e, "shards");
  expect_contains(e, "got 0");

  e = spec_error("lru+sharded:shards=32", 8);
  expect_contains(e, "num_blocks 8");

  e = spec_error("lru", 0);
  expect_contains(e, "num_blocks");

  // Every message quotes the whole spec it rejects.
  expect_contains(spec_error("arc+filter:max_tracker=x"), "'arc+filter:max_tracker=x'");
}

TEST(Factory, ConfigErrorsNameTheField) {
  try {
    (void)make_manager(ManagerConfig{.policy = "belady", .num_blocks = 4});
    ADD_FAILURE();
  } catch (const logic_error& e) {
    expect_contains(e.what(), "unknown policy 'belady'");
  }
  EXPECT_THROW((void)make_manager(ManagerConfig{
                   .policy = "lru", .num_blocks = 4, .concurrency = {Concurrency::kSharded, 0}}),
               logic_error);
}

TEST(Factory, HelpListsEveryPolicyAndDecorator) {
  const std::string help = spec_help();
  for (const std::string& spec : policy_specs())
    expect_contains(help, "  " + spec.substr(0, spec.find(':')));
  for (const char* name : {"filter:threshold=N", "mutex", "sharded:shards=N"})
    expect_contains(help, name);
}

}  // namespace
}  // namespace kvoffload::testing
