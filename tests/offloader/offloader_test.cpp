// The Offloader: a manager and a transfer engine kept in step. A scripted engine (jobs finish
// or fail when the test says, submits can be rejected) pins down the state rules; the host
// engine checks that bytes make the round trip.
#include "policy/test_util.hpp"
#include "transfer/layouts.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/metrics.hpp>
#include <kvoffload/offloader.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace kvoffload {
namespace {

using transfer::Direction;
using transfer::HostSlots;
using transfer::JobId;
using transfer::JobState;
using transfer::JobStatus;
using transfer::KvLayout;
using transfer::TransferEngine;
using transfer::TransferRequest;
using Outcome = StoreTicket::Outcome;

using testing::expect_contains;

// Jobs stay pending until finish(); submit() throws while `reject` is set. Its ids start at
// 1001, far from the Offloader's own job ids, so a test cannot pass by confusing the two.
class ScriptedEngine final : public TransferEngine {
 public:
  ScriptedEngine(const KvLayout& layout, const HostSlots& host) : layout_{layout}, host_{host} {}

  JobId submit(const TransferRequest& request) override {
    KVO_EXPECTS(!reject, "scripted rejection");
    requests.push_back(request);
    states_[next_] = {JobState::kPending, transfer::Method::kStaged, ""};
    submitted_.push_back(next_);
    return next_++;
  }
  JobStatus poll(JobId id) override {
    auto it = states_.find(id);
    KVO_EXPECTS(it != states_.end(), "job " + std::to_string(id) + " is unknown or retired");
    JobStatus status = it->second;
    if (status.state != JobState::kPending) states_.erase(it);
    return status;
  }
  JobStatus wait(JobId id) override {
    auto it = states_.find(id);
    KVO_EXPECTS(it != states_.end(), "job " + std::to_string(id) + " is unknown or retired");
    if (it->second.state == JobState::kPending) it->second.state = JobState::kDone;
    if (wait_counter != nullptr) ++*wait_counter;
    return poll(id);
  }
  // One made-up handle per job (its id), so forwarding can be checked; never dereferenced.
  std::vector<cudaEvent_t> completion_events(JobId id) override {
    KVO_EXPECTS(states_.contains(id), "job " + std::to_string(id) + " is unknown or retired");
    return {reinterpret_cast<cudaEvent_t>(static_cast<std::uintptr_t>(id))};
  }
  bool is_host_fallback() const noexcept override { return true; }
  std::string description() const override { return "scripted"; }
  const KvLayout& layout() const noexcept override { return layout_; }
  const HostSlots& host_slots() const noexcept override { return host_; }

  /// The engine's id of the job submitted last.
  [[nodiscard]] JobId last() const { return submitted_.back(); }
  void finish_last(bool ok) { finish(last(), ok); }
  void finish(JobId id, bool ok) {
    states_.at(id) = {ok ? JobState::kDone : JobState::kFailed,
                      transfer::Method::kStaged,
                      ok ? "" : "scripted failure"};
  }

  bool reject{false};
  std::vector<TransferRequest> requests;
  int* wait_counter{nullptr};

 private:
  KvLayout layout_;
  HostSlots host_;
  std::map<JobId, JobStatus> states_;
  std::vector<JobId> submitted_;
  JobId next_{1001};
};

// An LRU manager whose next complete_store throws (without changing anything) when armed.
class FlakyManager final : public OffloadingManager {
 public:
  explicit FlakyManager(std::size_t slots) : inner_{make_manager("lru", slots, 0)} {}
  std::optional<std::size_t> lookup(std::span<const BlockHash> h) override {
    return inner_->lookup(h);
  }
  LoadStoreSpec prepare_load(std::span<const BlockHash> h) override {
    return inner_->prepare_load(h);
  }
  void touch(std::span<const BlockHash> h) override { inner_->touch(h); }
  void complete_load(std::span<const BlockHash> h) override { inner_->complete_load(h); }
  std::optional<PrepareStoreOutput> prepare_store(std::span<const BlockHash> h) override {
    return inner_->prepare_store(h);
  }
  void complete_store(std::span<const BlockHash> h, bool success) override {
    if (std::exchange(armed, false)) throw std::runtime_error("flaky complete_store");
    inner_->complete_store(h, success);
  }
  std::vector<OffloadingEvent> take_events() override { return inner_->take_events(); }
  ManagerStats stats() const override { return inner_->stats(); }
  void clear() override { inner_->clear(); }

