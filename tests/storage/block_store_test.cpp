// The block store: round trips over both back ends, block sizes, queue depths, the buffered
// fallback and several directories; merging; restart; corruption; misuse.
#include "storage/format.hpp"
#include "storage/store_test_util.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <tuple>

namespace {

using namespace kvoffload;
using namespace kvoffload::storage;
using namespace kvoffload::testing;
namespace format = kvoffload::storage::detail;

std::vector<BlockHash> fresh_hashes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng{seed};
  std::vector<BlockHash> out(n);
  for (auto& h : out)
    h = rng();
  return out;
}

// ---- round trips ----

using RoundTripParam = std::tuple<IoBackend,
                                  std::size_t /*block*/,
                                  unsigned /*depth*/,
                                  bool /*direct*/,
                                  std::size_t /*dirs*/>;

class RoundTrip : public ::testing::TestWithParam<RoundTripParam> {};

TEST_P(RoundTrip, RandomBlocksComeBackByteForByte) {
  const auto [backend, block_bytes, depth, direct, dir_count] = GetParam();
  KVO_SKIP_UNLESS_BACKEND(backend);
  std::vector<std::unique_ptr<TempDir>> dirs;
  for (std::size_t i = 0; i < dir_count; ++i)
    dirs.push_back(std::make_unique<TempDir>());
  const std::size_t slots   = std::clamp<std::size_t>((8u << 20) / block_bytes, 8, 96);
  BlockStoreOptions options = small_store(dirs[0]->path(), block_bytes, slots);
  options.directories.clear();
  for (auto& d : dirs)
    options.directories.push_back(d->path());
  options.capacity_bytes *= dir_count;  // ample: every directory could take all slots
  options.backend     = backend;
  options.queue_depth = depth;
  options.direct_io   = direct;
  auto store          = make_block_store(options);
  ASSERT_GE(store->num_slots(), slots);
  EXPECT_EQ(store->slot_bytes() % 4096, 0u);

  // Random distinct slots, written in a few jobs, each block's bytes determined by its hash.
  std::vector<BlockId> ids(store->num_slots());
  std::iota(ids.begin(), ids.end(), BlockId{0});
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64{block_bytes + depth});
  ids.resize(slots);
  const auto hashes = fresh_hashes(slots, block_bytes * 31 + depth);
  HostBuffer host(slots * block_bytes);
  const std::size_t jobs = 4;
  for (std::size_t j = 0; j < jobs; ++j) {
    const std::size_t first = slots * j / jobs, last = slots * (j + 1) / jobs;
    const auto status = write_blocks(*store,
                                     {ids.begin() + first, ids.begin() + last},
                                     {hashes.begin() + first, hashes.begin() + last},
                                     host.data() + first * block_bytes);
    ASSERT_EQ(status.state, DiskJobState::kDone) << status.error;
  }
  // Read back in one job, in reverse order, into poisoned memory.
  std::vector<BlockId> rids(ids.rbegin(), ids.rend());
  std::vector<BlockHash> rhashes(hashes.rbegin(), hashes.rend());
  HostBuffer back(slots * block_bytes);
  const auto status = read_blocks(*store, rids, rhashes, back.data());
  ASSERT_EQ(status.state, DiskJobState::kDone) << status.error;
  EXPECT_TRUE(status.lost.empty());
  for (std::size_t i = 0; i < slots; ++i) {
    ASSERT_TRUE(block_matches(rhashes[i], {back.data() + i * block_bytes, block_bytes}))
        << "slot " << rids[i] << " on " << store->description();
  }
  const auto stats = store->stats();
  EXPECT_EQ(stats.bytes_written, slots * block_bytes);
  EXPECT_EQ(stats.bytes_read, slots * block_bytes);
  EXPECT_EQ(stats.write_jobs, jobs);
  EXPECT_EQ(stats.read_jobs, 1u);
  EXPECT_EQ(stats.failed_jobs + stats.blocks_lost, 0u);
  expect_contains(store->description(),
                  backend == IoBackend::kIoUring ? "io_uring" : "thread pool");
  if (!direct) expect_contains(store->description(), "buffered");
}

