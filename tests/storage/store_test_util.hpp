/**
 * @file store_test_util.hpp
 * @brief Helpers shared by the block store tests: temporary directories, block contents that a
 * hash determines, and write/read round trips.
 */
#pragma once

#include <kvoffload/error.hpp>
#include <kvoffload/storage/block_store.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include <sys/mount.h>
#include <unistd.h>

namespace kvoffload::storage {
/// The back end's short name, for test names and for GoogleTest's parameter printing (without
/// it, a failure prints the enum as "1-byte object <01>").
inline const char* backend_name(IoBackend backend) {
  switch (backend) {
    case IoBackend::kIoUring:
      return "uring";
    case IoBackend::kThreadPool:
      return "pool";
    case IoBackend::kAuto:
      return "auto";
  }
  return "?";
}
inline void PrintTo(IoBackend backend, std::ostream* os) {
  *os << backend_name(backend);
}
}  // namespace kvoffload::storage

namespace kvoffload::testing {

namespace fs = std::filesystem;

/// A fresh directory under the system temp directory, removed (with any mount on it) at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "kvo-store-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&)            = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const fs::path& path() const { return path_; }
  [[nodiscard]] fs::path operator/(const char* name) const { return path_ / name; }

  /// Mount a tmpfs of `options` (e.g. "size=8m") here; false (with errno's text in `why`) when
  /// mount(2) is not allowed.
  bool mount_tmpfs(const char* options, unsigned long flags, std::string& why) {
    return mount_fs("tmpfs", options, flags, why);
  }

  /// Mount a file system of `type` (tmpfs, ramfs) here, like mount_tmpfs.
  bool mount_fs(const char* type, const char* options, unsigned long flags, std::string& why) {
    if (::mount(type, path_.c_str(), type, flags, options) != 0) {
      why = std::string{"mount -t "} + type + " failed: " + std::strerror(errno);
      return false;
    }
    mounted_ = true;
    return true;
  }

 private:
  fs::path path_;
  bool mounted_{false};
};

inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z               = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z               = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The bytes of block `hash`: a stream its hash seeds, so any reader can check them.
inline void fill_block(BlockHash hash, std::span<std::byte> out) {
  std::uint64_t state = hash;
  for (std::size_t i = 0; i < out.size(); i += 8) {
    const std::uint64_t word = splitmix64(state);
    std::memcpy(out.data() + i, &word, std::min<std::size_t>(8, out.size() - i));
  }
}

inline bool block_matches(BlockHash hash, std::span<const std::byte> bytes) {
  std::vector<std::byte> want(bytes.size());
  fill_block(hash, want);
  return std::memcmp(want.data(), bytes.data(), bytes.size()) == 0;
}

inline void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

/// `what()` of the exception `call` throws as `Exception`, or "" (and a failure) if none.
template <class Exception, class Call>
std::string error_of(Call&& call) {
  try {
    call();
  } catch (const Exception& e) {
    return e.what();
  }
  ADD_FAILURE() << "no exception thrown";
  return {};
}

/// Host memory aligned to 4 KiB (O_DIRECT) unless `misalign` shifts it.
class HostBuffer {
 public:
  explicit HostBuffer(std::size_t bytes, std::size_t misalign = 0)
      : raw_(static_cast<std::byte*>(
            std::aligned_alloc(4096, (bytes + misalign + 4095) / 4096 * 4096))),
        bytes_{bytes},
        misalign_{misalign} {}
  ~HostBuffer() { std::free(raw_); }
  HostBuffer(const HostBuffer&)            = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  [[nodiscard]] std::byte* data() const { return raw_ + misalign_; }
  [[nodiscard]] std::size_t size() const { return bytes_; }

 private:
  std::byte* raw_;
  std::size_t bytes_, misalign_;
};

/// Write `hashes[i]` (its fill_block bytes, staged in `host` at i * block_bytes) to `slots[i]`.
inline storage::DiskJobStatus write_blocks(storage::BlockStore& store,
                                           const std::vector<BlockId>& slots,
                                           const std::vector<BlockHash>& hashes,
                                           std::byte* host) {
  const std::size_t bytes = store.block_bytes();
  std::vector<storage::DiskWrite> writes;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    fill_block(hashes[i], {host + i * bytes, bytes});
    writes.push_back({slots[i], hashes[i], host + i * bytes});
  }
  return store.wait(store.submit_write(writes));
}

/// Read `slots[i]` expecting `hashes[i]` into `host` at i * block_bytes (poisoned first).
inline storage::DiskJobStatus read_blocks(storage::BlockStore& store,
                                          const std::vector<BlockId>& slots,
                                          const std::vector<BlockHash>& hashes,
                                          std::byte* host) {
  const std::size_t bytes = store.block_bytes();
  std::memset(host, 0xA5, slots.size() * bytes);
  std::vector<storage::DiskRead> reads;
  for (std::size_t i = 0; i < slots.size(); ++i)
    reads.push_back({slots[i], hashes[i], host + i * bytes});
  return store.wait(store.submit_read(reads));
}

/// Options of a small store in `dir` (a few slots of `block_bytes`).
inline storage::BlockStoreOptions small_store(const fs::path& dir,
                                              std::size_t block_bytes,
                                              std::size_t slots,
                                              bool persistent = false) {
  storage::BlockStoreOptions options;
  options.directories = {dir};
  options.block_bytes = block_bytes;
  // Headers (4 KiB data + 4 KiB meta) plus the records, rounded, plus the slots.
  const std::size_t slot_bytes = (block_bytes + 4095) / 4096 * 4096;
  options.capacity_bytes       = 8192 + (slots * 32 + 4095) / 4096 * 4096 + slots * slot_bytes;
  options.persistent           = persistent;
  options.backend              = storage::IoBackend::kThreadPool;
  return options;
}

/// Why a store cannot use io_uring here (empty when it can): liburing missing at build time, or
/// a kernel or sandbox that refuses the ring. Checked once.
inline const std::string& io_uring_unavailable_reason() {
  static const std::string why = [] {
    TempDir dir;
    auto options    = small_store(dir.path(), 4096, 1);
    options.backend = storage::IoBackend::kIoUring;
    try {
      (void)storage::make_block_store(options);
      return std::string{};
    } catch (const std::exception& e) {
      return std::string{e.what()};
    }
  }();
  return why;
}

}  // namespace kvoffload::testing

/// Skip the current test when it asks for io_uring and this machine cannot give it.
#define KVO_SKIP_UNLESS_BACKEND(backend)                                   \
  do {                                                                     \
    if ((backend) == ::kvoffload::storage::IoBackend::kIoUring &&          \
        !::kvoffload::testing::io_uring_unavailable_reason().empty())      \
      GTEST_SKIP() << "io_uring unavailable: "                             \
                   << ::kvoffload::testing::io_uring_unavailable_reason(); \
  } while (0)