  bool armed{false};

 private:
  std::unique_ptr<OffloadingManager> inner_;
};

constexpr std::size_t kGpuBlocks = 32;

// A two-layer FlashAttention-style cache of 656-byte pages over a host arena.
struct Cache {
  std::vector<std::byte> arena;
  std::vector<std::byte> host;
  HostSlots slots;
  std::unique_ptr<KvLayout> layout;

  Cache(std::size_t host_slots, std::size_t k) {
    const auto c = transfer::testing::layout_cases(2, 656, kGpuBlocks).front();
    arena.resize(c.arena_bytes);
    layout = std::make_unique<KvLayout>(c.build(arena.data()), kGpuBlocks, k);
    host.resize(host_slots * layout->host_slot_bytes());
    slots = {host.data(), layout->host_slot_bytes(), host_slots};
  }
};

struct Scripted {
  Cache cache;
  ScriptedEngine* engine{nullptr};
  std::unique_ptr<Offloader> offloader;

  explicit Scripted(std::size_t slots, std::string_view spec = "lru", std::size_t k = 1)
      : cache{slots, k} {
    auto owned = std::make_unique<ScriptedEngine>(*cache.layout, cache.slots);
    engine     = owned.get();
    offloader  = std::make_unique<Offloader>(make_manager(spec, slots, 0), std::move(owned));
  }
  ManagerStats stats() const { return offloader->manager().stats(); }
};

std::vector<BlockId> ids(std::initializer_list<BlockId> list) {
  return list;
}

TEST(Offloader, StoredBlocksAreNoHitUntilTheirJobIsReported) {
  Scripted s{8};
  const std::vector<BlockHash> hashes{11, 12, 13};
  const StoreTicket ticket = s.offloader->store(hashes, ids({5, 6, 7}));
  ASSERT_EQ(ticket.outcome, Outcome::kSubmitted);
  EXPECT_EQ(ticket.stored, hashes);
  ASSERT_EQ(s.engine->requests.size(), 1U);
  EXPECT_EQ(s.engine->requests[0].direction, Direction::kStore);
  EXPECT_EQ(s.engine->requests[0].gpu_blocks, ids({5, 6, 7}));
  EXPECT_EQ(s.offloader->lookup(hashes), 0U);
  EXPECT_EQ(s.stats().pending, 3U);

  s.engine->finish_last(true);
  EXPECT_EQ(s.offloader->lookup(hashes), 0U) << "confirmed only when poll() reports it";
  const std::vector<FinishedJob> done = s.offloader->poll();
  ASSERT_EQ(done.size(), 1U);
  EXPECT_TRUE(done[0].ok);
  EXPECT_EQ(done[0].job, ticket.job);
  EXPECT_EQ(done[0].hashes, hashes);
  EXPECT_EQ(done[0].gpu_blocks, ids({5, 6, 7}));
  EXPECT_EQ(s.offloader->lookup(hashes), 3U);
  EXPECT_EQ(s.offloader->jobs_in_flight(), 0U);
  EXPECT_TRUE(s.offloader->poll().empty()) << "a job is reported once";
}

TEST(Offloader, JobLatenciesAreCountedPerDirectionFailuresIncluded) {
  Scripted s{8};
  const StoreTicket first = s.offloader->store(std::vector<BlockHash>{1, 2}, ids({0, 1}));
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  s.engine->finish_last(true);
  ASSERT_EQ(s.offloader->poll().size(), 1U);
  (void)s.offloader->store(std::vector<BlockHash>{3}, ids({2}));
  s.engine->finish_last(false);
  (void)s.offloader->poll();
  const auto load = s.offloader->load(std::vector<BlockHash>{1}, ids({5}));
  ASSERT_TRUE(load);
  (void)s.offloader->wait(*load);

  const OffloaderStats stats = s.offloader->stats();
  EXPECT_EQ(stats.store_latency.count, 2U);
  EXPECT_EQ(stats.load_latency.count, 1U);
  EXPECT_GE(stats.store_latency.sum_seconds, 0.003);
  std::uint64_t below_2ms = 0, total = 0;  // the first store took 3 ms or more
  for (std::size_t b = 0; b < stats.store_latency.buckets.size(); ++b) {
    total += stats.store_latency.buckets[b];
    if (b < LatencyHistogram::kBoundsSeconds.size() && LatencyHistogram::kBoundsSeconds[b] < 0.002)
      below_2ms += stats.store_latency.buckets[b];
  }
  EXPECT_EQ(total, 2U);
  EXPECT_LE(below_2ms, 1U);

  std::ostringstream out;
  const ManagerMetrics metrics[] = {collect_metrics(*s.offloader, "kv")};
  write_prometheus(out, metrics);
  const std::string text = out.str();
  expect_contains(text, "# TYPE kvoffload_offloader_job_latency_seconds histogram\n");
  expect_contains(
      text, "kvoffload_offloader_job_latency_seconds_count{manager=\"kv\",job=\"store\"} 2\n");
  expect_contains(text,
                  "kvoffload_offloader_job_latency_seconds_bucket{manager=\"kv\",job=\"load\","
                  "le=\"+Inf\"} 1\n");
  expect_contains(text, "job=\"store\",le=\"30\"} 2\n");
  expect_contains(text, "job=\"store\",le=\"0.0005\"} ");  // bounds in fixed notation
  expect_contains(text,
                  "kvoffload_offloader_bytes_stored_total{manager=\"kv\"} " +
                      std::to_string(2 * s.cache.layout->host_slot_bytes()) + "\n");
  expect_contains(text, "kvoffload_hits_total{manager=\"kv\"}");  // the manager's families too
  (void)first;
}

TEST(Offloader, AFailedStoreDropsItsBlocksAndSaysWhy) {
  Scripted s{8};
  const std::vector<BlockHash> hashes{21, 22};
  const StoreTicket ticket = s.offloader->store(hashes, ids({0, 1}));
  s.engine->finish_last(false);
  const std::vector<FinishedJob> done = s.offloader->poll();
  ASSERT_EQ(done.size(), 1U);
  EXPECT_FALSE(done[0].ok);
  expect_contains(done[0].error, "scripted failure");
  EXPECT_EQ(s.offloader->lookup(hashes), 0U);
  const ManagerStats st = s.stats();
  EXPECT_EQ(st.stores_failed, 2U);
  EXPECT_EQ(st.pending, 0U);
  EXPECT_EQ(st.free_slots, 8U);
}

TEST(Offloader, LoadedBlocksStayPinnedUntilTheLoadIsReported) {
  Scripted s{2};
  const std::vector<BlockHash> kept{1, 2};
  (void)s.offloader->store(kept, ids({0, 1}));
  s.engine->finish_last(true);
  ASSERT_EQ(s.offloader->poll().size(), 1U);

  const JobId load           = s.offloader->load(kept, ids({9, 10})).value();
  const JobId load_in_engine = s.engine->last();
  EXPECT_EQ(s.engine->requests.back().direction, Direction::kLoad);
  EXPECT_EQ(s.engine->requests.back().gpu_blocks, ids({9, 10}));
  EXPECT_EQ(s.stats().pinned, 2U);
  // The host slots are being read: a store cannot evict them.
  EXPECT_EQ(s.offloader->store(std::vector<BlockHash>{3}, ids({4})).outcome, Outcome::kNoRoom);
  EXPECT_EQ(s.engine->requests.size(), 2U) << "no job for a store without room";

  s.engine->finish(load_in_engine, true);
  const std::vector<FinishedJob> done = s.offloader->poll();
  ASSERT_EQ(done.size(), 1U);
  EXPECT_EQ(done[0].job, load);
  EXPECT_EQ(done[0].direction, Direction::kLoad);
  EXPECT_EQ(s.stats().pinned, 0U);
  const StoreTicket now = s.offloader->store(std::vector<BlockHash>{3}, ids({4}));
  EXPECT_EQ(now.outcome, Outcome::kSubmitted);
  EXPECT_EQ(now.evicted.size(), 1U);
}

TEST(Offloader, AFailedLoadStillUnpins) {
  Scripted s{4};
  const std::vector<BlockHash> hashes{7};
  (void)s.offloader->store(hashes, ids({0}));
  s.engine->finish_last(true);
  (void)s.offloader->poll();
  const JobId load = s.offloader->load(hashes, ids({3})).value();
  s.engine->finish_last(false);
  const FinishedJob done = s.offloader->wait(load);
  EXPECT_FALSE(done.ok);
  EXPECT_EQ(s.stats().pinned, 0U);
  EXPECT_EQ(s.offloader->lookup(hashes), 1U) << "the host copy is still good";
}

TEST(Offloader, ARejectedStoreLeavesNothingPending) {
  Scripted s{4};
  s.engine->reject = true;
  const std::vector<BlockHash> hashes{1, 2};
  EXPECT_THROW((void)s.offloader->store(hashes, ids({0, 1})), logic_error);
  ManagerStats st = s.stats();
  EXPECT_EQ(st.pending, 0U);
  EXPECT_EQ(st.free_slots, 4U);
  EXPECT_EQ(s.offloader->jobs_in_flight(), 0U);
  s.engine->reject = false;
  EXPECT_EQ(s.offloader->store(hashes, ids({0, 1})).outcome, Outcome::kSubmitted);
}

TEST(Offloader, ARejectedLoadDropsItsPins) {
  Scripted s{4};
  const std::vector<BlockHash> hashes{1, 2};
  (void)s.offloader->store(hashes, ids({0, 1}));
  s.engine->finish_last(true);
  (void)s.offloader->poll();
  s.engine->reject = true;
  EXPECT_THROW((void)s.offloader->load(hashes, ids({2, 3})), logic_error);
  EXPECT_EQ(s.stats().pinned, 0U);
  EXPECT_EQ(s.offloader->jobs_in_flight(), 0U);
}

TEST(Offloader, GpuBlockCountsAreCheckedBeforeTheManagerIsAsked) {
  Scripted s{4, "lru", /*k=*/2};
  const std::vector<BlockHash> hashes{1, 2};
  try {
    (void)s.offloader->store(hashes, ids({0, 1, 2}));
    FAIL() << "a store with 3 GPU blocks for 2 hashes of 2 blocks each was accepted";
  } catch (const logic_error& e) {
    expect_contains(e.what(), "2 hashes needs 4 GPU blocks (2 per hash), got 3");
  }
  EXPECT_EQ(s.stats().stores, 0U);
  EXPECT_THROW((void)s.offloader->load(hashes, ids({0})), logic_error);
  EXPECT_TRUE(s.engine->requests.empty());
}

TEST(Offloader, LoadingABlockThatIsNotReadyNamesIt) {
  Scripted s{4};
  (void)s.offloader->store(std::vector<BlockHash>{5}, ids({0}));  // pending
  try {
    (void)s.offloader->load(std::vector<BlockHash>{5}, ids({1}));
    FAIL() << "a pending block was loaded";
  } catch (const logic_error& e) {
    expect_contains(e.what(), "5");
  }
  EXPECT_THROW((void)s.offloader->load(std::vector<BlockHash>{6}, ids({1})), logic_error);
  EXPECT_EQ(s.engine->requests.size(), 1U);
}

TEST(Offloader, EachStoredHashTakesItsOwnGpuBlocks) {
  // k = 2; hash 2 is present already and 1 is repeated: the job copies 1 (its first
  // position's blocks) and 3.
  Scripted s{8, "lru", /*k=*/2};
  (void)s.offloader->store(std::vector<BlockHash>{2}, ids({20, 21}));
  s.engine->finish_last(true);
  (void)s.offloader->poll();
  const std::vector<BlockHash> hashes{1, 2, 1, 3};
  const StoreTicket t = s.offloader->store(hashes, ids({10, 11, 12, 13, 14, 15, 16, 17}));
  EXPECT_EQ(t.stored, (std::vector<BlockHash>{1, 3}));
  EXPECT_EQ(s.engine->requests.back().gpu_blocks, ids({10, 11, 16, 17}));
  EXPECT_EQ(s.engine->requests.back().host_slots.size(), 2U);
}

TEST(Offloader, AdmissionDeclinesAreNotCopied) {
  // The reuse filter stores a hash on its second lookup: only 4 qualifies.
  Scripted s{8, "lru+filter:threshold=2"};
  (void)s.offloader->lookup(std::vector<BlockHash>{4});
  (void)s.offloader->lookup(std::vector<BlockHash>{3, 4});
  const StoreTicket t = s.offloader->store(std::vector<BlockHash>{3, 4}, ids({0, 1}));
  ASSERT_EQ(t.outcome, Outcome::kSubmitted);
  EXPECT_EQ(t.stored, (std::vector<BlockHash>{4}));
  EXPECT_EQ(s.engine->requests.back().gpu_blocks, ids({1}));
  const StoreTicket none = s.offloader->store(std::vector<BlockHash>{9}, ids({2}));
  EXPECT_EQ(none.outcome, Outcome::kNothingToStore);
  EXPECT_EQ(s.engine->requests.size(), 1U);
}

TEST(Offloader, PresentBlocksNeedNoJob) {
  Scripted s{4};
  const std::vector<BlockHash> hashes{1};
  (void)s.offloader->store(hashes, ids({0}));
  const StoreTicket again = s.offloader->store(hashes, ids({0}));  // pending counts as present
  EXPECT_EQ(again.outcome, Outcome::kNothingToStore);
  EXPECT_EQ(s.engine->requests.size(), 1U);
}

TEST(Offloader, JobsAreReportedOnceOldestFirst) {
  Scripted s{8};
  const JobId a        = s.offloader->store(std::vector<BlockHash>{1}, ids({0})).job;
  const JobId a_engine = s.engine->last();
  const JobId b        = s.offloader->store(std::vector<BlockHash>{2}, ids({1})).job;
  const JobId b_engine = s.engine->last();
  const JobId c        = s.offloader->store(std::vector<BlockHash>{3}, ids({2})).job;
  s.engine->finish_last(true);  // c
  s.engine->finish(a_engine, true);
  const std::vector<FinishedJob> done = s.offloader->poll();
  ASSERT_EQ(done.size(), 2U);
  EXPECT_EQ(done[0].job, a);
  EXPECT_EQ(done[1].job, c);
  EXPECT_THROW((void)s.offloader->wait(a), logic_error) << "a reported job is not running";
  EXPECT_THROW((void)s.offloader->completion_events(a), logic_error);
  const std::vector<cudaEvent_t> events = s.offloader->completion_events(b);
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(events[0]), b_engine)
      << "the engine's events of b's job, forwarded";
  const std::vector<FinishedJob> rest = s.offloader->wait_all();
  ASSERT_EQ(rest.size(), 1U);
  EXPECT_EQ(rest[0].job, b);
  EXPECT_EQ(s.offloader->lookup(std::vector<BlockHash>{1, 2, 3}), 3U);
}

