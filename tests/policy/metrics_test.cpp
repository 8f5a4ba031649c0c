// write_prometheus: every line well formed, every ManagerStats field exported, counters that
// only grow, tier gauges with their labels (summed over +sharded shards), histograms well
// formed.
#include "test_util.hpp"

#include <kvoffload/metrics.hpp>

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace kvoffload::testing {
namespace {

struct Exposition {
  std::map<std::string, double> samples;     // "name{labels}" -> value
  std::map<std::string, std::string> types;  // family -> counter | gauge | histogram
};

/// Parses the text format strictly: HELP, then TYPE, then the family's samples; fails the
/// test on any other line.
Exposition parse(const std::string& text) {
  static const std::regex help{R"(^# HELP (kvoffload_[a-z_]+) \S.*$)"};
  static const std::regex type{R"(^# TYPE (kvoffload_[a-z_]+) (counter|gauge|histogram)$)"};
  static const std::regex sample{
      R"re(^(kvoffload_[a-z_]+)\{([a-z_]+="(?:[^"\\\n]|\\[\\"n])*"(?:,[a-z_]+="(?:[^"\\\n]|\\[\\"n])*")*)\} ([0-9]+(?:\.[0-9]+)?(?:e[-+][0-9]+)?)$)re"};
  Exposition out;
  EXPECT_TRUE(!text.empty() && text.back() == '\n');
  std::istringstream in{text};
  std::string current;  // the family whose TYPE came last
  std::set<std::string> finished;
  std::smatch m;
  for (std::string line; std::getline(in, line);) {
    if (std::regex_match(line, m, help)) {
      EXPECT_FALSE(out.types.count(m[1]) || finished.count(m[1])) << "second HELP: " << line;
      if (!current.empty()) finished.insert(current);
      current.clear();
    } else if (std::regex_match(line, m, type)) {
      EXPECT_TRUE(out.types.emplace(m[1], m[2]).second) << "second TYPE: " << line;
      current = m[1];
    } else if (std::regex_match(line, m, sample)) {
      std::string family = m[1];
      if (out.types[current] == "histogram") {
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
          if (family == current + suffix) family = current;
        }
      }
      EXPECT_EQ(family, current) << "a sample outside its family: " << line;
      if (out.types[family] == "counter") EXPECT_TRUE(line.find("_total{") != std::string::npos);
      const std::string key = std::string{m[1]} + "{" + std::string{m[2]} + "}";
      EXPECT_TRUE(out.samples.emplace(key, std::stod(m[3])).second) << "duplicate: " << line;
    } else {
      ADD_FAILURE() << "not well formed: '" << line << "'";
    }
  }
  return out;
}

std::string text_of(const OffloadingManager& manager, std::string_view name) {
  std::ostringstream out;
  write_prometheus(out, manager, name);
  return out.str();
}

void drive(OffloadingManager& m, BlockHash base) {
  for (BlockHash start = base; start < base + 200; start += 4) {
    const Hashes hashes{start, start + 1, start + 2, start % 64};
    const std::size_t hit = m.lookup(hashes).value_or(0);
    m.touch(hashes);
    if (hit > 0) {
      (void)m.prepare_load(std::span{hashes}.first(hit));
      m.complete_load(std::span{hashes}.first(hit));
    }
    if (auto out = m.prepare_store(std::span{hashes}.subspan(hit))) {
      m.complete_store(out->block_hashes_to_store);
    }
  }
}

TEST(Metrics, EveryStatIsASampleAndCountersOnlyGrow) {
  auto m = make_manager("arc", 32, 64);
  drive(*m, 0);
  const Exposition first = parse(text_of(*m, "host"));
  const ManagerStats s   = m->stats();
  const std::map<std::string, std::uint64_t> expected{
      {"lookups_total", s.lookups},
      {"lookup_blocks_total", s.lookup_blocks},
      {"hits_total", s.hits},
      {"misses_total", s.misses},
      {"stores_total", s.stores},
      {"stores_completed_total", s.stores_completed},
      {"stores_failed_total", s.stores_failed},
      {"store_rejections_total", s.store_rejections},
      {"stores_declined_total", s.stores_declined},
      {"evictions_total", s.evictions},
      {"loads_total", s.loads},
      {"capacity_blocks", s.capacity},
      {"pending_blocks", s.pending},
      {"ready_blocks", s.ready},
      {"pinned_blocks", s.pinned},
      {"evictable_blocks", s.evictable},
      {"free_slots", s.free_slots},
      {"metadata_bytes", s.metadata_bytes},
      {"sketch_bytes", s.sketch_bytes},
  };
  EXPECT_EQ(first.samples.size(), expected.size());  // no tier families for a plain manager
  for (const auto& [name, value] : expected) {
    const std::string key = "kvoffload_" + name + "{manager=\"host\"}";
    ASSERT_TRUE(first.samples.count(key)) << key;
    EXPECT_EQ(first.samples.at(key), double(value)) << key;
    EXPECT_EQ(first.types.at("kvoffload_" + name), name.ends_with("_total") ? "counter" : "gauge");
  }
  drive(*m, 1000);
  const Exposition second = parse(text_of(*m, "host"));
  int grew                = 0;
  for (const auto& [key, value] : first.samples) {
    const std::string family = key.substr(0, key.find('{'));
    if (first.types.at(family) != "counter") continue;
    EXPECT_GE(second.samples.at(key), value) << key;
    grew += second.samples.at(key) > value;
  }
  EXPECT_GE(grew, 5);
}

TEST(Metrics, TieredManagersAddTheirCountersAndOneGaugePerTier) {
  auto m = make_manager("tiered:hot=4,warm=8,instant=1", 32, 64);
  drive(*m, 0);
  const auto* tiered = find_tiered_manager(*m);
  ASSERT_NE(tiered, nullptr);
  const TieredStats t = tiered->tiered_stats();
  ASSERT_GT(t.demotions, 0u);
  const Exposition e = parse(text_of(*m, "kv"));
  EXPECT_EQ(e.samples.at("kvoffload_demotions_total{manager=\"kv\"}"), double(t.demotions));
  EXPECT_EQ(
      e.samples.at("kvoffload_tier_capacity_blocks{manager=\"kv\",tier=\"1\",medium=\"cpu\"}"),
      8.0);
  EXPECT_EQ(e.samples.at("kvoffload_tier_ready_blocks{manager=\"kv\",tier=\"2\",medium=\"disk\"}"),
            double(t.tiers[2].ready));
  // Under the filter or the mutex the tiers are still found; under shards they are not.
  EXPECT_NE(find_tiered_manager(*make_manager("tiered:instant=1+filter+mutex", 32, 64)), nullptr);
  EXPECT_EQ(find_tiered_manager(*make_manager("tiered:instant=1+sharded:shards=2", 32, 64)),
            nullptr);
  EXPECT_EQ(find_tiered_manager(*make_manager("lru", 32, 64)), nullptr);
}

TEST(Metrics, ShardedTieredManagersExportTheirShardsTiersSummed) {
  auto m = make_manager("tiered:hot=0.25,warm=0.25,instant=1+sharded:shards=4", 64, 64);
  drive(*m, 0);
  const Exposition e = parse(text_of(*m, "kv"));
  double capacity = 0, ready = 0;
  for (int t = 0; t < 3; ++t) {
    const std::string medium = t == 0 ? "gpu" : t == 1 ? "cpu" : "disk";
    const std::string labels =
        "{manager=\"kv\",tier=\"" + std::to_string(t) + "\",medium=\"" + medium + "\"}";
    capacity += e.samples.at("kvoffload_tier_capacity_blocks" + labels);
    ready += e.samples.at("kvoffload_tier_ready_blocks" + labels);
  }
  // Every shard's tiers are in the sums: the slots and the ready blocks of all of them.
  EXPECT_EQ(capacity, 64.0);
  EXPECT_EQ(ready, double(m->stats().ready));
  EXPECT_GT(e.samples.at("kvoffload_demotions_total{manager=\"kv\"}"), 0.0);
}

TEST(Metrics, ManagersShareFamiliesAndNamesAreEscapedOrRefused) {
  auto a                      = make_manager("lru", 8, 64);
  auto b                      = make_manager("lru", 16, 64);
  const ManagerMetrics both[] = {collect_metrics(*a, "a"), collect_metrics(*b, "b\"\\\n")};
  std::ostringstream out;
  write_prometheus(out, both);
  const Exposition e = parse(out.str());
  EXPECT_EQ(e.samples.at("kvoffload_capacity_blocks{manager=\"b\\\"\\\\\\n\"}"), 16.0);
  EXPECT_EQ(e.samples.at("kvoffload_capacity_blocks{manager=\"a\"}"), 8.0);
  const ManagerMetrics twice[] = {collect_metrics(*a, "a"), collect_metrics(*b, "a")};
  std::ostringstream ignored;
  try {
    write_prometheus(ignored, twice);
    ADD_FAILURE() << "two managers named 'a' were accepted";
  } catch (const logic_error& error) {
    expect_contains(error.what(), "two managers are named 'a'");
  }
}

}  // namespace
}  // namespace kvoffload::testing