std::string round_trip_name(const ::testing::TestParamInfo<RoundTripParam>& info) {
  const auto [backend, block, depth, direct, dirs] = info.param;
  return std::string{backend_name(backend)} + "_b" + std::to_string(block) + "_q" +
         std::to_string(depth) + (direct ? "_direct" : "_buffered") + "_d" + std::to_string(dirs);
}

INSTANTIATE_TEST_SUITE_P(BlockStore,
                         RoundTrip,
                         ::testing::Combine(::testing::Values(IoBackend::kThreadPool,
                                                              IoBackend::kIoUring),
                                            ::testing::Values(std::size_t{4096},
                                                              std::size_t{12345},
                                                              std::size_t{65536},
                                                              std::size_t{1} << 20),
                                            ::testing::Values(1u, 32u),
                                            ::testing::Bool(),
                                            ::testing::Values(std::size_t{1}, std::size_t{3})),
                         round_trip_name);

class BothBackends : public ::testing::TestWithParam<IoBackend> {
 protected:
  // A small store of `slots` blocks on this case's back end, in a directory of its own.
  std::unique_ptr<BlockStore> open_store(std::size_t block_bytes, std::size_t slots) {
    auto options    = small_store(dir_.path(), block_bytes, slots);
    options.backend = GetParam();
    return make_block_store(options);
  }

 private:
  TempDir dir_;
};
INSTANTIATE_TEST_SUITE_P(BlockStore,
                         BothBackends,
                         ::testing::Values(IoBackend::kThreadPool, IoBackend::kIoUring),
                         [](const auto& info) { return std::string{backend_name(info.param)}; });

TEST_P(BothBackends, AdjacentSlotsInContiguousMemoryMergeIntoOneIo) {
  KVO_SKIP_UNLESS_BACKEND(GetParam());
  auto store = open_store(16384, 64);
  HostBuffer host(16 * 16384);
  std::vector<BlockId> run(16);
  std::iota(run.begin(), run.end(), BlockId{10});  // slots 10..25, host blocks 0..15
  const auto hashes = fresh_hashes(16, 3);
  ASSERT_EQ(write_blocks(*store, run, hashes, host.data()).state, DiskJobState::kDone);
  EXPECT_EQ(store->stats().io_operations, 1u);
  HostBuffer back(16 * 16384);
  ASSERT_EQ(read_blocks(*store, run, hashes, back.data()).state, DiskJobState::kDone);
  EXPECT_EQ(store->stats().io_operations, 2u);
  for (std::size_t i = 0; i < 16; ++i)
    EXPECT_TRUE(block_matches(hashes[i], {back.data() + i * 16384, 16384}));
  // Not adjacent in memory (reversed host order): one I/O per block.
  std::vector<BlockId> reversed(run.rbegin(), run.rend());
  ASSERT_EQ(read_blocks(*store, reversed, {hashes.rbegin(), hashes.rend()}, back.data()).state,
            DiskJobState::kDone);
  EXPECT_EQ(store->stats().io_operations, 2u + 16u);
  for (std::size_t i = 0; i < 16; ++i)
    EXPECT_TRUE(block_matches(hashes[15 - i], {back.data() + i * 16384, 16384}));
}

TEST_P(BothBackends, MisalignedHostBuffersWorkWithODirect) {
  KVO_SKIP_UNLESS_BACKEND(GetParam());
  auto store = open_store(8192, 16);
  HostBuffer host(4 * 8192, 24), back(4 * 8192, 40);
  const std::vector<BlockId> slots{0, 1, 2, 3};
  const auto hashes = fresh_hashes(4, 5);
  ASSERT_EQ(write_blocks(*store, slots, hashes, host.data()).state, DiskJobState::kDone);
  const auto status = read_blocks(*store, slots, hashes, back.data());
  ASSERT_EQ(status.state, DiskJobState::kDone) << status.error;
  for (std::size_t i = 0; i < 4; ++i)
    EXPECT_TRUE(block_matches(hashes[i], {back.data() + i * 8192, 8192}));
}

