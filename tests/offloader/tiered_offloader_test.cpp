// The host + disk Offloader against an in-memory store (fake_block_store.hpp) and the host
// engine: the orchestration rules of include/kvoffload/offloader.hpp, each with real bytes.
// The fake moves bytes only when a job completes, so a host slot written too early shows up as
// a wrong byte, and it records every breach of the store's ordering contract.
#include "fake_block_store.hpp"
#include "policy/test_util.hpp"
#include "trace_replay.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/metrics.hpp>
#include <kvoffload/offloader.hpp>
#include <kvoffload/tiered_manager.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

namespace kvoffload {
namespace {

using testing::expect_contains;
using testing::FakeBlockStore;
using testing::FakeDisk;
using testing::kChunk;
using transfer::HostSlots;
using transfer::JobId;
using transfer::KvLayout;
using transfer::KvTensor;
using Hashes = std::vector<BlockHash>;

struct Setup {
  std::size_t host_slots{2};
  std::size_t disk_slots{8};
  std::size_t max_disk_jobs{8};
  bool hold{false};
  std::uint32_t promote_after{0};
  std::shared_ptr<FakeDisk> disk{};  // reuse a "disk" (a restart)
  bool recover{false};
};

// A host + disk Offloader over 32 "GPU" blocks of kChunk bytes, one per host slot.
struct HostDisk {
  static constexpr std::size_t kGpuBlocks = 32;

  explicit HostDisk(Setup setup)
      : gpu(kGpuBlocks * kChunk), host(setup.host_slots * kChunk), config{setup} {
    layout = std::make_unique<KvLayout>(
        std::vector{KvTensor{gpu.data(), kChunk, kChunk, 0}}, kGpuBlocks, 1);
    disk = setup.disk ? setup.disk : std::make_shared<FakeDisk>(setup.disk_slots, kChunk);
    open();
  }

  // A new Offloader (and store) over the same host memory and disk.
  void open() {
    offloader.reset();
    auto owned   = std::make_unique<FakeBlockStore>(disk, config.recover);
    store        = owned.get();
    store->hold  = config.hold;
    auto manager = std::make_unique<TieredOffloadingManager>(TieredConfig{
        .tiers         = {{Medium::kCpu, config.host_slots}, {Medium::kDisk, config.disk_slots}},
        .promote_after = config.promote_after,
        .lookahead     = 8,
        .stores_to_tier_zero_only = true,
        .block_size               = kChunk,
        .enable_events            = true});
    auto engine  = transfer::make_host_transfer_engine(
        *layout, HostSlots{host.data(), kChunk, config.host_slots}, {.host_threads = 2});
    offloader = std::make_unique<Offloader>(
        std::move(manager), std::move(engine), std::move(owned), config.max_disk_jobs);
  }

  std::byte* block(BlockId b) { return gpu.data() + static_cast<std::size_t>(b) * kChunk; }

  // Store hashes from GPU blocks first, first + 1, ... holding their patterns.
  StoreTicket store_blocks(const Hashes& hashes, BlockId first) {
    std::vector<BlockId> blocks;
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      blocks.push_back(first + static_cast<BlockId>(i));
      testing::fill(block(blocks.back()), hashes[i], 0);
    }
    return offloader->store(hashes, blocks);
  }
  void store_and_wait(const Hashes& hashes, BlockId first) {
    const StoreTicket ticket = store_blocks(hashes, first);
    ASSERT_EQ(ticket.outcome, StoreTicket::Outcome::kSubmitted);
    EXPECT_TRUE(offloader->wait(ticket.job).ok);
  }
  // Load hashes into poisoned GPU blocks from `first` on and check every byte.
  void load_and_check(const Hashes& hashes, BlockId first) {
    std::vector<BlockId> blocks;
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      blocks.push_back(first + static_cast<BlockId>(i));
      std::memset(block(blocks.back()), 0xA5, kChunk);
    }
    const auto job = offloader->load(hashes, blocks);
    ASSERT_TRUE(job);
    EXPECT_TRUE(offloader->wait(*job).ok);
    for (std::size_t i = 0; i < hashes.size(); ++i)
      EXPECT_TRUE(testing::holds(block(blocks[i]), hashes[i], 0)) << "hash " << hashes[i];
  }
  // lookup, and on "retry later" finish the disk work and look up again.
  std::size_t lookup_after_disk(const Hashes& hashes) {
    if (const auto ready = offloader->lookup(hashes)) return *ready;
    store->release_all();
    (void)offloader->wait_all();
    return offloader->lookup(hashes).value_or(999);
  }
  // poll() until a report comes, without blocking in the Offloader (a deferred store must be
  // started by poll() alone); a bounded number of tries, so a bug fails instead of hanging.
  std::vector<FinishedJob> poll_until_reported() {
    for (int attempt = 0; attempt < 100'000; ++attempt) {
      std::vector<FinishedJob> done = offloader->poll();
      if (!done.empty()) return done;
      std::this_thread::yield();
    }
    ADD_FAILURE() << "poll() reported nothing in 100,000 calls";
    return {};
  }
  [[nodiscard]] const TieredOffloadingManager& manager() const {
    return dynamic_cast<const TieredOffloadingManager&>(offloader->manager());
  }

