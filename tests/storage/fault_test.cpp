// Faults of the environment: missing and read-only directories, no space at open, a full file
// system and a file-size limit during a job, a second store on the same directories (this
// process and another), io_uring unavailable. Each fails with a clear error naming the path or
// the slot; the store stays usable.
#include "storage/format.hpp"
#include "storage/store_test_util.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <numeric>

namespace {

using namespace kvoffload;
using namespace kvoffload::storage;
using namespace kvoffload::testing;
namespace format = kvoffload::storage::detail;

TEST(BlockStoreFaults, MissingDirectoryIsNamed) {
  TempDir dir;
  const fs::path missing = dir / "not-there";
  const auto what =
      error_of<runtime_error>([&] { make_block_store(small_store(missing, 4096, 4)); });
  expect_contains(what, missing.string());
  expect_contains(what, "does not exist");
}

TEST(BlockStoreFaults, ReadOnlyDirectoryIsNamed) {
  TempDir dir;
  std::string why;
  // We may run as root, which writes through any permission bits: only a read-only mount stops it.
  if (!dir.mount_tmpfs("size=1m", MS_RDONLY, why)) GTEST_SKIP() << why;
  const auto what =
      error_of<runtime_error>([&] { make_block_store(small_store(dir.path(), 4096, 4)); });
  expect_contains(what, dir.path().string());
  expect_contains(what, "EROFS");
}

TEST(BlockStoreFaults, NotEnoughSpaceAtOpenIsNamedAndLeavesNoFiles) {
  TempDir dir;
  std::string why;
  if (!dir.mount_tmpfs("size=8m", 0, why)) GTEST_SKIP() << why;
  const auto what = error_of<runtime_error>(
      [&] { make_block_store(small_store(dir.path(), 1 << 20, 64)); });  // 64 MiB on 8 MiB
  expect_contains(what, "not enough space");
  expect_contains(what, (dir / format::kDataFileName).string());
  EXPECT_FALSE(fs::exists(dir / format::kDataFileName));
  EXPECT_FALSE(fs::exists(dir / format::kMetaFileName));
  // A capacity that fits opens.
  EXPECT_NO_THROW(make_block_store(small_store(dir.path(), 1 << 20, 4)));
}

TEST(BlockStoreFaults, ODirectRefusedFallsBackToBufferedWithOneLogLine) {
  TempDir dir;
  std::string why;
  // ramfs refuses O_DIRECT at open (EINVAL) and has no fallocate: both fallbacks run.
  if (!dir.mount_fs("ramfs", "", 0, why)) GTEST_SKIP() << why;
  auto options = small_store(dir.path(), 12288, 8);
  ::testing::internal::CaptureStderr();
  auto store        = make_block_store(options);
  const auto logged = ::testing::internal::GetCapturedStderr();
  expect_contains(logged, "O_DIRECT refused for " + (dir / format::kDataFileName).string());
  EXPECT_EQ(std::count(logged.begin(), logged.end(), '\n'), 1) << logged;
  expect_contains(store->description(), "buffered");
  const std::vector<BlockId> slots{0, 5, 6};
  const std::vector<BlockHash> hashes{11, 12, 13};
  HostBuffer host(3 * 12288, 8);
  ASSERT_EQ(write_blocks(*store, slots, hashes, host.data()).state, DiskJobState::kDone);
  const auto status = read_blocks(*store, slots, hashes, host.data());
  ASSERT_EQ(status.state, DiskJobState::kDone) << status.error;
  EXPECT_TRUE(status.lost.empty());
  for (std::size_t i = 0; i < 3; ++i)
    EXPECT_TRUE(block_matches(hashes[i], {host.data() + i * 12288, 12288}));
}

TEST(BlockStoreFaults, FullFileSystemFailsTheJobAndNothingElse) {
  TempDir dir;
  std::string why;
  if (!dir.mount_tmpfs("size=8m", 0, why)) GTEST_SKIP() << why;
  constexpr std::size_t kBlock = 65536;
  auto store                   = make_block_store(small_store(dir.path(), kBlock, 16));
  std::vector<BlockId> all(16);
  std::iota(all.begin(), all.end(), BlockId{0});
  std::vector<BlockHash> hashes(16);
  std::iota(hashes.begin(), hashes.end(), BlockHash{100});
  HostBuffer host(16 * kBlock);
  ASSERT_EQ(write_blocks(*store, all, hashes, host.data()).state, DiskJobState::kDone);

  // The file loses its tail behind the store's back, and the file system fills up.
  const fs::path data = dir / format::kDataFileName;
  ASSERT_EQ(::truncate(data.c_str(), static_cast<off_t>(format::data_offset(4, kBlock))), 0);
  const fs::path filler = dir / "filler";
  {
    const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    std::vector<char> chunk(1 << 16, 'x');
    while (::write(fd, chunk.data(), chunk.size()) > 0) {
    }
    ::close(fd);
  }
  auto status = write_blocks(*store, {10}, {999}, host.data());
  ASSERT_EQ(status.state, DiskJobState::kFailed);
  expect_contains(status.error, "ENOSPC");
  expect_contains(status.error, "slot 10");
  expect_contains(status.error, data.string());
  // The failed write dropped slot 10's old block; a read past the cut fails with the reason;
  // the slots below the cut are untouched.
  EXPECT_EQ(read_blocks(*store, {10}, {hashes[10]}, host.data()).lost, std::vector<BlockId>{10});
  status = read_blocks(*store, {12}, {hashes[12]}, host.data());
  ASSERT_EQ(status.state, DiskJobState::kFailed);
  expect_contains(status.error, "short read");
  expect_contains(status.error, "slot 12");
  EXPECT_EQ(status.lost, std::vector<BlockId>{12});
  status = read_blocks(*store, {1, 3}, {hashes[1], hashes[3]}, host.data());
  ASSERT_EQ(status.state, DiskJobState::kDone) << status.error;
  EXPECT_TRUE(block_matches(hashes[1], {host.data(), kBlock}));
  EXPECT_TRUE(block_matches(hashes[3], {host.data() + kBlock, kBlock}));
  EXPECT_EQ(store->stats().failed_jobs, 2u);
  // Space again: the next job works.
  fs::remove(filler);
  ASSERT_EQ(write_blocks(*store, {10}, {999}, host.data()).state, DiskJobState::kDone);
  status = read_blocks(*store, {10}, {999}, host.data());
  ASSERT_EQ(status.state, DiskJobState::kDone) << status.error;
  EXPECT_TRUE(block_matches(999, {host.data(), kBlock}));
}

TEST(BlockStoreFaults, FileSizeLimitInAChildFailsTheWriteNamingTheSlot) {
  TempDir dir;
  constexpr std::size_t kBlock = 65536;
  const auto options           = small_store(dir.path(), kBlock, 16);
  const pid_t pid              = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Exit codes: 0 all as expected, 10+ the step that went wrong.
    try {
      std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of a signal
      auto store          = make_block_store(options);
      const fs::path data = dir / format::kDataFileName;
      if (::truncate(data.c_str(), static_cast<off_t>(format::data_offset(2, kBlock))) != 0)
        ::_exit(10);
      const rlimit limit{format::data_offset(4, kBlock), format::data_offset(4, kBlock)};
      if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(11);
      HostBuffer host(kBlock);
      const auto failed = write_blocks(*store, {8}, {1}, host.data());
      if (failed.state != DiskJobState::kFailed) ::_exit(12);
      if (failed.error.find("EFBIG") == std::string::npos ||
          failed.error.find("slot 8") == std::string::npos)
        ::_exit(13);
      if (write_blocks(*store, {1}, {2}, host.data()).state != DiskJobState::kDone) ::_exit(14);
      if (!read_blocks(*store, {1}, {2}, host.data()).lost.empty()) ::_exit(15);
      if (!block_matches(2, {host.data(), kBlock})) ::_exit(16);
      ::_exit(0);
    } catch (...) {
      ::_exit(17);
    }
  }
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 0) << "step " << WEXITSTATUS(wstatus) << " (see the child)";
}

