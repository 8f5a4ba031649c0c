// The host + disk Offloader end to end on the real block store (files in a temporary
// directory, buffered I/O) and the host engine: the Mooncake slice with every loaded byte
// checked, a demotion racing a load, back-pressure from a slow disk, a corrupted block on disk,
// and recovery after re-creating the Offloader on the same directory.
#include "storage/format.hpp"
#include "storage/store_test_util.hpp"
#include "trace_replay.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/offloader.hpp>
#include <kvoffload/tiered_manager.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

namespace kvoffload {
namespace {

using testing::kChunk;
using transfer::KvLayout;
using transfer::KvTensor;
using Hashes = std::vector<BlockHash>;

constexpr std::size_t kSlotBytes = 4096;  // a 64-byte block takes one 4 KiB disk slot

struct RealDisk {
  explicit RealDisk(std::size_t gpu_blocks = 32)
      : gpu(gpu_blocks * kChunk),
        layout{std::vector{KvTensor{gpu.data(), kChunk, kChunk, 0}}, gpu_blocks, 1} {}

  std::unique_ptr<Offloader> open(std::size_t host_slots,
                                  std::size_t disk_slots,
                                  bool persistent,
                                  std::size_t max_disk_jobs       = 8,
                                  std::chrono::microseconds delay = {}) {
    const DiskTierOptions disk{.store         = {.directories      = {dir.path()},
                                                 .capacity_bytes   = disk_slots * kSlotBytes + 65536,
                                                 .persistent       = persistent,
                                                 .direct_io        = false,
                                                 .completion_delay = delay},
                               .max_disk_jobs = max_disk_jobs,
                               .enable_events = true};
    return make_offloader(
        "tiered:promote=0", layout, host_slots, disk, {.force_host = true, .host_threads = 2});
  }
  std::byte* block(BlockId b) { return gpu.data() + static_cast<std::size_t>(b) * kChunk; }
  void store(Offloader& o, const Hashes& hashes, BlockId first) {
    std::vector<BlockId> blocks;
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      blocks.push_back(first + static_cast<BlockId>(i));
      testing::fill(block(blocks.back()), hashes[i], 0);
    }
    const StoreTicket ticket = o.store(hashes, blocks);
    ASSERT_EQ(ticket.outcome, StoreTicket::Outcome::kSubmitted);
    EXPECT_TRUE(o.wait(ticket.job).ok);
  }
  // lookup until it knows (waiting for the disk), then load into poisoned blocks and check.
  void bring_back_and_check(Offloader& o, const Hashes& hashes, BlockId first) {
    std::optional<std::size_t> ready = o.lookup(hashes);
    for (int tries = 0; !ready && tries < 10; ++tries) {
      (void)o.wait_all();
      ready = o.lookup(hashes);
    }
    ASSERT_EQ(ready, hashes.size());
    std::vector<BlockId> blocks;
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      blocks.push_back(first + static_cast<BlockId>(i));
      std::memset(block(blocks.back()), 0xA5, kChunk);
    }
    const auto job = o.load(hashes, blocks);
    ASSERT_TRUE(job);
    EXPECT_TRUE(o.wait(*job).ok);
    for (std::size_t i = 0; i < hashes.size(); ++i)
      EXPECT_TRUE(testing::holds(block(blocks[i]), hashes[i], 0)) << "hash " << hashes[i];
  }

  testing::TempDir dir;
  std::vector<std::byte> gpu;
  KvLayout layout;
};

TEST(TieredOffloaderDisk, TheTraceThroughHostAndDiskLoadsEveryByteRight) {
  const replay::Trace trace =
      replay::load_trace(KVOFFLOAD_SOURCE_DIR "/data/traces/mooncake/conversation_trace.jsonl");
  const std::size_t requests = std::min<std::size_t>(trace.requests.size(), 3000);
  const std::size_t longest  = testing::longest_request(trace, requests);
  RealDisk d{2 * longest};
  auto offloader = d.open(600, 3000, /*persistent=*/false);
  const testing::TraceRun run =
      testing::replay_verified(*offloader, d.gpu, 1, trace, 0, requests, longest);
  const OffloaderStats st = offloader->stats();
  EXPECT_EQ(run.failures, 0u);
  EXPECT_GT(run.verified, 1000u);
  EXPECT_GT(st.demotions, 1000u);
  EXPECT_GT(st.promotions, 100u) << "the disk tier never served a hit";
  EXPECT_EQ(st.blocks_lost, 0u);
  EXPECT_EQ(st.bytes_read_disk, st.promotions * kChunk);
  EXPECT_EQ(offloader->block_store()->stats().bytes_read, st.promotions * kChunk);
  EXPECT_EQ(st.disk_jobs_in_flight, 0u);
  EXPECT_EQ(offloader->manager().stats().pending, 0u);
  dynamic_cast<const TieredOffloadingManager&>(offloader->manager()).check_invariants();
}