  std::vector<std::byte> gpu;
  std::vector<std::byte> host;
  Setup config;
  std::unique_ptr<KvLayout> layout;
  std::shared_ptr<FakeDisk> disk;
  FakeBlockStore* store{nullptr};
  std::unique_ptr<Offloader> offloader;
};

TEST(TieredOffloader, AStoreIntoADemotedBlocksSlotWaitsUntilTheDiskReadIt) {
  HostDisk s{{.host_slots = 2, .hold = true}};
  s.store_and_wait({1, 2}, 0);
  // Host full: 1 is demoted out of host slot 0, which the store of 3 gets.
  const StoreTicket ticket = s.store_blocks({3}, 2);
  ASSERT_EQ(ticket.outcome, StoreTicket::Outcome::kSubmitted);
  EXPECT_EQ(s.offloader->stats().stores_deferred, 1u);
  EXPECT_EQ(s.store->writes_submitted, 1);
  EXPECT_TRUE(s.offloader->poll().empty()) << "the store ran before its demotion";
  s.store->release_all();
  const std::vector<FinishedJob> done = s.poll_until_reported();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].job, ticket.job);
  EXPECT_TRUE(done[0].ok);
  EXPECT_EQ(s.store->waits, 0) << "poll() alone must start the deferred store";
  // 1 comes back from disk with its own bytes, not 3's.
  EXPECT_EQ(s.lookup_after_disk({1}), 1u);
  s.load_and_check({1}, 10);
  s.load_and_check({3}, 11);
  EXPECT_TRUE(s.store->violations.empty()) << s.store->violations.front();
  const OffloaderStats st = s.offloader->stats();
  EXPECT_EQ(st.demotions, 2u);  // 1, then 2 or 3 to make room for 1
  EXPECT_EQ(st.promotions, 1u);
  EXPECT_EQ(st.bytes_read_disk, kChunk);
  EXPECT_EQ(st.bytes_written_disk, 2 * kChunk);
  EXPECT_EQ(st.lookups_deferred, 1u);
  s.manager().check_invariants();
}

TEST(TieredOffloader, ADeferredStoreTheEngineRejectsIsReportedFailedAndAbandoned) {
  HostDisk s{{.host_slots = 1, .hold = true}};
  s.store_and_wait({1}, 0);
  // The host engine rejects a wait_event, but only when the store reaches it: after the
  // demotion of 1 has read the slot. store() itself returns a job.
  testing::fill(s.block(1), 2, 0);
  const StoreTicket ticket =
      s.offloader->store(Hashes{2},
                         std::vector<BlockId>{1},
                         {.wait_event = reinterpret_cast<cudaEvent_t>(std::uintptr_t{1})});
  ASSERT_EQ(ticket.outcome, StoreTicket::Outcome::kSubmitted);
  s.store->release_all();
  const std::vector<FinishedJob> done = s.poll_until_reported();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].job, ticket.job);
  EXPECT_FALSE(done[0].ok);
  EXPECT_FALSE(done[0].error.empty());
  EXPECT_EQ(s.offloader->lookup(Hashes{2}), 0u);
  EXPECT_EQ(s.offloader->manager().stats().pending, 0u);
  EXPECT_EQ(s.offloader->jobs_in_flight(), 0u);
  EXPECT_EQ(s.lookup_after_disk({1}), 1u);  // the demotion itself went through
  s.load_and_check({1}, 4);
  s.manager().check_invariants();
}