TEST(Offloader, RefusesAManagerThatPlansTransfersOfItsOwn) {
  Cache cache{8, 1};
  for (const char* spec : {"tiered:instant=1", "tiered:instant=1+mutex"}) {
    SCOPED_TRACE(spec);
    try {
      Offloader offloader{make_manager(spec, 8, 0),
                          std::make_unique<ScriptedEngine>(*cache.layout, cache.slots)};
      FAIL() << "a tiered manager was accepted";
    } catch (const logic_error& e) {
      expect_contains(e.what(), "tiered");
    }
  }
}

TEST(Offloader, AnEmptyLoadIsNothingToDo) {
  Scripted s{4};
  EXPECT_FALSE(s.offloader->load({}, {}).has_value());
  EXPECT_TRUE(s.engine->requests.empty());
}

TEST(Offloader, ARepeatedHashIsPinnedPerOccurrenceAndReleasedOnce) {
  Scripted s{4};
  const std::vector<BlockHash> one{8};
  (void)s.offloader->store(one, ids({0}));
  s.engine->finish_last(true);
  (void)s.offloader->poll();
  (void)s.offloader->load(std::vector<BlockHash>{8, 8}, ids({1, 2})).value();
  const TransferRequest& r = s.engine->requests.back();
  ASSERT_EQ(r.host_slots.size(), 2U);
  EXPECT_EQ(r.host_slots[0], r.host_slots[1]);
  EXPECT_EQ(r.gpu_blocks, ids({1, 2}));
  EXPECT_EQ(s.stats().pinned, 1U);
  s.engine->finish_last(true);
  ASSERT_EQ(s.offloader->poll().size(), 1U);
  EXPECT_EQ(s.stats().pinned, 0U) << "both references released";
  EXPECT_EQ(s.stats().evictable, 1U);
}