TEST_P(BothBackends, RegisteredHostMemoryRoundTrips) {
  KVO_SKIP_UNLESS_BACKEND(GetParam());
  auto store = open_store(65536, 32);
  HostBuffer pool(32 * 65536);
  store->register_host_memory({pool.data(), pool.size()});
  if (GetParam() == IoBackend::kIoUring) expect_contains(store->description(), "fixed buffer");
  std::vector<BlockId> slots{31, 7, 8, 9, 0};
  const auto hashes = fresh_hashes(slots.size(), 9);
  ASSERT_EQ(write_blocks(*store, slots, hashes, pool.data()).state, DiskJobState::kDone);
  std::byte* back   = pool.data() + 16 * 65536;
  const auto status = read_blocks(*store, slots, hashes, back);
  ASSERT_EQ(status.state, DiskJobState::kDone) << status.error;
  for (std::size_t i = 0; i < slots.size(); ++i)
    EXPECT_TRUE(block_matches(hashes[i], {back + i * 65536, 65536}));
  EXPECT_THROW(store->register_host_memory({pool.data(), pool.size()}), logic_error);
}

TEST(BlockStore, CapacityIsNeverExceededAndFilesAreOwnerOnly) {
  TempDir a, b;
  BlockStoreOptions options;
  options.directories    = {a.path(), b.path()};
  options.block_bytes    = 100'000;  // slot 102400
  options.capacity_bytes = 5'000'000;
  options.backend        = IoBackend::kThreadPool;
  auto store             = make_block_store(options);
  std::uint64_t total    = 0;
  for (const auto* d : {&a, &b}) {
    for (const char* name : {format::kDataFileName, format::kMetaFileName}) {
      struct stat st {};
      ASSERT_EQ(::stat((d->path() / name).c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 0777, 0600u) << name;
      total += static_cast<std::uint64_t>(std::max<off_t>(st.st_size, st.st_blocks * 512));
    }
  }
  EXPECT_LE(total, options.capacity_bytes);
  // The largest number of slots that fits: one more would not.
  EXPECT_GT(total + store->slot_bytes(), options.capacity_bytes);
  EXPECT_EQ(store->num_slots(), 48u);  // (5e6 - 2 * 4096 data headers - 2 * 8192 meta) / 102400
}

TEST(BlockStore, CompletionDelayHoldsJobsPending) {
  TempDir dir;
  auto options             = small_store(dir.path(), 4096, 8);
  options.completion_delay = std::chrono::milliseconds{80};
  auto store               = make_block_store(options);
  HostBuffer host(4096);
  fill_block(1, {host.data(), 4096});
  const DiskWrite w{3, 1, host.data()};
  const auto start = std::chrono::steady_clock::now();
  const auto id    = store->submit_write({&w, 1});
  std::this_thread::sleep_for(std::chrono::milliseconds{20});
  EXPECT_EQ(store->poll(id).state, DiskJobState::kPending);
  // A slot under a pending write is refused to readers and writers alike.
  const DiskRead r{3, 1, host.data()};
  EXPECT_THROW((void)store->submit_read({&r, 1}), logic_error);
  EXPECT_THROW((void)store->submit_write({&w, 1}), logic_error);
  EXPECT_THROW(store->discard(3), logic_error);
  EXPECT_EQ(store->wait(id).state, DiskJobState::kDone);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds{80});
  EXPECT_THROW(store->poll(id), logic_error);  // retired
}

// ---- restart ----