TEST(TieredOffloader, WaitDrivesTheDiskForADeferredStore) {
  HostDisk s{{.host_slots = 1, .hold = true}};
  s.store_and_wait({1}, 0);
  const StoreTicket ticket = s.store_blocks({2}, 1);
  const FinishedJob done   = s.offloader->wait(ticket.job);  // the held demotion is waited for
  EXPECT_TRUE(done.ok);
  EXPECT_EQ(s.store->waits, 1);
  EXPECT_EQ(s.lookup_after_disk({1}), 1u);
  s.load_and_check({1}, 5);
}

TEST(TieredOffloader, ABlockBroughtUpIntoASlotBeingDemotedWaitsForTheDemotion) {
  HostDisk s{{.host_slots = 1, .hold = true}};
  s.store_and_wait({1}, 0);
  s.store_and_wait({2}, 1);  // 1 on disk, 2 in host slot 0
  (void)s.offloader->wait_all();
  // Bringing 1 up demotes 2 out of host slot 0 and reads 1 into it: the read must wait.
  EXPECT_EQ(s.offloader->lookup(Hashes{1}), std::nullopt);
  EXPECT_EQ(s.store->reads_submitted, 0) << "the read into slot 0 started before 2 was written";
  s.store->release_all();
  (void)s.offloader->poll();  // the demotion finishes: the read starts
  EXPECT_EQ(s.store->reads_submitted, 1);
  s.store->release_all();
  (void)s.offloader->wait_all();
  EXPECT_TRUE(s.store->violations.empty()) << s.store->violations.front();
  EXPECT_EQ(s.offloader->lookup(Hashes{1}), 1u);
  s.load_and_check({1}, 4);
  EXPECT_EQ(s.lookup_after_disk({2}), 1u);
  s.load_and_check({2}, 5);
  EXPECT_TRUE(s.store->violations.empty()) << s.store->violations.front();
}

TEST(TieredOffloader, ABusyDiskDropsDemotionsWhileStoresComplete) {
  HostDisk s{{.host_slots = 4, .disk_slots = 16, .max_disk_jobs = 1, .hold = true}};
  s.store_and_wait({1, 2, 3, 4}, 0);
  const StoreTicket five = s.store_blocks({5}, 4);  // demotes 1: the one disk job, held
  const StoreTicket six  = s.store_blocks({6}, 5);  // would demote 2: dropped instead
  ASSERT_EQ(six.outcome, StoreTicket::Outcome::kSubmitted);
  EXPECT_TRUE(s.offloader->wait(six.job).ok);
  EXPECT_EQ(s.store->waits, 0) << "a store waited behind the disk";
  OffloaderStats st = s.offloader->stats();
  EXPECT_EQ(st.demotions_dropped, 1u);
  EXPECT_EQ(st.disk_jobs_in_flight, 1u);
  EXPECT_EQ(s.offloader->lookup(Hashes{2}), 0u);  // dropped: gone
  s.store->release_all();
  EXPECT_TRUE(s.offloader->wait(five.job).ok);
  (void)s.offloader->wait_all();
  st = s.offloader->stats();
  EXPECT_EQ(st.demotions, 1u);
  EXPECT_EQ(st.disk_jobs_in_flight, 0u);
  EXPECT_EQ(s.lookup_after_disk({1}), 1u);
  s.load_and_check({1}, 10);
  s.load_and_check({6}, 11);
  s.manager().check_invariants();
}