TEST(Offloader, TheTicketNamesTheEvictedBlocks) {
  Scripted s{2};
  (void)s.offloader->store(std::vector<BlockHash>{1, 2}, ids({0, 1}));
  s.engine->finish_last(true);
  (void)s.offloader->poll();
  s.offloader->touch(std::vector<BlockHash>{1, 2});  // the first ends most recent: 2 leaves
  const StoreTicket t = s.offloader->store(std::vector<BlockHash>{3}, ids({2}));
  ASSERT_EQ(t.outcome, Outcome::kSubmitted);
  EXPECT_EQ(t.evicted, (std::vector<BlockHash>{2}));
  EXPECT_EQ(s.offloader->lookup(std::vector<BlockHash>{2}), 0U);
  EXPECT_EQ(s.offloader->lookup(std::vector<BlockHash>{1}), 1U);
}

TEST(Offloader, AManagerThatThrowsOnConfirmLosesNoReport) {
  Cache cache{4, 1};
  auto flaky_owned       = std::make_unique<FlakyManager>(4);
  FlakyManager* flaky    = flaky_owned.get();
  auto engine_owned      = std::make_unique<ScriptedEngine>(*cache.layout, cache.slots);
  ScriptedEngine* engine = engine_owned.get();
  Offloader offloader{std::move(flaky_owned), std::move(engine_owned)};
  const std::vector<BlockHash> hashes{4, 5};
  const JobId job = offloader.store(hashes, ids({0, 1})).job;
  engine->finish_last(true);
  flaky->armed = true;
  EXPECT_THROW((void)offloader.poll(), std::runtime_error);
  EXPECT_EQ(offloader.jobs_in_flight(), 1U) << "the job waits to be confirmed again";
  EXPECT_EQ(offloader.manager().stats().pending, 2U);
  const std::vector<FinishedJob> done = offloader.poll();  // the engine retired it already
  ASSERT_EQ(done.size(), 1U);
  EXPECT_EQ(done[0].job, job);
  EXPECT_TRUE(done[0].ok);
  EXPECT_EQ(offloader.lookup(hashes), 2U);
}

