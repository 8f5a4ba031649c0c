// The trace reader's errors and the replay driver against the trace's published reference.
#include "replay/replay.hpp"
#include "cli_message.hpp"
#include "replay/trace.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/tiered_manager.hpp>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace kvoffload::replay {
namespace {

std::string error_of(const std::string& text) {
  std::istringstream in{text};
  try {
    (void)parse_trace(in);
  } catch (const logic_error& e) {
    return e.what();
  }
  return "";
}

TEST(Trace, ParsesHashIdsAndSkipsOtherKeys) {
  std::istringstream in{
      "{\"timestamp\": 0, \"input_length\": 700, \"hash_ids\": [0, 1, 2]}\n"
      "\n"
      "{\"hash_ids\": [0, 3], \"meta\": {\"a\": [1, {\"b\": null}], \"s\": \"x\\\"y\"}, "
      "\"f\": -1.5e3, \"t\": true}\n"
      "{\"hash_ids\": []}\n"};
  const Trace trace = parse_trace(in);
  ASSERT_EQ(trace.requests.size(), 3u);
  EXPECT_EQ(trace.requests[0].hashes, (std::vector<BlockHash>{0, 1, 2}));
  EXPECT_EQ(trace.requests[1].hashes, (std::vector<BlockHash>{0, 3}));
  EXPECT_TRUE(trace.requests[2].hashes.empty());
  EXPECT_EQ(trace.references, 5u);
  EXPECT_EQ(trace.distinct_ids, 4u);
}

TEST(Trace, MalformedLinesNameTheLineAndTheProblem) {
  const std::string good = "{\"hash_ids\": [1]}\n";
  EXPECT_NE(error_of(good + "{\"hash_ids\": [1, x]}\n").find("line 2"), std::string::npos);
  EXPECT_NE(error_of(good + good + "{\"timestamp\": 3}\n").find("line 3, column"),
            std::string::npos);
  EXPECT_NE(error_of("{\"timestamp\": 3}\n").find("no \"hash_ids\""), std::string::npos);
  EXPECT_NE(error_of("{\"hash_ids\": [1, -2]}").find("non-negative integers"), std::string::npos);
  EXPECT_NE(error_of("{\"hash_ids\": [1.5]}").find("fraction"), std::string::npos);
  EXPECT_NE(error_of("{\"hash_ids\": [99999999999999999999999]}").find("64 bits"),
            std::string::npos);
  EXPECT_NE(error_of("{\"hash_ids\": [1]").find("expected ',' or '}'"), std::string::npos);
  EXPECT_NE(error_of("[1, 2]").find("expected '{'"), std::string::npos);
  EXPECT_NE(error_of("{\"hash_ids\": [1]} trailing").find("unexpected text"), std::string::npos);
  EXPECT_NE(error_of("{\"hash_ids\": 7}").find("must be an array"), std::string::npos);
  EXPECT_NE(error_of("{\"hash_ids\": [1], \"hash_ids\": [2]}").find("twice"), std::string::npos);
  EXPECT_EQ(error_of(good), "");
}

TEST(Trace, MissingFileIsAClearError) {
  try {
    (void)load_trace("/nonexistent/trace.jsonl");
    FAIL();
  } catch (const logic_error& e) {
    EXPECT_NE(std::string{e.what()}.find("/nonexistent/trace.jsonl"), std::string::npos);
  }
}

TEST(Replay, CapacityParsing) {
  EXPECT_EQ(parse_capacity("1828", 182790), 1828u);
  EXPECT_EQ(parse_capacity("1%", 182790), 1828u);
  EXPECT_EQ(parse_capacity("5%", 182790), 9140u);
  EXPECT_EQ(parse_capacity("25%", 182790), 45698u);
  EXPECT_THROW(parse_capacity("0", 100), logic_error);
  EXPECT_THROW(parse_capacity("abc", 100), logic_error);
  EXPECT_THROW(parse_capacity("1.5", 100), logic_error);
  EXPECT_THROW(parse_capacity("0.1%", 100), logic_error);
  EXPECT_EQ(parse_capacity("100%", 182790), 182790u);
  EXPECT_THROW(parse_capacity("150%", 182790), logic_error);
  EXPECT_THROW(parse_capacity("", 100), logic_error);
  // Checked without a trace (the CLI does it before reading one); the size comes later.
  const CapacitySpec spec = parse_capacity_spec("5%");
  EXPECT_TRUE(spec.percent);
  EXPECT_EQ(spec.blocks(182790), 9140u);
  try {
    (void)parse_capacity_spec("100.5%");
    FAIL() << "expected logic_error";
  } catch (const logic_error& e) {
    EXPECT_NE(std::string{e.what()}.find("'100.5%' is above 100%"), std::string::npos) << e.what();
  }
}

// The replay confirms a tiered manager's plans as they are made: a block demoted to the warm
// tier is still a hit, and nothing is left in flight. Without the plans executed before
// complete_store, the store's slot is still the source of a demotion and the manager throws.
TEST(Replay, TieredPlansAreExecutedAsTheyAreMade) {
  std::istringstream in{
      "{\"hash_ids\": [1]}\n{\"hash_ids\": [2]}\n{\"hash_ids\": [1]}\n{\"hash_ids\": [3]}\n"
      "{\"hash_ids\": [2]}\n"};
  const Trace trace    = parse_trace(in);
  auto manager         = make_manager("tiered:hot=1,cold=0", 2, 1);  // 1 hot slot, 1 warm slot
  const ReplayResult r = replay(trace, *manager);
  // Storing 2 demotes 1 to warm, where request 3 hits it (one touch there: no promotion);
  // storing 3 demotes 2 to warm, whose victim 1 drops (no cold tier); request 5 hits 2 there.
  EXPECT_EQ(r.hits, 2u);
  const auto& tiered = dynamic_cast<const TieredOffloadingManager&>(*manager);
  EXPECT_GT(tiered.tiered_stats().demotions, 0u);
  EXPECT_EQ(tiered.tiered_stats().in_flight, 0u);
  EXPECT_EQ(manager->stats().pending, 0u);
}

// On the bundled trace, executing the plans as made gives the hit rate of instant=1 (where the
// manager confirms its own plans), and both stay below Belady.
TEST(Replay, MooncakeTieredMatchesInstantTransfers) {
  const Trace trace =
      load_trace(KVOFFLOAD_SOURCE_DIR "/data/traces/mooncake/conversation_trace.jsonl");
  const std::size_t blocks = parse_capacity("1%", trace.distinct_ids);
  auto planned             = make_manager("tiered:hot=0.2,warm=0.3", blocks, 1);
  auto instant             = make_manager("tiered:hot=0.2,warm=0.3,instant=1", blocks, 1);
  const ReplayResult a     = replay(trace, *planned);
  const ReplayResult b     = replay(trace, *instant);
  EXPECT_GT(a.hits, 0u);
  EXPECT_NEAR(a.hit_rate(), b.hit_rate(), 0.002);
  EXPECT_LE(a.hits, belady_hits(trace, blocks));
  EXPECT_EQ(dynamic_cast<const TieredOffloadingManager&>(*planned).tiered_stats().in_flight, 0u);
}

TEST(CliMessage, SourceLocationsAreLeftOutUnlessDebugging) {
  const std::string what =
      "kvoffload: bad manager spec 'x': unknown policy 'x' (known: lru, arc) "
      "(csrc/policy/factory.cpp:251)";
  EXPECT_EQ(cli::without_source_locations(what),
            "bad manager spec 'x': unknown policy 'x' (known: lru, arc)");
  EXPECT_EQ(cli::error_text(what, /*debug=*/true), what);
  // Nested messages carry one location each; parentheses that are not locations stay.
  EXPECT_EQ(
      cli::without_source_locations(
          "kvoffload: store failed: kvoffload: slot 3 (of 8) (csrc/a.cpp:1) (bench/b.hpp:22)"),
      "store failed: kvoffload: slot 3 (of 8)");
  EXPECT_EQ(cli::without_source_locations("ratio (1:2) kept (x.y:z)"), "ratio (1:2) kept (x.y:z)");
}

TEST(Replay, HitsComeFromReadyBlocksAndBeladyIsAnUpperBound) {
  std::istringstream in{
      "{\"hash_ids\": [1, 2, 3]}\n{\"hash_ids\": [1, 2, 4]}\n{\"hash_ids\": [5, 2]}\n"
      "{\"hash_ids\": [1, 2, 3]}\n"};
  const Trace trace    = parse_trace(in);
  auto lru             = make_manager("lru", 3, 1);
  const ReplayResult r = replay(trace, *lru);
  // Request 2 hits 1, 2 (prefix 2) and evicts 3 for 4; request 3 hits 2 outside the prefix,
  // its touch leaves 1 oldest, so 5 evicts 1; request 4 then hits only 2.
  EXPECT_EQ(r.hits, 4u);
  EXPECT_EQ(r.prefix_hits, 2u);
  EXPECT_EQ(r.references, 11u);
  EXPECT_GT(r.block_ops, r.references);
  EXPECT_GE(belady_hits(trace, 3), r.hits);
  EXPECT_EQ(belady_hits(trace, 100), 6u);  // unbounded: every re-reference hits
}

TEST(Replay, ScrambledIdsKeepTheReuseStructure) {
  std::istringstream in{
      "{\"hash_ids\": [0, 1, 2]}\n{\"hash_ids\": [0, 1, 3]}\n{\"hash_ids\": [2]}\n"};
  const Trace plain = parse_trace(in);
  Trace scrambled   = plain;
  scramble_ids(scrambled);
  EXPECT_NE(scrambled.requests[0].hashes, plain.requests[0].hashes);
  EXPECT_EQ(scrambled.requests[0].hashes[0], scrambled.requests[1].hashes[0]);
  EXPECT_EQ(scrambled.requests[0].hashes[2], scrambled.requests[2].hashes[0]);
  auto a = make_manager("lru", 2, 1);
  auto b = make_manager("lru", 2, 1);
  EXPECT_EQ(replay(plain, *a).hits, replay(scrambled, *b).hits);
  EXPECT_EQ(belady_hits(plain, 2), belady_hits(scrambled, 2));
}

// The bundled Mooncake trace against the reference hit rates in its README: LRU within 0.001
// (the reference counts per block reference) and Belady's MIN exactly.
TEST(Replay, MooncakeLruAndBeladyMatchTheReference) {
  const Trace trace =
      load_trace(KVOFFLOAD_SOURCE_DIR "/data/traces/mooncake/conversation_trace.jsonl");
  ASSERT_EQ(trace.requests.size(), 12031u);
  ASSERT_EQ(trace.references, 288500u);
  ASSERT_EQ(trace.distinct_ids, 182790u);
  const struct {
    const char* capacity;
    double lru, belady;
  } reference[] = {{"1%", 0.0523, 0.2464}, {"10%", 0.2784, 0.3664}};
  for (const auto& ref : reference) {
    const std::size_t blocks = parse_capacity(ref.capacity, trace.distinct_ids);
    auto manager             = make_manager("lru", blocks, 1);
    const ReplayResult r     = replay(trace, *manager);
    EXPECT_NEAR(r.hit_rate(), ref.lru, 0.001) << ref.capacity;
    EXPECT_NEAR(double(belady_hits(trace, blocks)) / trace.references, ref.belady, 0.00005)
        << ref.capacity;
  }
}

}  // namespace
}  // namespace kvoffload::replay