TEST(TieredOffloader, LookupAnswersTheHostPrefixWhileTheDiskIsBusy) {
  HostDisk s{{.host_slots = 2, .max_disk_jobs = 1, .hold = true}};
  s.store_and_wait({1, 2}, 0);
  s.store_and_wait({3}, 2);  // demotes 1 (waited for)
  s.store_and_wait({4}, 3);  // demotes 2
  (void)s.offloader->wait_all();
  s.offloader->prefetch(Hashes{1});  // demotes 3, reads 1: held
  EXPECT_EQ(s.offloader->stats().disk_jobs_in_flight, 2u);
  // 4 on the host, 2 on disk: the disk is busy, so the answer is the host part, not "later",
  // and 4 is not demoted to make room for a read that would not run.
  EXPECT_EQ(s.offloader->lookup(Hashes{4, 2}), 1u);
  EXPECT_EQ(s.offloader->stats().lookups_disk_busy, 1u);
  EXPECT_EQ(s.manager().lookup_tiers(Hashes{4, 2}),
            (std::vector<std::optional<std::uint32_t>>{0u, 1u}));
  s.store->release_all();
  (void)s.offloader->wait_all();
  EXPECT_EQ(s.lookup_after_disk({1}), 1u);
  s.load_and_check({1}, 8);
  EXPECT_EQ(s.lookup_after_disk({4, 2}), 2u);
  s.load_and_check({4, 2}, 9);
  s.manager().check_invariants();
}

TEST(TieredOffloader, ACorruptDiskBlockIsLostAndNeverLoaded) {
  HostDisk s{{.host_slots = 1, .disk_slots = 4}};
  s.store_and_wait({1}, 0);
  s.store_and_wait({2}, 1);  // 1 to disk slot 0
  (void)s.offloader->wait_all();
  (void)s.offloader->take_events();
  s.store->corrupt.insert(0);
  EXPECT_EQ(s.offloader->lookup(Hashes{1}), std::nullopt);
  (void)s.offloader->wait_all();
  const OffloaderStats st = s.offloader->stats();
  EXPECT_EQ(st.blocks_lost, 1u);
  EXPECT_EQ(st.reads_failed, 1u);
  EXPECT_EQ(st.promotions, 0u);
  EXPECT_EQ(s.offloader->lookup(Hashes{1}), 0u);
  EXPECT_THROW((void)s.offloader->load(Hashes{1}, std::vector<BlockId>{9}), logic_error);
  EXPECT_EQ(s.store->discards, 1) << "the store must forget the corrupt slot";
  bool removed = false;
  for (const OffloadingEvent& e : s.offloader->take_events()) {
    if (e.removed && e.medium == Medium::kDisk &&
        std::find(e.block_hashes.begin(), e.block_hashes.end(), 1) != e.block_hashes.end())
      removed = true;
  }
  EXPECT_TRUE(removed) << "no removed event for the lost block";
  s.manager().check_invariants();
}

TEST(TieredOffloader, LoadingABlockOnDiskThrowsNamingIt) {
  HostDisk s{{.host_slots = 1}};
  s.store_and_wait({1}, 0);
  s.store_and_wait({2}, 1);
  (void)s.offloader->wait_all();
  try {
    (void)s.offloader->load(Hashes{2, 1}, std::vector<BlockId>{5, 6});
    ADD_FAILURE() << "loaded a block on disk";
  } catch (const logic_error& e) {
    expect_contains(e.what(), "block hash 1 is on disk");
  }
  EXPECT_EQ(s.offloader->manager().stats().pinned, 0u);
  s.load_and_check({2}, 7);
}

TEST(TieredOffloader, AFailedDemotionDropsTheBlockAndTheStoreCompletes) {
  HostDisk s{{.host_slots = 1}};
  s.store->fail_writes = true;
  s.store_and_wait({1}, 0);
  s.store_and_wait({2}, 1);
  (void)s.offloader->wait_all();
  EXPECT_EQ(s.offloader->stats().demotions_failed, 1u);
  EXPECT_EQ(s.offloader->lookup(Hashes{1}), 0u);
  s.load_and_check({2}, 3);
}