TEST(Offloader, TheDestructorWaitsForRunningJobs) {
  Cache cache{4, 1};
  int waits = 0;  // outlives the engine, which dies with the offloader
  {
    auto owned          = std::make_unique<ScriptedEngine>(*cache.layout, cache.slots);
    owned->wait_counter = &waits;
    Offloader offloader{make_manager("lru", 4, 0), std::move(owned)};
    (void)offloader.store(std::vector<BlockHash>{1, 2}, ids({0, 1}));
    (void)offloader.store(std::vector<BlockHash>{3}, ids({2}));
    ASSERT_EQ(offloader.jobs_in_flight(), 2U);
  }
  EXPECT_EQ(waits, 2);
}

TEST(Offloader, RefusesAManagerLargerThanTheHostSlots) {
  Cache cache{4, 1};
  try {
    Offloader offloader{make_manager("lru", 5, 0),
                        std::make_unique<ScriptedEngine>(*cache.layout, cache.slots)};
    FAIL() << "5 manager slots over 4 host slots were accepted";
  } catch (const logic_error& e) {
    expect_contains(e.what(), "5 slots but the engine only 4 host slots");
  }
  EXPECT_THROW(Offloader(nullptr, std::make_unique<ScriptedEngine>(*cache.layout, cache.slots)),
               logic_error);
}