TEST_P(BothBackends, PersistentStoreRecoversItsBlocksAfterReopen) {
  KVO_SKIP_UNLESS_BACKEND(GetParam());
  TempDir a, b;
  auto options        = small_store(a.path(), 20000, 40, /*persistent=*/true);
  options.directories = {a.path(), b.path()};
  options.capacity_bytes *= 2;
  options.backend = GetParam();
  const std::vector<BlockId> slots{0, 1, 2, 5, 17, 30};
  const auto hashes = fresh_hashes(slots.size(), 11);
  HostBuffer host(slots.size() * 20000);
  {
    auto store = make_block_store(options);
    EXPECT_TRUE(store->recovered().empty());
    ASSERT_EQ(write_blocks(*store, slots, hashes, host.data()).state, DiskJobState::kDone);
    store->discard(5);
    store->flush();
  }
  auto store = make_block_store(options);
  std::vector<RecoveredBlock> want;
  for (std::size_t i = 0; i < slots.size(); ++i)
    if (slots[i] != 5) want.push_back({slots[i], hashes[i]});
  ASSERT_EQ(store->recovered().size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(store->recovered()[i].slot, want[i].slot);
    EXPECT_EQ(store->recovered()[i].hash, want[i].hash);
  }
  EXPECT_EQ(store->stats().blocks_recovered, want.size());
  EXPECT_EQ(store->stats().blocks_discarded, 0u);
  HostBuffer back(slots.size() * 20000);
  const auto status = read_blocks(*store, slots, hashes, back.data());
  EXPECT_EQ(status.lost, std::vector<BlockId>{5});  // discarded: never served
  for (std::size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] != 5)
      EXPECT_TRUE(block_matches(hashes[i], {back.data() + i * 20000, 20000})) << slots[i];
  }
}

TEST(BlockStore, NonPersistentStoreStartsEmptyAndRemovesItsFiles) {
  TempDir dir;
  auto options = small_store(dir.path(), 4096, 8);
  HostBuffer host(4096);
  {
    auto store = make_block_store(options);
    ASSERT_EQ(write_blocks(*store, {1}, {42}, host.data()).state, DiskJobState::kDone);
  }
  EXPECT_FALSE(fs::exists(dir / format::kDataFileName));
  options.persistent = true;
  auto store         = make_block_store(options);
  EXPECT_TRUE(store->recovered().empty());
  EXPECT_EQ(read_blocks(*store, {1}, {42}, host.data()).lost, std::vector<BlockId>{1});
}