TEST(TieredOffloader, BlocksOnDiskAreReadyAgainAfterARestart) {
  HostDisk s{{.host_slots = 1, .disk_slots = 8}};
  s.store_and_wait({1}, 0);
  s.store_and_wait({2}, 1);
  s.store_and_wait({3}, 2);  // 1 and 2 on disk, 3 on the host (lost with the process)
  (void)s.offloader->wait_all();
  s.disk->record[7] = 1;  // an older copy of 1 (promoted and demoted again): adopted once
  s.config.recover  = true;
  s.open();
  EXPECT_EQ(s.offloader->stats().blocks_recovered, 2u);
  EXPECT_EQ(s.store->discards, 1);
  const auto events = s.offloader->take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_FALSE(events[0].removed);
  EXPECT_EQ(events[0].medium, Medium::kDisk);
  EXPECT_EQ(events[0].block_hashes, (Hashes{1, 2}));
  EXPECT_EQ(s.offloader->lookup(Hashes{3}), 0u);
  EXPECT_EQ(s.lookup_after_disk({1}), 1u);
  s.load_and_check({1}, 4);
  EXPECT_EQ(s.lookup_after_disk({2}), 1u);
  s.load_and_check({2}, 5);
  s.manager().check_invariants();
}

TEST(TieredOffloader, DiskJobLatenciesAreCountedAndExported) {
  HostDisk s{{.host_slots = 1, .disk_slots = 8}};
  s.store_and_wait({1}, 0);
  s.store_and_wait({2}, 1);  // 1 goes to disk
  (void)s.offloader->wait_all();
  EXPECT_EQ(s.lookup_after_disk({1}), 1u);  // 2 goes to disk, 1 comes up
  (void)s.offloader->wait_all();
  const OffloaderStats stats = s.offloader->stats();
  EXPECT_EQ(stats.disk_write_latency.count, 2u);
  EXPECT_EQ(stats.disk_read_latency.count, 1u);
  EXPECT_EQ(stats.store_latency.count, 2u);
  EXPECT_EQ(stats.load_latency.count, 0u);
  std::ostringstream out;
  const ManagerMetrics metrics[] = {collect_metrics(*s.offloader, "kv")};
  write_prometheus(out, metrics);
  const std::string text = out.str();
  for (const char* line :
       {"kvoffload_offloader_job_latency_seconds_count{manager=\"kv\",job=\"disk_write\"} 2\n",
        "kvoffload_offloader_job_latency_seconds_bucket{manager=\"kv\",job=\"disk_read\","
        "le=\"+Inf\"} 1\n",
        "kvoffload_offloader_disk_writes_total{manager=\"kv\"} 2\n",
        "kvoffload_offloader_disk_reads_total{manager=\"kv\"} 1\n",
        "kvoffload_tier_capacity_blocks{manager=\"kv\",tier=\"1\",medium=\"disk\"} 8\n"})
    expect_contains(text, line);
}

TEST(TieredOffloader, RefusesAManagerThatDoesNotFit) {
  std::vector<std::byte> gpu(4 * kChunk), host(2 * kChunk);
  const KvLayout layout{{KvTensor{gpu.data(), kChunk, kChunk, 0}}, 4, 1};
  auto attempt = [&](TieredConfig config, std::size_t disk_slots, const std::string& part) {
    config.block_size = kChunk;
    auto disk         = std::make_shared<FakeDisk>(disk_slots, kChunk);
    try {
      Offloader o{std::make_unique<TieredOffloadingManager>(config),
                  transfer::make_host_transfer_engine(layout, HostSlots{host.data(), kChunk, 2}),
                  std::make_unique<FakeBlockStore>(disk, false)};
      ADD_FAILURE() << "accepted: " << part;
    } catch (const logic_error& e) {
      expect_contains(e.what(), part);
    }
  };
  const TieredConfig fits{.tiers                    = {{Medium::kCpu, 2}, {Medium::kDisk, 4}},
                          .stores_to_tier_zero_only = true};
  TieredConfig c             = fits;
  c.stores_to_tier_zero_only = false;
  attempt(c, 4, "stores_to_tier_zero_only");
  c       = fits;
  c.tiers = {{Medium::kGpu, 2}, {Medium::kCpu, 2}, {Medium::kDisk, 4}};
  attempt(c, 4, "two tiers, cpu then disk");
  c                     = fits;
  c.tiers[0].num_blocks = 3;
  attempt(c, 4, "the host tier has 3 slots but the engine only 2");
  attempt(fits, 3, "the disk tier has 4 slots but the store only 3");
}