TEST(TieredOffloaderDisk, ADemotionRacesALoadOfTheSameBlock) {
  RealDisk d;
  auto o = d.open(2, 16, false);
  d.store(*o, {1, 2}, 0);
  // A load of 1 runs (pinned): the store of 3 must demote 2, never 1.
  std::memset(d.block(10), 0xA5, kChunk);
  const auto load = o->load(Hashes{1}, std::vector<BlockId>{10});
  ASSERT_TRUE(load);
  d.store(*o, {3}, 2);
  EXPECT_TRUE(o->wait(*load).ok);
  EXPECT_TRUE(testing::holds(d.block(10), 1, 0));
  // 1 is demoted now (by 4) while its bytes go to disk: not loadable until it is back.
  d.store(*o, {4}, 3);
  EXPECT_EQ(o->lookup(Hashes{3}), 1u);
  try {
    (void)o->load(Hashes{1}, std::vector<BlockId>{11});
    ADD_FAILURE() << "a block in flight to disk (or on it) was loaded";
  } catch (const logic_error&) {
  }
  EXPECT_EQ(o->manager().stats().pinned, 0u);
  d.bring_back_and_check(*o, {1}, 12);
  d.bring_back_and_check(*o, {2}, 13);
}

TEST(TieredOffloaderDisk, ASlowDiskDropsDemotionsWhileStoresComplete) {
  RealDisk d;
  // One disk job at a time, each taking a second.
  auto o = d.open(4, 64, false, 1, std::chrono::seconds{1});
  d.store(*o, {100, 101, 102, 103}, 0);
  d.store(*o, {104}, 4);     // demotes 100: this store waits for that one disk job
  o->prefetch(Hashes{100});  // demotes 101 and reads 100: the disk is busy for a second
  ASSERT_GT(o->stats().disk_jobs_in_flight, 0u);
  for (BlockHash h = 0; h < 20; ++h)
    d.store(*o, {h}, static_cast<BlockId>(5 + h));
  const OffloaderStats st = o->stats();
  EXPECT_EQ(st.demotions_dropped, 20u);
  // Had a store waited for the disk, the second-long jobs would be done by now.
  EXPECT_GT(st.disk_jobs_in_flight, 0u) << "the stores waited for the disk";
  (void)o->wait_all();
  EXPECT_EQ(o->stats().demotions, 2u);
  d.bring_back_and_check(*o, {17, 18, 19}, 25);
  d.bring_back_and_check(*o, {100}, 28);
  EXPECT_EQ(o->lookup(Hashes{5}), 0u);  // dropped, not demoted
}

TEST(TieredOffloaderDisk, ACorruptedBlockOnDiskIsLostAndNeverLoaded) {
  RealDisk d;
  auto o = d.open(1, 8, false);
  d.store(*o, {1}, 0);
  d.store(*o, {2}, 1);  // 1 goes to disk slot 0
  (void)o->wait_all();
  {
    std::fstream file{d.dir.path() / storage::detail::kDataFileName,
                      std::ios::in | std::ios::out | std::ios::binary};
    ASSERT_TRUE(file);
    file.seekp(static_cast<std::streamoff>(storage::detail::data_offset(0, kSlotBytes) + 7));
    file.put('\x5A');
  }
  (void)o->take_events();
  std::memset(d.block(9), 0xA5, kChunk);
  EXPECT_EQ(o->lookup(Hashes{1}), std::nullopt);
  (void)o->wait_all();
  EXPECT_EQ(o->stats().blocks_lost, 1u);
  EXPECT_EQ(o->lookup(Hashes{1}), 0u);
  EXPECT_THROW((void)o->load(Hashes{1}, std::vector<BlockId>{9}), logic_error);
  bool removed = false;
  for (const OffloadingEvent& e : o->take_events())
    removed |= e.removed && e.medium == Medium::kDisk && e.block_hashes == Hashes{1};
  EXPECT_TRUE(removed);
  d.bring_back_and_check(*o, {2}, 3);
}

TEST(TieredOffloaderDisk, ARecreatedOffloaderFindsTheDiskBlocksReady) {
  RealDisk d;
  {
    auto o = d.open(2, 16, /*persistent=*/true);
    d.store(*o, {1, 2}, 0);
    d.store(*o, {3, 4}, 2);  // 1 and 2 to disk
    d.store(*o, {5}, 4);     // 3 to disk
    (void)o->wait_all();
    EXPECT_EQ(o->stats().blocks_recovered, 0u);
  }
  auto o = d.open(2, 16, /*persistent=*/true);
  EXPECT_EQ(o->stats().blocks_recovered, 3u);
  const auto events = o->take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].medium, Medium::kDisk);
  EXPECT_FALSE(events[0].removed);
  EXPECT_EQ(events[0].block_hashes.size(), 3u);
  EXPECT_EQ(o->lookup(Hashes{4}), 0u);     // it was on the host: gone with the process
  d.bring_back_and_check(*o, {1, 2}, 10);  // two host slots: two at a time
  d.bring_back_and_check(*o, {3}, 12);
}

}  // namespace
}  // namespace kvoffload