TEST(MakeOffloader, RejectsTieredAndBadSpecsNamingThem) {
  Cache cache{4, 1};
  const transfer::TransferEngineOptions host_only{.force_host = true};
  try {
    (void)make_offloader("tiered:hot=0.5", *cache.layout, cache.slots, host_only);
    FAIL() << "a tiered spec was accepted";
  } catch (const logic_error& e) {
    expect_contains(e.what(), "tiered:hot=0.5");
  }
  try {
    (void)make_offloader("lru+nonsense", *cache.layout, cache.slots, host_only);
    FAIL() << "a bad spec was accepted";
  } catch (const logic_error& e) {
    expect_contains(e.what(), "nonsense");
  }
}

// Bytes: GPU blocks -> host slots -> other GPU blocks, through the host engine, k = 1 and 2.
// Blocks [0, 3k) hold hashes 100, 101, 102: store them, load them into the last 3k blocks
// (poisoned first) and compare every chunk.
void expect_round_trip(Offloader& offloader, const KvLayout& layout, std::size_t k) {
  const std::vector<BlockHash> hashes{100, 101, 102};
  std::vector<BlockId> from(3 * k);
  std::vector<BlockId> to(3 * k);
  for (std::size_t i = 0; i < from.size(); ++i) {
    from[i] = static_cast<BlockId>(i);
    to[i]   = static_cast<BlockId>(kGpuBlocks - to.size() + i);
  }
  offloader.touch(hashes);
  const StoreTicket t = offloader.store(hashes, from);
  ASSERT_EQ(t.outcome, Outcome::kSubmitted);
  for (const FinishedJob& f : offloader.wait_all())
    ASSERT_TRUE(f.ok) << f.error;
  ASSERT_EQ(offloader.lookup(hashes), 3U);

  for (std::size_t t_i = 0; t_i < layout.num_tensors(); ++t_i) {
    for (BlockId b : to)
      std::memset(layout.gpu_chunk(t_i, b), 0xA5, layout.tensors()[t_i].chunk_bytes);
  }
  const FinishedJob done = offloader.wait(offloader.load(hashes, to).value());
  ASSERT_TRUE(done.ok) << done.error;
  for (std::size_t t_i = 0; t_i < layout.num_tensors(); ++t_i) {
    for (std::size_t i = 0; i < to.size(); ++i) {
      EXPECT_EQ(std::memcmp(layout.gpu_chunk(t_i, to[i]),
                            layout.gpu_chunk(t_i, from[i]),
                            layout.tensors()[t_i].chunk_bytes),
                0)
          << "tensor " << t_i << " block " << from[i] << " -> " << to[i];
    }
  }
  EXPECT_EQ(offloader.manager().stats().pinned, 0U);
}