TEST(BlockStore, ReopenWithAnotherGeometryOrVersionNamesTheFile) {
  TempDir dir;
  auto options = small_store(dir.path(), 8192, 16, true);
  { make_block_store(options); }
  auto other        = options;
  other.block_bytes = 4096;
  std::string what  = error_of<runtime_error>([&] { make_block_store(other); });
  expect_contains(what, (dir / format::kDataFileName).string());
  expect_contains(what, "another geometry");
  // Non-persistent: the files are recreated with the new geometry.
  other.persistent = false;
  EXPECT_NO_THROW(make_block_store(other));

  { make_block_store(options); }
  // Another format version in the header.
  const int fd = ::open((dir / format::kDataFileName).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const std::uint32_t version = format::kFormatVersion + 1;
  ASSERT_EQ(::pwrite(fd, &version, 4, offsetof(format::FileHeader, format_version)), 4);
  ::close(fd);
  what = error_of<runtime_error>([&] { make_block_store(options); });
  expect_contains(what, (dir / format::kDataFileName).string());
  expect_contains(what, "format version 2");
}

// ---- corruption ----

class BlockStoreCorruption : public ::testing::Test {
 protected:
  static constexpr std::size_t kBlock = 12288;
  void SetUp() override {
    options_   = small_store(dir_.path(), kBlock, 16, true);
    auto store = make_block_store(options_);
    ASSERT_EQ(write_blocks(*store, slots_, hashes_, host_.data()).state, DiskJobState::kDone);
  }
  void poke(const char* file, std::uint64_t offset, std::uint8_t xor_mask = 0x01) {
    const int fd = ::open((dir_ / file).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    std::uint8_t byte = 0;
    ASSERT_EQ(::pread(fd, &byte, 1, static_cast<off_t>(offset)), 1);
    byte ^= xor_mask;
    ASSERT_EQ(::pwrite(fd, &byte, 1, static_cast<off_t>(offset)), 1);
    ::close(fd);
  }
  std::uint64_t record_field(BlockId slot, std::size_t field_offset) const {
    return format::record_offset(static_cast<std::uint64_t>(slot)) + field_offset;
  }
  /// Reopens, then reads every block: returns the lost slots; the others must be intact.
  std::vector<BlockId> reopen_and_read(std::size_t expect_recovered) {
    auto store = make_block_store(options_);
    EXPECT_EQ(store->recovered().size(), expect_recovered);
    HostBuffer back(slots_.size() * kBlock);
    const auto status = read_blocks(*store, slots_, hashes_, back.data());
    EXPECT_EQ(store->stats().blocks_lost, status.lost.size());
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (std::find(status.lost.begin(), status.lost.end(), slots_[i]) == status.lost.end())
        EXPECT_TRUE(block_matches(hashes_[i], {back.data() + i * kBlock, kBlock})) << slots_[i];
    }
    stats_ = store->stats();
    return status.lost;
  }

  TempDir dir_;
  BlockStoreOptions options_;
  std::vector<BlockId> slots_{0, 3, 4, 9, 15};
  std::vector<BlockHash> hashes_ = fresh_hashes(5, 21);
  HostBuffer host_{5 * kBlock};
  BlockStoreStats stats_;
};

TEST_F(BlockStoreCorruption, FlippedPayloadByteIsLostNotServed) {
  poke(format::kDataFileName, format::data_offset(4, 12288) + 5000);
  EXPECT_EQ(reopen_and_read(5), std::vector<BlockId>{4});
}

TEST_F(BlockStoreCorruption, FlippedPayloadByteWhileOpenIsLost) {
  auto store = make_block_store(options_);
  poke(format::kDataFileName, format::data_offset(9, 12288) + 12287);
  HostBuffer back(kBlock);
  const auto status = read_blocks(*store, {9}, {hashes_[3]}, back.data());
  EXPECT_EQ(status.lost, std::vector<BlockId>{9});
  EXPECT_EQ(store->stats().blocks_lost, 1u);
}

TEST_F(BlockStoreCorruption, FlippedStoredHashIsDiscardedAtOpen) {
  poke(format::kMetaFileName, record_field(3, offsetof(format::SlotRecord, hash)) + 2);
  EXPECT_EQ(reopen_and_read(4), std::vector<BlockId>{3});
  EXPECT_EQ(stats_.blocks_discarded, 1u);
}

TEST_F(BlockStoreCorruption, FlippedLengthIsDiscardedAtOpen) {
  poke(format::kMetaFileName, record_field(15, offsetof(format::SlotRecord, payload_bytes)));
  EXPECT_EQ(reopen_and_read(4), std::vector<BlockId>{15});
  EXPECT_EQ(stats_.blocks_discarded, 1u);
  // Counted once: the record was cleared.
  reopen_and_read(4);
  EXPECT_EQ(stats_.blocks_discarded, 0u);
}

TEST_F(BlockStoreCorruption, ForgedRecordWithAValidChecksumStillFailsTheCrc) {
  // Someone rewrites a record coherently (new hash, new record checksum): the payload CRC,
  // which covers the hash, catches it.
  const int fd = ::open((dir_ / format::kMetaFileName).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  format::SlotRecord r;
  ASSERT_EQ(::pread(fd, &r, sizeof r, format::record_offset(0)), 32);
  r.hash       = 777;
  r.record_crc = crc32c(
      std::span{reinterpret_cast<const std::byte*>(&r), offsetof(format::SlotRecord, record_crc)});
  ASSERT_EQ(::pwrite(fd, &r, sizeof r, format::record_offset(0)), 32);
  ::close(fd);
  auto store = make_block_store(options_);
  HostBuffer back(kBlock);
  EXPECT_EQ(read_blocks(*store, {0}, {777}, back.data()).lost, std::vector<BlockId>{0});
}

TEST_F(BlockStoreCorruption, TruncatedDataFileDropsTheBlocksBeyond) {
  ASSERT_EQ(::truncate((dir_ / format::kDataFileName).c_str(),
                       static_cast<off_t>(format::data_offset(4, 12288) + 100)),
            0);
  const auto lost = reopen_and_read(2);  // slots 0 and 3 lie below the cut
  EXPECT_EQ(lost, (std::vector<BlockId>{4, 9, 15}));
  EXPECT_EQ(stats_.blocks_discarded, 3u);
}

TEST_F(BlockStoreCorruption, WrongExpectedHashIsLost) {
  auto store = make_block_store(options_);
  HostBuffer back(2 * kBlock);
  const auto status = read_blocks(*store, {0, 3}, {hashes_[0], hashes_[0]}, back.data());
  EXPECT_EQ(status.state, DiskJobState::kDone);
  EXPECT_EQ(status.lost, std::vector<BlockId>{3});
  EXPECT_TRUE(block_matches(hashes_[0], {back.data(), kBlock}));
}

// ---- misuse ----

TEST(BlockStore, MisuseThrowsLogicErrorAndChangesNothing) {
  TempDir dir;
  auto store = make_block_store(small_store(dir.path(), 4096, 8));
  HostBuffer host(2 * 4096);
  const DiskWrite out_of_range{8, 1, host.data()};
  expect_contains(error_of<logic_error>([&] {
                    (void)store->submit_write({&out_of_range, 1});
                  }),
                  "slot 8 is outside 0..7");
  const DiskWrite negative{-1, 1, host.data()};
  EXPECT_THROW((void)store->submit_write({&negative, 1}), logic_error);
  const DiskWrite twice[] = {{2, 1, host.data()}, {2, 2, host.data() + 4096}};
  expect_contains(error_of<logic_error>([&] { (void)store->submit_write(twice); }),
                  "slot 2 appears twice");
  const DiskRead null_buffer{1, 1, nullptr};
  expect_contains(error_of<logic_error>([&] {
                    (void)store->submit_read({&null_buffer, 1});
                  }),
                  "null buffer for slot 1");
  expect_contains(error_of<logic_error>([&] { store->poll(99); }), "job 99 is unknown");
  EXPECT_THROW(store->wait(99), logic_error);
  EXPECT_THROW(store->discard(8), logic_error);
  // Nothing changed: the slots are free and the store works.
  const auto stats = store->stats();
  EXPECT_EQ(stats.write_jobs + stats.read_jobs, 0u);
  ASSERT_EQ(write_blocks(*store, {2}, {5}, host.data()).state, DiskJobState::kDone);
  EXPECT_TRUE(read_blocks(*store, {2}, {5}, host.data()).lost.empty());
}

TEST(BlockStore, BadOptionsThrowLogicError) {
  TempDir dir;
  auto options    = small_store(dir.path(), 4096, 8);
  auto bad        = options;
  bad.block_bytes = 0;
  EXPECT_THROW(make_block_store(bad), logic_error);
  bad.block_bytes = (std::size_t{1} << 30) + 1;
  expect_contains(error_of<logic_error>([&] { make_block_store(bad); }), "above the limit");
  bad                = options;
  bad.capacity_bytes = 8192;
  expect_contains(error_of<logic_error>([&] { make_block_store(bad); }), "below one slot");
  bad             = options;
  bad.directories = {};
  EXPECT_THROW(make_block_store(bad), logic_error);
  bad             = options;
  bad.directories = {dir.path(), dir.path()};
  expect_contains(error_of<logic_error>([&] { make_block_store(bad); }), "listed twice");
  bad             = options;
  bad.queue_depth = 0;
  EXPECT_THROW(make_block_store(bad), logic_error);
}

}  // namespace