TEST(BlockStoreFaults, SecondStoreOnTheSameDirectoriesIsRefused) {
  TempDir a, b;
  auto options        = small_store(a.path(), 4096, 8, true);
  options.directories = {a.path(), b.path()};
  options.capacity_bytes *= 2;
  {
    auto first = make_block_store(options);
    // Same process, and a second list sharing only the second directory.
    auto only_b     = small_store(b.path(), 4096, 8, true);
    const auto what = error_of<runtime_error>([&] { make_block_store(only_b); });
    expect_contains(what, (b / format::kLockFileName).string());
    expect_contains(what, "locked by another block store");
    EXPECT_THROW(make_block_store(options), runtime_error);
    // Another process.
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        make_block_store(options);
        ::_exit(1);  // opened: the lock did not hold
      } catch (const runtime_error& e) {
        ::_exit(std::string{e.what()}.find("locked") != std::string::npos ? 0 : 2);
      } catch (...) {
        ::_exit(3);
      }
    }
    int wstatus = 0;
    ::waitpid(pid, &wstatus, 0);
    ASSERT_TRUE(WIFEXITED(wstatus));
    EXPECT_EQ(WEXITSTATUS(wstatus), 0);
  }
  EXPECT_NO_THROW(make_block_store(options));  // released with the first store
}

TEST(BlockStoreFaults, IoUringForcedUnavailable) {
  TempDir dir;
  auto options       = small_store(dir.path(), 4096, 8);
  const char* before = std::getenv("KVOFFLOAD_DISABLE_IO_URING");
  const std::string saved{before != nullptr ? before : ""};
  ::setenv("KVOFFLOAD_DISABLE_IO_URING", "1", 1);
  options.backend = IoBackend::kIoUring;
  const auto what = error_of<runtime_error>([&] { make_block_store(options); });
  expect_contains(what, "KVOFFLOAD_DISABLE_IO_URING");
  options.backend = IoBackend::kAuto;
  auto store      = make_block_store(options);
  if (before != nullptr) {
    ::setenv("KVOFFLOAD_DISABLE_IO_URING", saved.c_str(), 1);
  } else {
    ::unsetenv("KVOFFLOAD_DISABLE_IO_URING");
  }
  expect_contains(store->description(), "thread pool");
  HostBuffer host(4096);
  ASSERT_EQ(write_blocks(*store, {3}, {8}, host.data()).state, DiskJobState::kDone);
  EXPECT_TRUE(read_blocks(*store, {3}, {8}, host.data()).lost.empty());
  EXPECT_TRUE(block_matches(8, {host.data(), 4096}));
}

}  // namespace