void randomize(std::vector<std::byte>& bytes, std::uint64_t seed) {
  std::mt19937_64 rng{seed};
  for (auto& b : bytes)
    b = static_cast<std::byte>(rng());
}

TEST(Offloader, HostEngineRoundTripIsExact) {
  for (std::size_t k : {std::size_t{1}, std::size_t{2}}) {
    SCOPED_TRACE("k " + std::to_string(k));
    Cache cache{6, k};
    randomize(cache.arena, 42 + k);
    auto offloader = make_offloader(
        "density", *cache.layout, cache.slots, {.force_host = true, .host_threads = 2});
    ASSERT_TRUE(offloader->engine().is_host_fallback());
    EXPECT_EQ(offloader->engine().host_slots().base, cache.host.data());
    expect_round_trip(*offloader, *cache.layout, k);
  }
}

TEST(Offloader, OwnsItsHostMemoryWhenGivenASlotCount) {
  Cache cache{1, 2};  // only the "GPU" arena is used
  randomize(cache.arena, 7);
  auto offloader =
      make_offloader("lru", *cache.layout, std::size_t{6}, {.force_host = true, .host_threads = 2});
  const HostSlots& slots = offloader->engine().host_slots();
  EXPECT_EQ(slots.num_slots, 6U);
  EXPECT_EQ(slots.slot_bytes, cache.layout->host_slot_bytes());
  EXPECT_NE(slots.base, nullptr);
  EXPECT_EQ(offloader->manager().stats().capacity, 6U);
  expect_round_trip(*offloader, *cache.layout, 2);
  EXPECT_THROW((void)make_offloader("lru", *cache.layout, std::size_t{0}), logic_error);
  EXPECT_THROW((void)make_offloader("lru", *cache.layout, ~std::size_t{0} / 2), logic_error);
}

}  // namespace
}  // namespace kvoffload
