// The density policy (include/kvoffload/density_manager.hpp) in scenarios: the age bins and
// reference classes, the count-min sketch, the learned model on a synthetic stream, what the
// policy does with what it learned (eviction order, admission, the last touch, pinning, the
// clock rebase), its factory spec, its footprint, and its hit rate on the bundled Mooncake
// trace against LRU. The policy is built around CoreManager with sample_shift 0 (every hash
// followed), so every scenario is deterministic.
#include "policy/count_min.hpp"
#include "policy/hit_density.hpp"
#include "policy/manager_core.hpp"
#include "policy/policies.hpp"
#include "replay/replay.hpp"
#include "replay/trace.hpp"
#include "test_util.hpp"

#include <kvoffload/density_manager.hpp>
#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace kvoffload::testing {
namespace {

using detail::age_bin;
using detail::bin_start;
using detail::CoreConfig;
using detail::CoreManager;
using detail::CountMinSketch;
using detail::DensityState;
using detail::HitDensityModel;
using detail::RefClass;
using detail::reference_class;

// ---- Helpers -------------------------------------------------------------------------------

/// What serve() did with one request.
struct Served {
  std::size_t prefix{0};                    ///< lookup()'s ready prefix (loaded)
  std::optional<PrepareStoreOutput> out{};  ///< prepare_store of the rest
};

/// One request the way the replay serves it: lookup, touch, prepare_load / complete_load of
/// the ready prefix, prepare_store of the rest, complete_store of what it chose to store.
Served serve(OffloadingManager& m, const Hashes& hashes) {
  const std::span<const BlockHash> all{hashes};
  Served s;
  s.prefix = m.lookup(all).value_or(0);
  m.touch(all);
  if (s.prefix > 0) {
    (void)m.prepare_load(all.first(s.prefix));
    m.complete_load(all.first(s.prefix));
  }
  s.out = m.prepare_store(all.subspan(s.prefix));
  if (s.out) m.complete_store(s.out->block_hashes_to_store, true);
  return s;
}

std::unique_ptr<CoreManager> density(std::size_t n,
                                     const DensityConfig& config = {},
                                     std::uint32_t rebase_period = 1U << 30) {
  return std::make_unique<CoreManager>(
      CoreConfig{n, 64, Medium::kCpu, true},
      detail::make_density_policy(n, config, /*sample_shift=*/0, rebase_period));
}

DensityState state_of(const CoreManager& m) {
  const auto s = detail::density_state(m.policy());
  if (!s) throw std::logic_error("not a density policy");
  return *s;
}

bool resident(OffloadingManager& m, BlockHash hash) {
  return m.lookup(Hashes{hash}).value_or(0) == 1;
}

bool contains(const Hashes& hashes, BlockHash hash) {
  return std::find(hashes.begin(), hashes.end(), hash) != hashes.end();
}

// A conversation workload with a known reuse structure. Conversation c has three turns, each
// [head, its 4 deep blocks, a new tail]; turn 2 comes 3 steps after turn 1 and turn 3 three
// steps after turn 2 (about 54 references later each time). So: the shared head is referenced
// by every request (kSeenMany); a deep block is first seen in turn 1 (kNewDeep; the last of
// the four is kNewSecondLast) and comes back in turn 2 (kSeenOnce), which comes back in turn 3
// (kSeenTwice), which never comes back; tails (kNewLast) never come back.
constexpr BlockHash kHead = 1;

BlockHash deep(std::size_t conversation, std::size_t j) {
  return 1000 + 8 * conversation + j;
}

Hashes turn(std::size_t conversation, std::size_t t) {
  Hashes h{kHead};
  for (std::size_t j = 0; j < 4; ++j)
    h.push_back(deep(conversation, j));
  h.push_back(100'000'000 + 4 * conversation + t);
  return h;
}

/// Serves `conversations` conversations (about 54 references per 3 of them) then clear()s the
/// cache, so a scenario starts empty with the learned model and sketch.
void train(CoreManager& m, std::size_t conversations = 600) {
  for (std::size_t s = 0; s < conversations + 6; ++s) {
    if (s < conversations) serve(m, turn(s, 0));
    if (s >= 3 && s - 3 < conversations) serve(m, turn(s - 3, 1));
    if (s >= 6 && s - 6 < conversations) serve(m, turn(s - 6, 2));
    if (s % 64 == 0) check_core(m);
  }
  check_core(m);
  m.clear();
  ASSERT_EQ(m.stats().ready, 0u);
}

/// Hashes of blocks used by the scenarios after training (never seen in training).
BlockHash fresh(std::size_t i) {
  return 5'000'000'000ULL + i;
}

// ---- 1. Age bins and reference classes -----------------------------------------------------

TEST(DensityBins, BinsAreContiguousAndIncreasing) {
  EXPECT_EQ(bin_start(0), 0u);
  EXPECT_EQ(bin_start(1), 16u);  // [0, 16) is bin 0
  EXPECT_EQ(bin_start(2), 20u);  // then quarter octaves: 16, 20, 24, 28, 32, 40, ...
  EXPECT_EQ(bin_start(5), 32u);
  EXPECT_EQ(bin_start(6), 40u);
  for (int b = 0; b < 150; ++b) {
    ASSERT_LT(bin_start(b), bin_start(b + 1)) << "bin " << b;
    ASSERT_EQ(age_bin(bin_start(b)), b) << "bin " << b;  // each bin starts where it says
    if (b > 0) {
      ASSERT_EQ(age_bin(bin_start(b) - 1), b - 1) << "bin " << b;
    }
  }
  // Every age up to 2^16 lands in a bin one above or equal to the previous age's.
  for (std::uint64_t a = 1; a < (1U << 16); ++a)
    ASSERT_TRUE(age_bin(a) == age_bin(a - 1) || age_bin(a) == age_bin(a - 1) + 1) << "age " << a;
}

TEST(DensityBins, EveryAgeLiesInsideItsBin) {
  std::vector<std::uint64_t> ages{0, 1, 15, 16, 17, 19, 20, 31, 32, 33, 1000, 123456789};
  for (int e = 1; e <= 40; ++e) {
    const std::uint64_t p = std::uint64_t{1} << e;
    ages.insert(ages.end(), {p - 1, p, p + 1, p + p / 4, p + p / 2, p + 3 * p / 4 - 1});
  }
  std::mt19937_64 rng{7};
  for (int i = 0; i < 2000; ++i)
    ages.push_back(rng() >> (24 + i % 40));  // below 2^40
  for (std::uint64_t a : ages) {
    const int b = age_bin(a);
    ASSERT_GE(b, 0) << "age " << a;
    EXPECT_LE(bin_start(b), a) << "age " << a;
    EXPECT_LT(a, bin_start(b + 1)) << "age " << a;
  }
  EXPECT_EQ(age_bin(15), 0);
  EXPECT_EQ(age_bin(16), 1);
  EXPECT_EQ(age_bin(std::uint64_t{1} << 40), 1 + 4 * 36);
}

TEST(DensityBins, ReferenceClassCoversEveryBranch) {
  for (bool continuation : {false, true}) {
    SCOPED_TRACE(continuation ? "continuation" : "no known prefix");
    EXPECT_EQ(reference_class(0, 0, continuation), detail::kNewLast);
    EXPECT_EQ(reference_class(0, 1, continuation), detail::kNewSecondLast);
    // Position and continuation matter only for a first sighting.
    for (std::size_t from_end : {0, 1, 2, 50}) {
      EXPECT_EQ(reference_class(1, from_end, continuation), detail::kSeenOnce);
      EXPECT_EQ(reference_class(2, from_end, continuation), detail::kSeenTwice);
      EXPECT_EQ(reference_class(3, from_end, continuation), detail::kSeenFew);
      EXPECT_EQ(reference_class(7, from_end, continuation), detail::kSeenFew);
      EXPECT_EQ(reference_class(8, from_end, continuation), detail::kSeenMany);
      EXPECT_EQ(reference_class(15, from_end, continuation), detail::kSeenMany);
    }
  }
  EXPECT_EQ(reference_class(0, 2, false), detail::kNewDeep);
  EXPECT_EQ(reference_class(0, 1000, false), detail::kNewDeep);
  EXPECT_EQ(reference_class(0, 2, true), detail::kNewDeepContinuation);
  EXPECT_EQ(reference_class(0, 1000, true), detail::kNewDeepContinuation);
}

// ---- 2. Count-min sketch ---------------------------------------------------------------------

TEST(DensitySketch, NeverUnderestimatesBeforeAHalving) {
  // 300 keys in 256 columns: many shared counters, so over-estimates happen; under-estimates
  // must not (conservative update only skips counters already above the minimum).
  CountMinSketch sketch{256, std::uint64_t{1} << 40};
  EXPECT_EQ(sketch.width(), 256u);
  std::mt19937_64 rng{11};
  std::map<std::uint64_t, unsigned> truth;
  std::vector<std::uint64_t> pending;  // one entry per increment still to do, shuffled
  for (int k = 0; k < 300; ++k) {
    const std::uint64_t key = rng();
    truth[key]              = static_cast<unsigned>(rng() % 16);
    pending.insert(pending.end(), truth[key], key);
  }
  std::shuffle(pending.begin(), pending.end(), rng);
  std::map<std::uint64_t, unsigned> counted;
  for (std::size_t i = 0; i < pending.size(); ++i) {
    sketch.increment(sketch.cells(pending[i]));
    ++counted[pending[i]];
    if (i % 97 == 0) {  // also midway, not only at the end
      for (const auto& [key, c] : counted)
        ASSERT_GE(sketch.estimate(key), c) << "key " << key << " after " << i;
    }
  }
  std::size_t over = 0;
  for (const auto& [key, c] : truth) {
    EXPECT_GE(sketch.estimate(key), c) << "key " << key;
    EXPECT_LE(sketch.estimate(key), CountMinSketch::kMax);
    over += sketch.estimate(key) > c;
  }
  EXPECT_GT(over, 0u) << "the keys should share counters in a sketch this narrow";
}

TEST(DensitySketch, SaturatesAtFifteen) {
  CountMinSketch sketch{1024, std::uint64_t{1} << 40};
  const auto cells = sketch.cells(42);
  for (unsigned i = 1; i <= 40; ++i) {
    sketch.increment(cells);
    EXPECT_EQ(sketch.estimate(42), std::min(i, CountMinSketch::kMax)) << i << " increments";
  }
  EXPECT_EQ(CountMinSketch(100, 1).width(), 128u);  // rounded up to a power of two
  EXPECT_EQ(CountMinSketch(3, 1).width(), CountMinSketch::kMinWidth);
}

TEST(DensitySketch, HalvesEveryPeriodIncrements) {
  CountMinSketch sketch{1024, /*period=*/10};
  const std::uint64_t a = 1, b = 2, c = 3, d = 4;
  for (int i = 0; i < 8; ++i)
    sketch.increment(sketch.cells(a));
  sketch.increment(sketch.cells(b));  // 9 increments: no reset yet
  EXPECT_EQ(sketch.estimate(a), 8u);
  EXPECT_EQ(sketch.estimate(b), 1u);
  sketch.increment(sketch.cells(b));  // the 10th: every counter halves
  EXPECT_EQ(sketch.estimate(a), 4u);
  EXPECT_EQ(sketch.estimate(b), 1u);  // 2 / 2
  // The increment count halves too (to 5): the next reset comes after 5 more.
  for (int i = 0; i < 4; ++i)
    sketch.increment(sketch.cells(c));
  EXPECT_EQ(sketch.estimate(a), 4u);
  EXPECT_EQ(sketch.estimate(c), 4u);
  sketch.increment(sketch.cells(d));
  EXPECT_EQ(sketch.estimate(a), 2u);
  EXPECT_EQ(sketch.estimate(c), 2u);
  EXPECT_EQ(sketch.estimate(d), 0u);  // 1 / 2
  // A saturated counter halves to 7.
  CountMinSketch full{1024, 20};
  for (int i = 0; i < 20; ++i)
    full.increment(full.cells(a));
  EXPECT_EQ(full.estimate(a), 7u);
}

// ---- 3. The learned model ----------------------------------------------------------------------

constexpr std::uint64_t kModelHorizon  = 4096;
constexpr std::uint64_t kModelInterval = 256;
constexpr std::uint64_t kModelCapacity = kModelHorizon + kModelInterval + 64;  // sample table

TEST(DensityModel, BeforeTheFirstEstimateDensityIsRecencyOrder) {
  HitDensityModel model{{.horizon = 1024, .sample_shift = 0, .update_interval = 128}};
  for (std::uint64_t age : {0, 15, 16, 100, 1000}) {
    const float expected = 1.0F / static_cast<float>(1 + age_bin(age));
    for (std::size_t c = 0; c < detail::kRefClasses; ++c)
      EXPECT_EQ(model.density(static_cast<RefClass>(c), age), expected) << age;
  }
  EXPECT_EQ(model.density(detail::kSeenOnce, 1024), 0.0F);
  EXPECT_EQ(model.updates(), 0u);
  EXPECT_EQ(model.bins(), static_cast<std::size_t>(age_bin(1023)) + 1);
}

TEST(DensityModel, LearnsThatReusedClassesAreDenseAndDeadOnesAreNot) {
  HitDensityModel model{
      {.horizon = kModelHorizon, .sample_shift = 0, .update_interval = kModelInterval}};
  std::uint64_t now = 0;
  std::size_t most  = 0;
  // Per round: a new kSeenOnce block, referenced again (as kSeenTwice, then never) 17 rounds
  // = 51 references later; a new kNewLast block, never referenced again. Five horizons.
  const std::size_t rounds = 5 * kModelHorizon / 3;
  for (std::size_t i = 0; i < rounds; ++i) {
    model.observe(10'000'000 + i, detail::kSeenOnce, ++now);
    model.observe(20'000'000 + i, detail::kNewLast, ++now);
    if (i >= 17) model.observe(10'000'000 + i - 17, detail::kSeenTwice, ++now);
    most = std::max(most, model.samples());
    ASSERT_LE(model.samples(), kModelCapacity) << "reference " << now;
    if (i % 500 == 0) {
      ASSERT_NO_THROW(model.check_invariants()) << "reference " << now;
    }
    if (now / 3 == kModelHorizon / 6) {
      // Half a horizon in, no kNewLast sample has expired yet: the tails still waiting count
      // as at risk (censored), so they already look dead rather than unknown.
      ASSERT_GE(model.updates(), 4u);
      EXPECT_GT(model.density(detail::kSeenOnce, 0), 100 * model.density(detail::kNewLast, 0))
          << "reference " << now;
    }
  }
  ASSERT_NO_THROW(model.check_invariants());
  EXPECT_EQ(model.dropped(), 0u);
  EXPECT_GT(most, kModelHorizon / 2) << "the table should hold about a horizon of samples";
  EXPECT_GE(model.updates(), now / kModelInterval);

  const float once = model.density(detail::kSeenOnce, 0);
  const float last = model.density(detail::kNewLast, 0);
  const float dead = model.density(detail::kSeenTwice, 0);
  EXPECT_GT(once, 0.005F);  // about 1 hit per ~51 references of cache time
  EXPECT_GT(once, 100 * last) << "kSeenOnce " << once << " kNewLast " << last;
  EXPECT_GT(once, 100 * dead) << "kSeenOnce " << once << " kSeenTwice " << dead;
  // A kSeenOnce block past its reuse age (51, bin 7) without a hit is worth little more.
  EXPECT_LT(model.density(detail::kSeenOnce, 200), once / 10);
  for (std::size_t c = 0; c < detail::kRefClasses; ++c) {
    const auto cls = static_cast<RefClass>(c);
    for (std::uint64_t age : {kModelHorizon, kModelHorizon + 1, std::uint64_t{1} << 40})
      EXPECT_EQ(model.density(cls, age), 0.0F) << "class " << c << " age " << age;
    for (std::uint64_t age = 0; age < kModelHorizon; age += 37) {
      const float d = model.density(cls, age);
      EXPECT_TRUE(d >= 0.0F && d <= 1.0F) << "class " << c << " age " << age << ": " << d;
    }
  }
}

TEST(DensityModel, SampleTableStaysBoundedWhenEveryReferenceIsNew) {
  // The worst case for the table: a new sampled hash at every reference.
  HitDensityModel model{
      {.horizon = kModelHorizon, .sample_shift = 0, .update_interval = kModelInterval}};
  const std::size_t memory_after_warmup = [&] {
    for (std::uint64_t now = 1; now <= 2 * kModelHorizon; ++now)
      model.observe(now * 7919, detail::kNewDeep, now);
    return model.memory_bytes();
  }();
  std::size_t most = 0;
  for (std::uint64_t now = 2 * kModelHorizon + 1; now <= 6 * kModelHorizon; ++now) {
    model.observe(now * 7919, detail::kNewDeep, now);
    most = std::max(most, model.samples());
    ASSERT_LE(model.samples(), kModelCapacity) << "reference " << now;
  }
  EXPECT_EQ(model.dropped(), 0u);
  EXPECT_GE(most, kModelHorizon);  // samples live a horizon: the bound is reached, not loose
  EXPECT_LE(most, kModelHorizon + kModelInterval);
  EXPECT_EQ(model.memory_bytes(), memory_after_warmup);  // no growth with time
  EXPECT_NO_THROW(model.check_invariants());
  // Nothing is ever reused: every class is worth (almost) nothing.
  EXPECT_LT(model.density(detail::kNewDeep, 0), 1e-4F);
}

TEST(DensityModel, BadOptionsThrowNamingTheValue) {
  auto message_of = [](const HitDensityModel::Options& o) -> std::string {
    try {
      HitDensityModel model{o};
    } catch (const std::logic_error& e) {
      return e.what();
    }
    return "(accepted)";
  };
  const HitDensityModel::Options ok{.horizon = 1024, .sample_shift = 0, .update_interval = 64};
  EXPECT_EQ(message_of(ok), "(accepted)");
  auto bad    = ok;
  bad.horizon = 15;
  expect_contains(message_of(bad), "horizon");
  expect_contains(message_of(bad), "got 15");
  bad.horizon = (std::uint64_t{1} << 30) + 1;
  expect_contains(message_of(bad), "got 1073741825");
  bad              = ok;
  bad.sample_shift = 17;
  expect_contains(message_of(bad), "sample_shift");
  expect_contains(message_of(bad), "got 17");
  bad.sample_shift = -1;
  expect_contains(message_of(bad), "got -1");
  bad                 = ok;
  bad.update_interval = 0;
  expect_contains(message_of(bad), "update_interval");
  expect_contains(message_of(bad), "got 0");
  bad.update_interval = 1025;
  expect_contains(message_of(bad), "got 1025");
  bad.update_interval = 1024;  // = horizon: allowed
  EXPECT_EQ(message_of(bad), "(accepted)");
  bad                 = ok;
  bad.horizon         = 16;
  bad.update_interval = 16;
  EXPECT_EQ(message_of(bad), "(accepted)");
}

// ---- 4. The policy in a CoreManager ------------------------------------------------------------

TEST(DensityPolicy, LearnsTheClassesOfAConversationWorkload) {
  auto m = density(16);
  ASSERT_NO_FATAL_FAILURE(train(*m));
  const DensityState s = state_of(*m);
  EXPECT_GE(s.references, 600u * 3 * 6);
  EXPECT_EQ(s.horizon, 4096u);  // 16 x 16 blocks is below the floor of 4096 references
  EXPECT_GE(s.updates, s.references / 1024);
  EXPECT_EQ(s.dropped, 0u);
  const auto& d = s.density_at_0;
  SCOPED_TRACE(::testing::Message()
               << "density at 0: new last " << d[detail::kNewLast] << ", new deep "
               << d[detail::kNewDeep] << ", second last " << d[detail::kNewSecondLast]
               << ", seen once " << d[detail::kSeenOnce] << ", seen twice " << d[detail::kSeenTwice]
               << ", seen many " << d[detail::kSeenMany]);
  // Reused classes: one hit per ~54 references, diluted by the few misclassified dead blocks
  // that sit out the whole horizon (a sketch halving turns a third turn's count of 2 into 1);
  // dead classes (tails, third turns) hundreds of times less.
  for (RefClass dense : {detail::kNewDeep, detail::kNewSecondLast, detail::kSeenOnce}) {
    EXPECT_GT(d[dense], 0.001F) << static_cast<int>(dense);
    EXPECT_GT(d[dense], 100 * d[detail::kNewLast]) << static_cast<int>(dense);
    EXPECT_GT(d[dense], 100 * d[detail::kSeenTwice]) << static_cast<int>(dense);
  }
  // The head, referenced every ~6 references, is the densest.
  EXPECT_GT(d[detail::kSeenMany], d[detail::kSeenOnce]);
}

TEST(DensityPolicy, EvictsAYoungTailBeforeOlderDeepBlocks) {
  auto m = density(12);
  ASSERT_NO_FATAL_FAILURE(train(*m));
  // A: [head, a0..a3, tail a]; B: [head, b0..b3, tail b]. The a blocks are older than B's tail.
  const Hashes a{kHead, fresh(1), fresh(2), fresh(3), fresh(4), fresh(5)};
  const Hashes b{kHead, fresh(11), fresh(12), fresh(13), fresh(14), fresh(15)};
  const Hashes c{kHead, fresh(21), fresh(22), fresh(23)};
  const Served sa = serve(*m, a);
  ASSERT_TRUE(sa.out);
  ASSERT_EQ(sa.out->block_hashes_to_store, a);
  const Served sb = serve(*m, b);
  ASSERT_TRUE(sb.out);
  ASSERT_EQ(sb.out->block_hashes_to_store, Hashes(b.begin() + 1, b.end()));
  ASSERT_EQ(m->stats().free_slots, 1u);
  ASSERT_EQ(state_of(*m).resident[detail::kNewLast], 2u);  // the two tails
  ASSERT_EQ(state_of(*m).resident[detail::kNewDeep], 6u);  // a0..a2, b0..b2
  // C stores 3 blocks in 1 free slot: two victims, both tails, although a0..a3 are older.
  const Served sc = serve(*m, c);
  ASSERT_TRUE(sc.out);
  EXPECT_EQ(sc.prefix, 1u);
  EXPECT_EQ(sc.out->block_hashes_evicted, (Hashes{a.back(), b.back()}));
  EXPECT_EQ(sc.out->block_hashes_to_store, Hashes(c.begin() + 1, c.end()));
  for (std::size_t i = 1; i + 1 < a.size(); ++i)
    EXPECT_TRUE(resident(*m, a[i])) << "deep block " << a[i];
  expect_invariants(*m);

  // LRU with the same calls takes the two oldest: a0 and a1.
  auto lru = make_lru_manager(12, 64);
  serve(*lru, a);
  serve(*lru, b);
  const Served lc = serve(*lru, c);
  ASSERT_TRUE(lc.out);
  EXPECT_EQ(lc.out->block_hashes_evicted, (Hashes{a[1], a[2]}));
}

TEST(DensityPolicy, DeclinesALowDensityBlockWhenTheCacheIsFullOfDenseOnes) {
  for (bool admission : {true, false}) {
    SCOPED_TRACE(admission ? "admission on" : "admission off");
    auto m = density(16, {.admission = admission});
    ASSERT_NO_FATAL_FAILURE(train(*m));
    // 15 dense blocks: stored without a touch, they are classed as new deep blocks.
    Hashes fillers;
    for (std::size_t i = 0; i < 15; ++i)
      fillers.push_back(fresh(100 + i));
    ASSERT_EQ(store(*m, fillers).size(), 15u);
    const DensityState learned = state_of(*m);
    ASSERT_EQ(learned.resident[detail::kNewDeep], 15u);
    const auto& d = learned.density_at_0;
    // Every resident block is younger than 16 references (bin 0) below: its density is
    // density_at_0 of its class, which is far above a tail's.
    ASSERT_LT(d[detail::kNewLast], d[detail::kNewDeep] / 10);

    // [y, z]: y (second to last, dense) takes the free slot; z (a tail) would evict a filler.
    const ManagerStats before = m->stats();
    const Served s1           = serve(*m, {fresh(200), fresh(201)});
    ASSERT_TRUE(s1.out);
    ManagerStats after = m->stats();
    if (admission) {
      EXPECT_EQ(s1.out->block_hashes_to_store, (Hashes{fresh(200)}));
      EXPECT_TRUE(s1.out->block_hashes_evicted.empty());
      EXPECT_EQ(after.stores_declined, before.stores_declined + 1);
      EXPECT_EQ(after.stores, before.stores + 1);
      EXPECT_EQ(after.evictions, before.evictions);
      EXPECT_FALSE(resident(*m, fresh(201)));
    } else {
      EXPECT_EQ(s1.out->block_hashes_to_store, (Hashes{fresh(200), fresh(201)}));
      EXPECT_EQ(s1.out->block_hashes_evicted.size(), 1u);
      EXPECT_EQ(after.stores_declined, before.stores_declined);
      EXPECT_EQ(after.evictions, before.evictions + 1);
    }
    expect_invariants(*m);

    // The cache is full now; a lone new block is a tail (kNewLast).
    const ManagerStats full = m->stats();
    ASSERT_EQ(full.free_slots, 0u);
    (void)m->take_events();
    const Served s2 = serve(*m, {fresh(300)});
    ASSERT_TRUE(s2.out);
    after = m->stats();
    if (admission) {
      EXPECT_TRUE(s2.out->block_hashes_to_store.empty());
      EXPECT_TRUE(s2.out->block_hashes_evicted.empty());
      EXPECT_TRUE(s2.out->store_spec.block_ids.empty());
      EXPECT_EQ(after.stores_declined, full.stores_declined + 1);
      EXPECT_EQ(after.evictions, full.evictions);
      EXPECT_EQ(after.store_rejections, full.store_rejections);
      EXPECT_EQ(after.ready, full.ready);
      for (BlockHash f : fillers)
        EXPECT_TRUE(resident(*m, f)) << f;
      EXPECT_TRUE(m->take_events().empty());  // nothing stored, nothing removed
    } else {
      EXPECT_EQ(s2.out->block_hashes_to_store, (Hashes{fresh(300)}));
      EXPECT_EQ(s2.out->block_hashes_evicted.size(), 1u);
      EXPECT_EQ(after.stores_declined, full.stores_declined);
      EXPECT_EQ(after.evictions, full.evictions + 1);
      EXPECT_TRUE(resident(*m, fresh(300)));
    }
    expect_invariants(*m);
  }
}

TEST(DensityPolicy, ARequestsChainIsCutFromItsTail) {
  // Before any estimate every class has the same density, so victims go by stamp, then class
  // (kNewLast, kNewSecondLast, then the deep ones). The deep blocks of one store share a stamp;
  // the deepest must leave first so the next turn still finds the longest prefix.
  auto m           = density(5, {.admission = false});
  const Hashes one = {11, 12, 13, 14, 15};  // 11-13 kNewDeep, 14 kNewSecondLast, 15 kNewLast
  ASSERT_TRUE(serve(*m, one).out);
  ASSERT_EQ(m->stats().ready, 5u);
  const Served two = serve(*m, {21, 22, 23});
  ASSERT_TRUE(two.out);
  EXPECT_EQ(two.out->block_hashes_evicted, (Hashes{15, 14, 13}));
  EXPECT_EQ(m->lookup(one), 2u);  // 11 and 12: the prefix survives whole
  expect_invariants(*m);
}

TEST(DensityPolicy, BlocksOfTheLastTouchAreEvictedLast) {
  // Admission off: every new block is stored, so the victims show the order alone. With a
  // rebase period of 64 the clock is rebased in the middle of the third turn's touch (after
  // its head and first two deep blocks), which must not cost them their protection.
  for (std::uint32_t period : {1U << 30, 64U}) {
    SCOPED_TRACE("rebase period " + std::to_string(period));
    auto m = density(16, {.admission = false}, period);
    ASSERT_NO_FATAL_FAILURE(train(*m));
    // Align the clock (touches of unrelated hashes; nothing is stored): 12 references of the
    // first two turns, 9 ticks for the fillers (stored without a touch: one tick each), then
    // the third turn's touch crosses a multiple of 64 at its 3rd hash.
    for (std::size_t k = 0; (state_of(*m).references + 12 + 9 + 3) % 64 != 0; ++k)
      m->touch(Hashes{fresh(900 + k)});
    const std::size_t conversation = 100'000;  // not one of the training's
    serve(*m, turn(conversation, 0));          // head, d0..d3, tail 0: 6 blocks
    serve(*m, turn(conversation, 1));          // tail 1: 7 blocks
    Hashes fillers;
    for (std::size_t i = 0; i < 9; ++i)
      fillers.push_back(fresh(400 + i));
    ASSERT_EQ(store(*m, fillers).size(), 9u);
    ASSERT_EQ(m->stats().free_slots, 0u);

    // Third turn with 4 new blocks instead of a tail: the deep blocks come back as kSeenTwice,
    // a class the training taught is never reused, so by density alone they would go first.
    const Hashes first = turn(conversation, 0);
    Hashes third(first.begin(), first.end() - 1);
    const Hashes touched = third;  // head and d0..d3
    for (std::size_t i = 0; i < 4; ++i)
      third.push_back(fresh(500 + i));
    const Served s = serve(*m, third);
    ASSERT_TRUE(s.out);
    ASSERT_EQ(s.prefix, 5u);
    const DensityState st = state_of(*m);
    ASSERT_EQ(st.references % 64, 9u - 3u);  // the touch crossed a multiple of 64
    ASSERT_EQ(st.resident[detail::kSeenTwice], 4u);
    ASSERT_LT(st.density_at_0[detail::kSeenTwice], st.density_at_0[detail::kNewDeep] / 10);
    ASSERT_EQ(s.out->block_hashes_evicted.size(), 4u);
    // The two tails (kNewLast, lowest) then two fillers; none of the request's own blocks.
    EXPECT_EQ(
        s.out->block_hashes_evicted,
        (Hashes{
            turn(conversation, 0).back(), turn(conversation, 1).back(), fillers[0], fillers[1]}));
    for (BlockHash h : touched)
      EXPECT_TRUE(resident(*m, h)) << h;
    expect_invariants(*m);

    // Still the last touch: 13 more blocks take the 7 other fillers first, then 6 of the
    // request's 9 blocks (its prefix and its new blocks).
    Hashes more;
    for (std::size_t i = 0; i < 13; ++i)
      more.push_back(fresh(600 + i));
    const auto out = m->prepare_store(more);
    ASSERT_TRUE(out);
    ASSERT_EQ(out->block_hashes_evicted.size(), 13u);
    const Hashes first7(out->block_hashes_evicted.begin(), out->block_hashes_evicted.begin() + 7);
    EXPECT_EQ(std::set<BlockHash>(first7.begin(), first7.end()),
              std::set<BlockHash>(fillers.begin() + 2, fillers.end()));
    for (std::size_t i = 7; i < 13; ++i) {
      const BlockHash h = out->block_hashes_evicted[i];
      EXPECT_TRUE(contains(third, h)) << h << " is not one of the last request's blocks";
    }
    m->complete_store(out->block_hashes_to_store);
    expect_invariants(*m);
  }
}

TEST(DensityPolicy, NothingEvictableRefusesTheWholeStoreAndDeclinesNothing) {
  auto m = density(16);
  ASSERT_NO_FATAL_FAILURE(train(*m));
  Hashes all;
  for (std::size_t i = 0; i < 16; ++i)
    all.push_back(fresh(700 + i));
  ASSERT_EQ(store(*m, all).size(), 16u);
  // Pin all but the last; it is the one evictable block.
  const Hashes pinned(all.begin(), all.end() - 1);
  (void)m->prepare_load(pinned);

  // Two dense new blocks (stored without a touch: kNewDeep) need two victims; one exists.
  // (An unrelated touch first, so that no block counts as the current request's.)
  m->touch(Hashes{fresh(799)});
  ManagerStats before = m->stats();
  EXPECT_FALSE(m->prepare_store(Hashes{fresh(800), fresh(801)}));
  ManagerStats after = m->stats();
  EXPECT_EQ(after.store_rejections, before.store_rejections + 1);
  EXPECT_EQ(after.stores_declined, before.stores_declined);
  EXPECT_EQ(after.evictions, before.evictions);
  EXPECT_EQ(after.stores, before.stores);
  EXPECT_EQ(gauges(after), gauges(before));
  expect_invariants(*m);

  // Everything pinned: even a tail that admission would decline is not counted as declined.
  (void)m->prepare_load(Hashes{all.back()});
  m->touch(Hashes{fresh(802)});
  before = m->stats();
  EXPECT_FALSE(m->prepare_store(Hashes{fresh(802)}));
  after = m->stats();
  EXPECT_EQ(after.store_rejections, before.store_rejections + 1);
  EXPECT_EQ(after.stores_declined, before.stores_declined);
  EXPECT_EQ(gauges(after), gauges(before));
  expect_invariants(*m);

  // Released, the same store goes through: each new block is stored (evicting one block) or
  // declined by admission, and nothing is refused.
  m->complete_load(all);  // one load reference each
  expect_invariants(*m);
  before         = m->stats();
  const auto out = m->prepare_store(Hashes{fresh(800), fresh(801)});
  ASSERT_TRUE(out);
  after = m->stats();
  EXPECT_EQ(out->block_hashes_to_store.size() + (after.stores_declined - before.stores_declined),
            2u);
  EXPECT_EQ(out->block_hashes_evicted.size(), out->block_hashes_to_store.size());
  EXPECT_EQ(after.store_rejections, before.store_rejections);
  m->complete_store(out->block_hashes_to_store);
  expect_invariants(*m);
}

TEST(DensityPolicy, ClockRebaseKeepsInvariantsAndRecencyWithinAClass) {
  constexpr std::uint32_t kPeriod = 64;
  constexpr std::size_t n         = 24;
  {
    auto m = density(n, {}, kPeriod);
    std::mt19937_64 rng{2026};
    std::deque<Hashes> pins;  // loads in flight
    for (int step = 0; step < 4000; ++step) {
      // Requests over 300 hashes: a shared head, prefixes that repeat, random tails.
      Hashes request{rng() % 4};
      const std::size_t len    = 1 + rng() % 12;
      const std::uint64_t base = rng() % 40;
      for (std::size_t i = 1; i < len; ++i)
        request.push_back(rng() % 3 == 0 ? 100 + rng() % 200 : 10 + (base + i) % 90);
      const std::size_t prefix = m->lookup(request).value_or(0);
      m->touch(request);
      const std::span<const BlockHash> all{request};
      if (prefix > 0) {
        (void)m->prepare_load(all.first(prefix));
        if (rng() % 8 == 0) {
          pins.emplace_back(request.begin(), request.begin() + prefix);
        } else {
          m->complete_load(all.first(prefix));
        }
      }
      if (auto out = m->prepare_store(all.subspan(prefix))) {
        m->complete_store(out->block_hashes_to_store, rng() % 16 != 0);
      }
      if (pins.size() > 3 || (!pins.empty() && rng() % 4 == 0)) {
        m->complete_load(pins.front());
        pins.pop_front();
      }
      ASSERT_NO_THROW(check_core(*m)) << "step " << step;
    }
    const DensityState s = state_of(*m);
    EXPECT_GT(s.references / kPeriod, 200u) << "the clock should have been rebased many times";
    EXPECT_GT(m->stats().evictions, 1000u);
    EXPECT_GT(m->stats().stores_declined, 0u);
  }
  {
    // B is touched, pinned, and left untouched for ~900 references (about 7 rebases, so its
    // stamp is clamped); then A, of the same class, is touched 8 references before the end.
    // With every other block pinned, one eviction must take B and keep A.
    auto m = density(n, {.admission = false}, kPeriod);
    std::set<BlockHash> in_cache;
    const auto track = [&](const Served& s) {
      ASSERT_TRUE(s.out);
      for (BlockHash h : s.out->block_hashes_evicted)
        in_cache.erase(h);
      in_cache.insert(s.out->block_hashes_to_store.begin(), s.out->block_hashes_to_store.end());
    };
    std::uint64_t next = fresh(1000);
    const auto advance = [&](int requests) {  // two-block requests: never kNewDeep
      for (int i = 0; i < requests; ++i) {
        track(serve(*m, {next, next + 1}));
        next += 2;
        ASSERT_NO_THROW(check_core(*m));
      }
    };
    const BlockHash b = fresh(1);
    ASSERT_NO_FATAL_FAILURE(
        track(serve(*m, {b, fresh(2), fresh(3)})));  // b: first seen, 2 from the end: kNewDeep
    (void)m->prepare_load(Hashes{b});
    const std::uint64_t b_touched = state_of(*m).references;
    ASSERT_NO_FATAL_FAILURE(advance(450));
    const BlockHash a = fresh(4);
    ASSERT_NO_FATAL_FAILURE(track(serve(*m, {a, fresh(5), fresh(6)})));
    (void)m->prepare_load(Hashes{a});
    const std::uint64_t a_touched = state_of(*m).references;
    ASSERT_NO_FATAL_FAILURE(advance(4));
    EXPECT_GE(a_touched - b_touched, 6 * std::uint64_t{kPeriod});
    ASSERT_EQ(state_of(*m).resident[detail::kNewDeep], 2u) << "a and b should share a class";
    ASSERT_TRUE(in_cache.count(a) && in_cache.count(b));
    ASSERT_EQ(in_cache.size(), n);
    m->complete_load(Hashes{a});
    m->complete_load(Hashes{b});
    Hashes others;
    for (BlockHash h : in_cache)
      if (h != a && h != b) others.push_back(h);
    (void)m->prepare_load(others);
    const auto out = m->prepare_store(Hashes{next});
    ASSERT_TRUE(out);
    EXPECT_EQ(out->block_hashes_evicted, (Hashes{b}));
    m->complete_store(out->block_hashes_to_store);
    EXPECT_TRUE(resident(*m, a));
    m->complete_load(others);
    expect_invariants(*m);
  }
}

TEST(DensityPolicy, FactorySpecBuildsAndBadOptionsNameTheProblem) {
  auto m     = make_manager("density:horizon=8,admission=0", 1000, 64);
  auto* core = dynamic_cast<CoreManager*>(m.get());
  ASSERT_NE(core, nullptr);
  EXPECT_STREQ(core->policy().name(), "density");
  ASSERT_TRUE(detail::density_state(core->policy()));
  EXPECT_EQ(detail::density_state(core->policy())->horizon, 8000u);  // 8 x 1000 references
  EXPECT_EQ(store(*m, {1, 2, 3}).size(), 3u);
  EXPECT_EQ(m->lookup(Hashes{1, 2, 3}), 3u);
  expect_invariants(*m);
  EXPECT_EQ(
      detail::density_state(dynamic_cast<CoreManager&>(*make_manager("density", 100, 64)).policy())
          ->horizon,
      4096u);  // 16 x 100 is below the floor

  // admission=0 through the spec: the same workload, no declines; with it, declines.
  std::uint64_t declined[2] = {0, 0};
  for (int on = 0; on < 2; ++on) {
    auto d = make_manager(on ? "density:horizon=8" : "density:horizon=8,admission=0", 16, 64);
    for (std::size_t s = 0; s < 1200; ++s) {
      serve(*d, turn(s, 0));
      if (s >= 3) serve(*d, turn(s - 3, 1));
    }
    expect_invariants(*d);
    declined[on] = d->stats().stores_declined;
  }
  EXPECT_EQ(declined[0], 0u);
  EXPECT_GT(declined[1], 0u);

  std::string e = spec_error("density:horizon=0");
  expect_contains(e, "horizon");
  expect_contains(e, "got '0'");
  expect_contains(e, "'density:horizon=0'");
  e = spec_error("density:horizon=2000");
  expect_contains(e, "[1, 1024]");
  expect_contains(e, "got '2000'");
  e = spec_error("density:horizon=abc");
  expect_contains(e, "'horizon' needs a number, got 'abc'");
  expect_contains(e, "'density:horizon=abc'");
  e = spec_error("density:admission=2");
  expect_contains(e, "'admission' needs 0 or 1, got '2'");
  e = spec_error("density:bogus=1");
  expect_contains(e, "unknown option 'bogus' for 'density'");
  expect_contains(e, "horizon=H");
  EXPECT_THROW((void)make_density_manager(16, 64, {.horizon = std::nan("")}), std::logic_error);
  EXPECT_THROW((void)make_density_manager(0, 64), std::logic_error);
}

TEST(DensityPolicy, MetadataPerSlotStaysSmall) {
  constexpr std::size_t n = 100'000;
  auto m                  = make_manager("density", n, 64);
  const ManagerStats s    = m->stats();
  EXPECT_GT(s.sketch_bytes, 0u);
  ASSERT_GT(s.metadata_bytes, s.sketch_bytes);
  const double per_slot = double(s.metadata_bytes - s.sketch_bytes) / double(n);
  EXPECT_LE(per_slot, 64.0) << "metadata " << s.metadata_bytes << " sketch " << s.sketch_bytes;
  // Beside the core's per-slot records (LRU's footprint), the policy adds about 13 bytes.
  auto lru                  = make_manager("lru", n, 64);
  const double lru_per_slot = double(lru->stats().metadata_bytes) / double(n);
  EXPECT_LE(per_slot - lru_per_slot, 16.0) << "lru " << lru_per_slot << " density " << per_slot;
  // The footprint does not grow with use (past the first request's scratch).
  serve(*m, {7, 8, 9, 10});
  const std::size_t before = m->stats().metadata_bytes;
  EXPECT_LT(before - s.metadata_bytes, 1024u);
  for (std::size_t r = 0; r < 2000; ++r)
    serve(*m, {r % 7, 1000 + r, 2000 + r, 3000 + r});
  EXPECT_EQ(m->stats().metadata_bytes, before);
}

// ---- 5. The Mooncake trace -----------------------------------------------------------------

TEST(DensityReplay, MooncakeHitRatesBeatLru) {
  const replay::Trace trace =
      replay::load_trace(KVOFFLOAD_SOURCE_DIR "/data/traces/mooncake/conversation_trace.jsonl");
  ASSERT_EQ(trace.distinct_ids, 182790u);
  for (std::size_t capacity : {1828, 9140, 18279}) {
    auto density_manager         = make_manager("density", capacity, 1);
    auto lru_manager             = make_manager("lru", capacity, 1);
    const replay::ReplayResult d = replay::replay(trace, *density_manager);
    const replay::ReplayResult l = replay::replay(trace, *lru_manager);
    RecordProperty("density_" + std::to_string(capacity), std::to_string(d.hit_rate()));
    RecordProperty("lru_" + std::to_string(capacity), std::to_string(l.hit_rate()));
    std::printf("capacity %zu: density %.4f (prefix %.4f), lru %.4f (prefix %.4f)\n",
                capacity,
                d.hit_rate(),
                d.prefix_hit_rate(),
                l.hit_rate(),
                l.prefix_hit_rate());
    EXPECT_GT(d.hit_rate(), l.hit_rate()) << "capacity " << capacity;
    if (capacity == 1828) {
      EXPECT_GE(d.hit_rate(), 0.10);
    }
    expect_invariants(*density_manager);
  }
}

}  // namespace
}  // namespace kvoffload::testing