TEST(TieredOffloader, MakeOffloaderTakesATieredSpecWithoutSizes) {
  std::vector<std::byte> gpu(4 * kChunk);
  const KvLayout layout{{KvTensor{gpu.data(), kChunk, kChunk, 0}}, 4, 1};
  const DiskTierOptions disk{.store = {.directories = {"/nonexistent"}, .capacity_bytes = 1 << 20}};
  auto refused = [&](const char* spec, const std::string& part) {
    try {
      (void)make_offloader(spec, layout, std::size_t{2}, disk, {.force_host = true});
      ADD_FAILURE() << "accepted " << spec;
    } catch (const logic_error& e) {
      expect_contains(e.what(), part);
    }
  };
  refused("lru", "policy 'lru' is single-tier");
  refused("tiered:hot=0.1", "sizes its tiers");
  refused("tiered:cold=0", "sizes its tiers");
  refused("tiered+mutex", "has decorators");
  refused("tiered:instant=1", "instant=1");
  try {
    (void)make_offloader("tiered", layout, std::size_t{0}, disk, {.force_host = true});
    ADD_FAILURE() << "accepted 0 host slots";
  } catch (const logic_error& e) {
    expect_contains(e.what(), "host_slots is 0");
  }
}

// The Mooncake slice through host + disk (the fake, completing jobs as polled): every loaded
// byte is checked, so a demotion that read a reused slot or a read into a busy slot shows.
TEST(TieredOffloader, TheTraceThroughHostAndFakeDiskLoadsEveryByteRight) {
  const replay::Trace trace =
      replay::load_trace(KVOFFLOAD_SOURCE_DIR "/data/traces/mooncake/conversation_trace.jsonl");
  const std::size_t requests = std::min<std::size_t>(trace.requests.size(), 3000);
  const std::size_t longest  = testing::longest_request(trace, requests);
  std::vector<std::byte> gpu(2 * longest * kChunk);
  const KvLayout layout{{KvTensor{gpu.data(), kChunk, kChunk, 0}}, 2 * longest, 1};
  const std::size_t host_slots = 600, disk_slots = 3000;
  std::vector<std::byte> host(host_slots * kChunk);
  auto disk             = std::make_shared<FakeDisk>(disk_slots, kChunk);
  auto owned            = std::make_unique<FakeBlockStore>(disk, false);
  FakeBlockStore* store = owned.get();
  Offloader offloader{std::make_unique<TieredOffloadingManager>(TieredConfig{
                          .tiers = {{Medium::kCpu, host_slots}, {Medium::kDisk, disk_slots}},
                          .stores_to_tier_zero_only = true,
                          .block_size               = kChunk}),
                      transfer::make_host_transfer_engine(
                          layout, HostSlots{host.data(), kChunk, host_slots}, {.host_threads = 2}),
                      std::move(owned),
                      4};
  const testing::TraceRun run =
      testing::replay_verified(offloader, gpu, 1, trace, 0, requests, longest);
  const OffloaderStats st = offloader.stats();
  EXPECT_EQ(run.failures, 0u);
  EXPECT_GT(run.verified, 1000u);
  EXPECT_GT(st.demotions, 1000u);
  EXPECT_GT(st.promotions, 100u) << "the disk tier never served a hit";
  EXPECT_TRUE(store->violations.empty()) << store->violations.front();
  EXPECT_EQ(st.disk_jobs_in_flight, 0u);
  EXPECT_EQ(offloader.manager().stats().pending, 0u);
  dynamic_cast<const TieredOffloadingManager&>(offloader.manager()).check_invariants();
}

}  // namespace
}  // namespace kvoffload
