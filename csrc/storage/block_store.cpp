// The block store on files: geometry and files at open, recovery from the slot records, job
// validation and bookkeeping, checksums and records around each I/O. The bytes themselves are
// moved by an IoEngine (io_uring or a thread pool, storage/io_engine.hpp).
#include "storage/crc32c.hpp"
#include "storage/format.hpp"
#include "storage/io_engine.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/storage/block_store.hpp>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kvoffload::storage {

namespace detail {
namespace {

namespace fs = std::filesystem;
using Clock  = std::chrono::steady_clock;

/// Merged runs stop growing at this size so one I/O never monopolises the queue.
constexpr std::size_t kMaxRunBytes = std::size_t{8} << 20;
/// One I/O's length must fit io_uring's 32-bit length field and the record's payload length.
constexpr std::size_t kMaxBlockBytes = std::size_t{1} << 30;

void log_line(const std::string& text) {
  std::fprintf(stderr, "kvoffload: %s\n", text.c_str());
}

/// An owned file descriptor.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_{fd} {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_{std::exchange(other.fd_, -1)} {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~FileDescriptor() { reset(); }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  [[nodiscard]] int get() const noexcept { return fd_; }

 private:
  int fd_{-1};
};

struct FreeDeleter {
  void operator()(std::byte* p) const noexcept { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<std::byte, FreeDeleter>;

AlignedBuffer aligned_buffer(std::size_t bytes) {
  void* p = std::aligned_alloc(kSlotAlignment, round_up(bytes, kSlotAlignment));
  if (p == nullptr) throw std::bad_alloc{};
  return AlignedBuffer{static_cast<std::byte*>(p)};
}

/// Write all of `bytes` at `offset`; returns 0 or the errno (EIO-like for a short write).
int write_fully(int fd, const void* bytes, std::size_t length, std::uint64_t offset) {
  const auto* p = static_cast<const std::byte*>(bytes);
  while (length > 0) {
    const ssize_t n = ::pwrite(fd, p, length, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    p += n;
    length -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return 0;
}

/// Read all of `length` bytes at `offset`; returns the bytes read (fewer at end of file), or
/// -errno.
ssize_t read_fully(int fd, void* bytes, std::size_t length, std::uint64_t offset) {
  auto* p          = static_cast<std::byte*>(bytes);
  std::size_t done = 0;
  while (done < length) {
    const ssize_t n = ::pread(fd, p + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

std::uint32_t header_checksum(const FileHeader& header) {
  return crc32c_table(
      reinterpret_cast<const std::byte*>(&header), offsetof(FileHeader, header_crc), 0);
}

std::uint32_t record_checksum(const SlotRecord& record) {
  return crc32c(
      std::span{reinterpret_cast<const std::byte*>(&record), offsetof(SlotRecord, record_crc)});
}

/// CRC32C of the 8 hash bytes, then the payload: a payload stored under another hash fails.
std::uint32_t payload_checksum(BlockHash hash, const std::byte* payload, std::size_t bytes) {
  std::byte hash_bytes[sizeof hash];
  std::memcpy(hash_bytes, &hash, sizeof hash);
  return crc32c(std::span{payload, bytes}, crc32c(hash_bytes));
}

constexpr std::uint16_t kRecordChecksummed = 2;  ///< payload_crc was computed (verify on)

/// One directory's files.
struct DirectoryFiles {
  fs::path directory;
  fs::path data_path, meta_path, lock_path;
  FileDescriptor lock_fd;
  FileDescriptor data_fd;  ///< buffered: header, preallocation, flush
  FileDescriptor io_fd;    ///< the one jobs use: O_DIRECT when accepted, else data_fd's twin
  FileDescriptor meta_fd;  ///< buffered: records
  bool direct{false};
  std::uint64_t slots{0};  ///< local slots
};

struct Block {
  BlockId slot{0};
  BlockHash hash{0};
  std::byte* bytes{nullptr};  ///< writes never write through it
};

struct Job;

/// The context of one IoTask: a run of blocks of a job, adjacent on disk.
struct Run {
  Job* job{nullptr};
  std::size_t first{0}, count{0};  ///< into job->blocks
  unsigned directory{0};
  std::uint64_t first_local{0};
  bool invalidate_records{false};  ///< a record of the run is valid on disk (writes)
  AlignedBuffer bounce;            ///< O_DIRECT with an unaligned host buffer or block size
  std::string error;
  std::vector<BlockId> lost;
  IoTask task;
};

struct Job {
  bool write{false};
  std::vector<Block> blocks;         ///< sorted by (directory, local slot)
  std::vector<std::uint32_t> crcs;   ///< writes: computed before the I/O; reads: expected
  std::vector<std::uint16_t> flags;  ///< reads: the record's flags at submit
  std::vector<Run> runs;             ///< never resized once tasks point into it
  std::size_t runs_left{0};          ///< guarded by the store's mutex
  std::string error;                 ///< first failure, guarded likewise
  std::vector<BlockId> lost;         ///< guarded likewise
  Clock::time_point ready_at;
  bool finished{false};
};

class FileBlockStore final : public BlockStore, private IoTaskHandler {
 public:
  explicit FileBlockStore(const BlockStoreOptions& options) : options_{options} {
    validate_options();
    slot_bytes_ = round_up(options_.block_bytes, kSlotAlignment);
    compute_geometry();
    open_directories();
    start_engine();
  }

  ~FileBlockStore() override {
    engine_.reset();  // finishes every queued I/O before files and jobs go
    if (!options_.persistent) {
      for (auto& d : dirs_) {
        std::error_code ignored;
        fs::remove(d.data_path, ignored);
        fs::remove(d.meta_path, ignored);
      }
    }
  }

  DiskJobId submit_write(std::span<const DiskWrite> blocks) override {
    auto job   = std::make_shared<Job>();
    job->write = true;
    job->blocks.reserve(blocks.size());
    for (const DiskWrite& b : blocks) {
      KVO_EXPECTS(b.bytes != nullptr,
                  "block store: null buffer for slot " + std::to_string(b.slot));
      job->blocks.push_back({b.slot, b.hash, const_cast<std::byte*>(b.bytes)});
    }
    return submit(std::move(job));
  }

  DiskJobId submit_read(std::span<const DiskRead> blocks) override {
    auto job = std::make_shared<Job>();
    job->blocks.reserve(blocks.size());
    for (const DiskRead& b : blocks) {
      KVO_EXPECTS(b.bytes != nullptr,
                  "block store: null buffer for slot " + std::to_string(b.slot));
      job->blocks.push_back({b.slot, b.hash, b.bytes});
    }
    return submit(std::move(job));
  }

  DiskJobStatus poll(DiskJobId id) override {
    std::unique_lock lock{mutex_};
    auto it = find(id);
    if (!it->second->finished || Clock::now() < it->second->ready_at) return {};
    return retire(it);
  }

  DiskJobStatus wait(DiskJobId id) override {
    std::unique_lock lock{mutex_};
    auto it                  = find(id);
    std::shared_ptr<Job> job = it->second;
    job_done_.wait(lock, [&] { return job->finished; });
    if (Clock::now() < job->ready_at) {
      lock.unlock();
      std::this_thread::sleep_until(job->ready_at);
      lock.lock();
      it = find(id);
    }
    return retire(it);
  }

  void discard(BlockId slot) override {
    std::lock_guard lock{mutex_};
    check_slot(slot);
    const auto s = static_cast<std::size_t>(slot);
    KVO_EXPECTS(
        slot_use_[s] == 0,
        "block store: discard of slot " + std::to_string(slot) + ", which a pending job uses");
    if ((records_[s].flags & kRecordValid) == 0) return;
    if (options_.persistent) {
      const DirectoryFiles& d = dirs_[s % dirs_.size()];
      const SlotRecord zero{};
      if (const int e =
              write_fully(d.meta_fd.get(), &zero, sizeof zero, record_offset(s / dirs_.size()));
          e != 0) {
        KVO_FAIL(errno_text(e) + " invalidating the record of slot " + std::to_string(slot) +
                 " in " + d.meta_path.string());
      }
    }
    records_[s] = SlotRecord{};
  }

  void flush() override {
    for (const auto& d : dirs_) {
      if (::fdatasync(d.data_fd.get()) != 0)
        KVO_FAIL(errno_text(errno) + " in fdatasync of " + d.data_path.string());
      if (::fdatasync(d.meta_fd.get()) != 0)
        KVO_FAIL(errno_text(errno) + " in fdatasync of " + d.meta_path.string());
    }
  }

  const std::vector<RecoveredBlock>& recovered() const noexcept override { return recovered_; }
  std::size_t num_slots() const noexcept override { return num_slots_; }
  std::size_t block_bytes() const noexcept override { return options_.block_bytes; }
  std::size_t slot_bytes() const noexcept override { return slot_bytes_; }

  BlockStoreStats stats() const override {
    std::lock_guard lock{mutex_};
    return stats_;
  }

  std::string description() const override {
    std::string text = "block store: " + std::to_string(num_slots_) + " slots of " +
                       std::to_string(slot_bytes_) + " bytes (block " +
                       std::to_string(options_.block_bytes) + ") over " +
                       std::to_string(dirs_.size()) + " file(s) [";
    for (std::size_t i = 0; i < dirs_.size(); ++i) {
      text += (i ? ", " : "") + dirs_[i].data_path.string() +
              (dirs_[i].direct ? " O_DIRECT" : " buffered");
    }
    text += "]; " + engine_->description() +
            "; crc32c: " + (options_.verify_checksums ? crc32c_implementation() : "off") + "; " +
            (options_.persistent ? "persistent" : "not persistent");
    return text;
  }

  void register_host_memory(std::span<std::byte> memory) override {
    KVO_EXPECTS(!memory.empty(), "block store: register_host_memory with empty memory");
    {
      std::lock_guard lock{mutex_};
      KVO_EXPECTS(next_job_ == 1,
                  "block store: register_host_memory must come before the first job");
      KVO_EXPECTS(!memory_registered_, "block store: register_host_memory was already called");
      memory_registered_ = true;
    }
    engine_->register_memory(memory);
  }

 private:
  using JobMap = std::unordered_map<DiskJobId, std::shared_ptr<Job>>;

  // ---- open ----

  void validate_options() {
    KVO_EXPECTS(!options_.directories.empty(), "block store: no directory given");
    KVO_EXPECTS(options_.block_bytes > 0, "block store: block_bytes is 0");
    KVO_EXPECTS(options_.block_bytes <= kMaxBlockBytes,
                "block store: block_bytes " + std::to_string(options_.block_bytes) +
                    " is above the limit of 1 GiB");
    KVO_EXPECTS(
        options_.queue_depth > 0 && options_.queue_depth <= 4096,
        "block store: queue_depth " + std::to_string(options_.queue_depth) + " is outside 1..4096");
    KVO_EXPECTS(options_.io_threads > 0, "block store: io_threads is 0");
    KVO_EXPECTS(options_.completion_delay.count() >= 0, "block store: negative completion_delay");
    for (std::size_t i = 0; i < options_.directories.size(); ++i) {
      const fs::path& dir = options_.directories[i];
      std::error_code error;
      if (!fs::exists(dir, error))
        KVO_FAIL("block store: directory " + dir.string() + " does not exist");
      if (!fs::is_directory(dir, error))
        KVO_FAIL("block store: " + dir.string() + " is not a directory");
      for (std::size_t j = 0; j < i; ++j) {
        KVO_EXPECTS(!fs::equivalent(dir, options_.directories[j], error),
                    "block store: directory " + dir.string() + " is listed twice");
      }
    }
  }

  /// Total bytes of all files for `slots` global slots.
  std::uint64_t bytes_for(std::uint64_t slots) const {
    const std::uint64_t n = options_.directories.size();
    std::uint64_t total   = 0;
    for (std::uint64_t d = 0; d < n; ++d) {
      const std::uint64_t local = slots / n + (d < slots % n ? 1 : 0);
      total += data_file_bytes(local, slot_bytes_) + meta_file_bytes(local);
    }
    return total;
  }

  void compute_geometry() {
    const std::uint64_t one_slot = bytes_for(1);
    KVO_EXPECTS(options_.capacity_bytes >= one_slot,
                "block store: capacity_bytes " + std::to_string(options_.capacity_bytes) +
                    " is below one slot with its headers (" + std::to_string(one_slot) +
                    " bytes for " + std::to_string(options_.directories.size()) + " directories)");
    std::uint64_t low  = 1,
                  high = options_.capacity_bytes / slot_bytes_ + 1;  // bytes_for(high) > cap
    while (high - low > 1) {
      const std::uint64_t mid                                  = low + (high - low) / 2;
      (bytes_for(mid) <= options_.capacity_bytes ? low : high) = mid;
    }
    num_slots_ = low;
    records_.assign(num_slots_, SlotRecord{});
    slot_use_.assign(num_slots_, 0);
    stats_.num_slots = num_slots_;
  }

  FileHeader expected_header(FileKind kind, std::size_t d) const {
    FileHeader h;
    h.kind            = static_cast<std::uint32_t>(kind);
    h.block_bytes     = options_.block_bytes;
    h.slot_bytes      = slot_bytes_;
    h.slots_in_file   = dirs_[d].slots;
    h.total_slots     = num_slots_;
    h.directory_index = static_cast<std::uint32_t>(d);
    h.directory_count = static_cast<std::uint32_t>(dirs_.size());
    h.header_crc      = header_checksum(h);
    return h;
  }

  static FileDescriptor open_file(const fs::path& path, int flags) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
    if (fd < 0) KVO_FAIL("block store: cannot open " + path.string() + ": " + errno_text(errno));
    return FileDescriptor{fd};
  }

  /// Checks an existing file's header against the geometry; throws naming the file.
  void check_header(int fd, const fs::path& path, FileKind kind, std::size_t d) const {
    FileHeader found;
    const ssize_t n = read_fully(fd, &found, sizeof found, 0);
    if (n < 0)
      KVO_FAIL("block store: cannot read the header of " + path.string() + ": " +
               errno_text(static_cast<int>(-n)));
    if (static_cast<std::size_t>(n) < sizeof found || found.magic != kMagic)
      KVO_FAIL("block store: " + path.string() +
               " is not a kvoffload block-store file (bad magic)");
    if (found.format_version != kFormatVersion) {
      KVO_FAIL("block store: " + path.string() + " has format version " +
               std::to_string(found.format_version) + ", this build reads version " +
               std::to_string(kFormatVersion) + " (remove the file or open it non-persistent)");
    }
    if (found.header_crc != header_checksum(found))
      KVO_FAIL("block store: the header of " + path.string() + " is corrupt (checksum)");
    const FileHeader want = expected_header(kind, d);
    if (found.kind != want.kind || found.block_bytes != want.block_bytes ||
        found.slot_bytes != want.slot_bytes || found.slots_in_file != want.slots_in_file ||
        found.total_slots != want.total_slots || found.directory_index != want.directory_index ||
        found.directory_count != want.directory_count) {
      KVO_FAIL("block store: " + path.string() + " has another geometry (block_bytes " +
               std::to_string(found.block_bytes) + ", slot_bytes " +
               std::to_string(found.slot_bytes) + ", " + std::to_string(found.total_slots) +
               " slots, directory " + std::to_string(found.directory_index) + " of " +
               std::to_string(found.directory_count) + "; this store: block_bytes " +
               std::to_string(want.block_bytes) + ", slot_bytes " +
               std::to_string(want.slot_bytes) + ", " + std::to_string(want.total_slots) +
               " slots, directory " + std::to_string(d) + " of " +
               std::to_string(want.directory_count) + ")");
    }
  }

  void write_header(int fd, const fs::path& path, FileKind kind, std::size_t d) const {
    std::vector<std::byte> block(kHeaderBytes);
    const FileHeader h = expected_header(kind, d);
    std::memcpy(block.data(), &h, sizeof h);
    if (const int e = write_fully(fd, block.data(), block.size(), 0); e != 0)
      KVO_FAIL("block store: cannot write the header of " + path.string() + ": " + errno_text(e));
  }

  static void preallocate(int fd, const fs::path& path, std::uint64_t bytes) {
    int rc = ::fallocate(fd, 0, 0, static_cast<off_t>(bytes)) == 0 ? 0 : errno;
    if (rc == EOPNOTSUPP || rc == ENOSYS) rc = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    if (rc == ENOSPC || rc == EFBIG || rc == EDQUOT) {
      KVO_FAIL("block store: not enough space for " + path.string() + " (" + std::to_string(bytes) +
               " bytes of the capacity): " + errno_text(rc));
    }
    if (rc != 0)
      KVO_FAIL("block store: cannot preallocate " + path.string() + ": " + errno_text(rc));
  }

  static std::uint64_t file_size(int fd, const fs::path& path) {
    struct stat st {};
    if (::fstat(fd, &st) != 0)
      KVO_FAIL("block store: cannot stat " + path.string() + ": " + errno_text(errno));
    return static_cast<std::uint64_t>(st.st_size);
  }

  void open_directories() {
    const std::size_t n = options_.directories.size();
    dirs_.resize(n);
    for (std::size_t d = 0; d < n; ++d) {
      DirectoryFiles& files = dirs_[d];
      files.directory       = options_.directories[d];
      files.slots           = num_slots_ / n + (d < num_slots_ % n ? 1 : 0);
      files.lock_path       = files.directory / kLockFileName;
      files.data_path       = files.directory / kDataFileName;
      files.meta_path       = files.directory / kMetaFileName;
      files.lock_fd         = open_file(files.lock_path, O_RDWR | O_CREAT);
      if (::flock(files.lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
          KVO_FAIL("block store: " + files.lock_path.string() +
                   " is locked by another block store (in this or another process)");
        }
        KVO_FAIL("block store: cannot lock " + files.lock_path.string() + ": " + errno_text(errno));
      }
    }
    // Created files are removed again if the open fails, so a failed open leaves no data behind.
    std::vector<fs::path> created;
    try {
      for (std::size_t d = 0; d < n; ++d)
        open_files(d, created);
    } catch (...) {
      for (const auto& p : created) {
        std::error_code ignored;
        fs::remove(p, ignored);
      }
      throw;
    }
    recover();
  }

  void open_files(std::size_t d, std::vector<fs::path>& created) {
    DirectoryFiles& files          = dirs_[d];
    const std::uint64_t data_bytes = data_file_bytes(files.slots, slot_bytes_);
    const std::uint64_t meta_bytes = meta_file_bytes(files.slots);
    bool fresh                     = true;
    std::uint64_t data_size        = 0;
    if (options_.persistent) {
      std::error_code error;
      if (fs::exists(files.data_path, error)) {
        files.data_fd = open_file(files.data_path, O_RDWR);
        data_size     = file_size(files.data_fd.get(), files.data_path);
        fresh         = data_size == 0;
        if (!fresh) check_header(files.data_fd.get(), files.data_path, FileKind::kData, d);
      }
    } else {
      std::error_code ignored;
      fs::remove(files.data_path, ignored);
      fs::remove(files.meta_path, ignored);
    }
    if (files.data_fd.get() < 0) {
      files.data_fd = open_file(files.data_path, O_RDWR | O_CREAT | O_EXCL);
      created.push_back(files.data_path);
    }
    // The meta file is trusted only beside a data file that was already there.
    bool meta_fresh = true;
    std::error_code error;
    if (!fresh && fs::exists(files.meta_path, error)) {
      files.meta_fd = open_file(files.meta_path, O_RDWR);
      if (file_size(files.meta_fd.get(), files.meta_path) > 0) {
        check_header(files.meta_fd.get(), files.meta_path, FileKind::kMeta, d);
        meta_fresh = false;
      }
    }
    if (files.meta_fd.get() < 0) {
      if (!fs::exists(files.meta_path, error)) created.push_back(files.meta_path);
      files.meta_fd = open_file(files.meta_path, O_RDWR | O_CREAT);
    }
    if (meta_fresh && ::ftruncate(files.meta_fd.get(), 0) != 0) {
      KVO_FAIL("block store: cannot truncate " + files.meta_path.string() + ": " +
               errno_text(errno));
    }

    // A data file shorter than its geometry lost its tail: records of slots there are dropped.
    files_valid_bytes_.push_back(fresh ? data_bytes : data_size);
    preallocate(files.data_fd.get(), files.data_path, data_bytes);
    preallocate(files.meta_fd.get(), files.meta_path, meta_bytes);
    if (fresh) write_header(files.data_fd.get(), files.data_path, FileKind::kData, d);
    if (meta_fresh) write_header(files.meta_fd.get(), files.meta_path, FileKind::kMeta, d);
    open_io_fd(files);
  }

  void open_io_fd(DirectoryFiles& files) const {
    if (options_.direct_io) {
      const int fd = ::open(files.data_path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
      std::string why;
      if (fd >= 0) {
        // Some file systems accept the flag and refuse the I/O: probe one aligned read.
        AlignedBuffer probe = aligned_buffer(kSlotAlignment);
        if (::pread(fd, probe.get(), kSlotAlignment, 0) == static_cast<ssize_t>(kSlotAlignment)) {
          files.io_fd  = FileDescriptor{fd};
          files.direct = true;
          return;
        }
        why = errno_text(errno);
        ::close(fd);
      } else {
        why = errno_text(errno);
      }
      log_line("block store: O_DIRECT refused for " + files.data_path.string() + " (" + why +
               "): buffered I/O there");
    }
    files.io_fd = open_file(files.data_path, O_RDWR);
  }

  /// Reads every record (never a payload) and keeps the valid ones.
  void recover() {
    if (!options_.persistent) return;
    const std::size_t n = dirs_.size();
    for (std::size_t d = 0; d < n; ++d) {
      DirectoryFiles& files = dirs_[d];
      std::vector<SlotRecord> records(files.slots);
      const std::size_t bytes = records.size() * kRecordBytes;
      const ssize_t got = read_fully(files.meta_fd.get(), records.data(), bytes, kHeaderBytes);
      if (got < 0 || static_cast<std::size_t>(got) != bytes)
        KVO_FAIL("block store: cannot read the records of " + files.meta_path.string());
      std::vector<std::uint64_t> bad;  // local slots whose record is dropped
      for (std::uint64_t local = 0; local < files.slots; ++local) {
        const SlotRecord& r = records[local];
        static constexpr SlotRecord kEmpty{};
        if (std::memcmp(&r, &kEmpty, sizeof r) == 0) continue;
        const std::uint64_t slot = local * n + d;
        const bool intact = r.record_crc == record_checksum(r) && (r.flags & kRecordValid) != 0 &&
                            r.format_version == kFormatVersion &&
                            r.payload_bytes == options_.block_bytes &&
                            r.slot == static_cast<std::uint32_t>(slot) &&
                            data_offset(local, slot_bytes_) + slot_bytes_ <= files_valid_bytes_[d];
        if (!intact) {
          bad.push_back(local);
          continue;
        }
        records_[slot] = r;
        recovered_.push_back({static_cast<BlockId>(slot), r.hash});
      }
      // Zero the dropped records so they are counted once, not at every open.
      const SlotRecord zero{};
      for (std::uint64_t local : bad) {
        if (const int e =
                write_fully(files.meta_fd.get(), &zero, sizeof zero, record_offset(local));
            e != 0)
          KVO_FAIL("block store: cannot clear a record in " + files.meta_path.string() + ": " +
                   errno_text(e));
      }
      stats_.blocks_discarded += bad.size();
    }
    std::sort(recovered_.begin(),
              recovered_.end(),
              [](const RecoveredBlock& a, const RecoveredBlock& b) { return a.slot < b.slot; });
    stats_.blocks_recovered = recovered_.size();
  }

  void start_engine() {
    switch (options_.backend) {
      case IoBackend::kThreadPool:
        engine_ = make_thread_pool_engine(*this, options_.io_threads);
        return;
      case IoBackend::kIoUring:
        engine_ = make_io_uring_engine(*this, options_.queue_depth);  // throws with the reason
        return;
      case IoBackend::kAuto:
        try {
          engine_ = make_io_uring_engine(*this, options_.queue_depth);
          log_line("block store: using io_uring (queue depth " +
                   std::to_string(options_.queue_depth) + ")");
        } catch (const runtime_error& e) {
          engine_ = make_thread_pool_engine(*this, options_.io_threads);
          log_line(std::string{"block store: io_uring unavailable ("} + e.what() +
                   "): using a thread pool of " + std::to_string(options_.io_threads) +
                   " pread/pwrite threads");
        }
        return;
    }
    KVO_EXPECTS(
        false,
        "block store: unknown backend " + std::to_string(static_cast<int>(options_.backend)));
  }

  // ---- jobs ----

  void check_slot(BlockId slot) const {
    KVO_EXPECTS(slot >= 0 && static_cast<std::uint64_t>(slot) < num_slots_,
                "block store: slot " + std::to_string(slot) + " is outside 0.." +
                    std::to_string(num_slots_ - 1));
  }

  std::size_t directory_of(BlockId slot) const {
    return static_cast<std::size_t>(slot) % dirs_.size();
  }
  std::uint64_t local_of(BlockId slot) const {
    return static_cast<std::uint64_t>(slot) / dirs_.size();
  }

  bool needs_bounce(const DirectoryFiles& files, const std::byte* bytes) const {
    return files.direct && (options_.block_bytes % kSlotAlignment != 0 ||
                            reinterpret_cast<std::uintptr_t>(bytes) % kSlotAlignment != 0);
  }

  DiskJobId submit(std::shared_ptr<Job> job) {
    auto& blocks = job->blocks;
    for (const Block& b : blocks)
      check_slot(b.slot);
    std::sort(blocks.begin(), blocks.end(), [&](const Block& a, const Block& b) {
      const auto da = directory_of(a.slot), db = directory_of(b.slot);
      return da != db ? da < db : local_of(a.slot) < local_of(b.slot);
    });
    for (std::size_t i = 1; i < blocks.size(); ++i) {
      KVO_EXPECTS(
          blocks[i].slot != blocks[i - 1].slot,
          "block store: slot " + std::to_string(blocks[i].slot) + " appears twice in one job");
    }
    job->ready_at = Clock::now() + options_.completion_delay;
    job->crcs.assign(blocks.size(), 0);
    std::vector<bool> usable(blocks.size(), true);  // reads: a record with the expected hash
    std::vector<bool> was_valid(blocks.size(), false);

    std::unique_lock lock{mutex_};
    for (const Block& b : blocks) {
      const int use = slot_use_[static_cast<std::size_t>(b.slot)];
      KVO_EXPECTS(job->write ? use == 0 : use >= 0,
                  "block store: slot " + std::to_string(b.slot) + " is used by a pending " +
                      (use < 0 ? "write" : "read") + " (the caller must order jobs on a slot)");
    }
    // Accepted: from here nothing throws but allocation.
    if (!job->write) job->flags.assign(blocks.size(), 0);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      const auto s     = static_cast<std::size_t>(blocks[i].slot);
      SlotRecord& r    = records_[s];
      const bool valid = (r.flags & kRecordValid) != 0;
      if (job->write) {
        was_valid[i] = valid;
        r            = SlotRecord{};  // the old block is gone once its slot is overwritten
        slot_use_[s] = -1;
      } else {
        usable[i]     = valid && r.hash == blocks[i].hash;
        job->crcs[i]  = r.payload_crc;
        job->flags[i] = r.flags;
        slot_use_[s] += 1;
        if (!usable[i]) job->lost.push_back(blocks[i].slot);
      }
    }
    build_runs(*job, usable, was_valid);
    job->runs_left     = job->runs.size();
    const DiskJobId id = next_job_++;
    jobs_.emplace(id, job);
    if (job->runs.empty()) {
      lock.unlock();
      finish(*job);
      return id;
    }
    lock.unlock();
    std::vector<IoTask*> tasks;
    tasks.reserve(job->runs.size());
    for (Run& run : job->runs)
      tasks.push_back(&run.task);
    engine_->enqueue(tasks);
    return id;
  }

  void build_runs(Job& job, const std::vector<bool>& usable, const std::vector<bool>& was_valid) {
    const auto& blocks = job.blocks;
    std::size_t count  = 0;
    std::vector<std::pair<std::size_t, std::size_t>> ranges;  // first, count
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      if (!usable[i]) continue;
      const Block& b = blocks[i];
      if (!ranges.empty()) {
        auto& [first, n]         = ranges.back();
        const Block& last        = blocks[first + n - 1];
        const DirectoryFiles& fd = dirs_[directory_of(b.slot)];
        const bool mergeable =
            first + n == i && directory_of(last.slot) == directory_of(b.slot) &&
            local_of(last.slot) + 1 == local_of(b.slot) && options_.block_bytes == slot_bytes_ &&
            last.bytes + slot_bytes_ == b.bytes && !needs_bounce(fd, b.bytes) &&
            !needs_bounce(fd, blocks[first].bytes) && (n + 1) * slot_bytes_ <= kMaxRunBytes;
        if (mergeable) {
          ++n;
          continue;
        }
      }
      ranges.emplace_back(i, 1);
      ++count;
    }
    job.runs.resize(count);
    for (std::size_t r = 0; r < count; ++r) {
      Run& run                    = job.runs[r];
      const auto [first, n]       = ranges[r];
      const Block& head           = blocks[first];
      run.job                     = &job;
      run.first                   = first;
      run.count                   = n;
      run.directory               = static_cast<unsigned>(directory_of(head.slot));
      run.first_local             = local_of(head.slot);
      const DirectoryFiles& files = dirs_[run.directory];
      for (std::size_t i = first; i < first + n; ++i)
        run.invalidate_records = run.invalidate_records || (job.write && was_valid[i]);
      run.task.fd      = files.io_fd.get();
      run.task.write   = job.write;
      run.task.offset  = data_offset(run.first_local, slot_bytes_);
      run.task.context = &run;
      if (needs_bounce(files, head.bytes)) {
        run.bounce      = aligned_buffer(slot_bytes_);
        run.task.buffer = run.bounce.get();
        run.task.length = slot_bytes_;
      } else {
        run.task.buffer = head.bytes;
        run.task.length = n * options_.block_bytes;
      }
    }
  }

  std::string run_place(const Run& run) const {
    const Job& job   = *run.job;
    std::string text = "slot " + std::to_string(job.blocks[run.first].slot);
    if (run.count > 1) text += " (and " + std::to_string(run.count - 1) + " more adjacent)";
    return text + " of " + dirs_[run.directory].data_path.string() + " at offset " +
           std::to_string(run.task.offset);
  }

  bool before_io(IoTask& task) noexcept override {
    Run& run = *static_cast<Run*>(task.context);
    Job& job = *run.job;
    if (!job.write) return true;
    if (run.invalidate_records && options_.persistent) {
      // Before the payload is overwritten: a kill from here on leaves no record of the old block.
      std::vector<SlotRecord> zeros(run.count);
      const DirectoryFiles& files = dirs_[run.directory];
      if (const int e = write_fully(files.meta_fd.get(),
                                    zeros.data(),
                                    zeros.size() * kRecordBytes,
                                    record_offset(run.first_local));
          e != 0) {
        run.error = errno_text(e) + " invalidating the records of " + run_place(run) + " in " +
                    files.meta_path.string();
        return false;
      }
    }
    for (std::size_t i = run.first; i < run.first + run.count; ++i) {
      const Block& b = job.blocks[i];
      if (options_.verify_checksums)
        job.crcs[i] = payload_checksum(b.hash, b.bytes, options_.block_bytes);
    }
    if (run.bounce) {
      std::memcpy(run.bounce.get(), job.blocks[run.first].bytes, options_.block_bytes);
      std::memset(run.bounce.get() + options_.block_bytes, 0, slot_bytes_ - options_.block_bytes);
    }
    return true;
  }

  void after_io(IoTask& task, int error_number, std::size_t bytes_done) noexcept override {
    Run& run         = *static_cast<Run*>(task.context);
    Job& job         = *run.job;
    const char* verb = job.write ? "writing " : "reading ";
    if (error_number > 0) {
      run.error = errno_text(error_number) + " " + verb + run_place(run);
    } else if (error_number == 0 && bytes_done < task.length) {
      run.error = std::string{"short "} + (job.write ? "write" : "read") + " (" +
                  std::to_string(bytes_done) + " of " + std::to_string(task.length) +
                  " bytes, the file ends there) " + verb + run_place(run);
    }
    if (!job.write) {
      for (std::size_t i = run.first; i < run.first + run.count; ++i) {
        const Block& b = job.blocks[i];
        if (!run.error.empty()) {
          run.lost.push_back(b.slot);
          continue;
        }
        // A bounce run holds one block; a merged run's blocks lie at their own addresses.
        const std::byte* bytes = run.bounce ? run.bounce.get() : b.bytes;
        if (options_.verify_checksums &&
            ((job.flags[i] & kRecordChecksummed) == 0 ||
             payload_checksum(b.hash, bytes, options_.block_bytes) != job.crcs[i])) {
          run.lost.push_back(b.slot);
          continue;
        }
        if (run.bounce) std::memcpy(b.bytes, run.bounce.get(), options_.block_bytes);
      }
    }
    run.bounce.reset();  // before the job may be retired by another thread
    bool last = false;
    {
      std::lock_guard lock{mutex_};
      if (error_number != -1) ++stats_.io_operations;
      if (!run.error.empty() && job.error.empty()) job.error = run.error;
      job.lost.insert(job.lost.end(), run.lost.begin(), run.lost.end());
      last = --job.runs_left == 0;
    }
    if (last) finish(job);
  }

  /// Writes the records of a successful write job, then publishes the job's end.
  void finish(Job& job) noexcept {
    std::vector<SlotRecord> records;
    const bool stored = job.write && job.error.empty();  // runs are over: no one else writes it
    std::string record_error;
    if (stored) {
      records.resize(job.blocks.size());
      for (std::size_t i = 0; i < job.blocks.size(); ++i) {
        SlotRecord& r    = records[i];
        r.hash           = job.blocks[i].hash;
        r.payload_bytes  = static_cast<std::uint32_t>(options_.block_bytes);
        r.format_version = kFormatVersion;
        r.flags          = kRecordValid | (options_.verify_checksums ? kRecordChecksummed : 0);
        r.payload_crc    = job.crcs[i];
        r.slot           = static_cast<std::uint32_t>(job.blocks[i].slot);
        r.record_crc     = record_checksum(r);
      }
      if (options_.persistent) record_error = write_records(job, records);
    }
    std::lock_guard lock{mutex_};
    if (!record_error.empty()) job.error = record_error;
    if (stored && record_error.empty()) {
      for (std::size_t i = 0; i < job.blocks.size(); ++i)
        records_[static_cast<std::size_t>(job.blocks[i].slot)] = records[i];
    }
    const std::uint64_t bytes = job.blocks.size() * options_.block_bytes;
    if (job.write) {
      ++stats_.write_jobs;
      if (job.error.empty()) stats_.bytes_written += bytes;
    } else {
      ++stats_.read_jobs;
      if (job.error.empty()) stats_.bytes_read += bytes - job.lost.size() * options_.block_bytes;
      stats_.blocks_lost += job.lost.size();
    }
    if (!job.error.empty()) ++stats_.failed_jobs;
    job.finished = true;
    job_done_.notify_all();
  }

  /// One pwrite per run of adjacent records; returns the error, empty on success.
  std::string write_records(const Job& job, const std::vector<SlotRecord>& records) {
    std::size_t i = 0;
    while (i < records.size()) {
      std::size_t j = i + 1;
      while (j < records.size() &&
             directory_of(job.blocks[j].slot) == directory_of(job.blocks[i].slot) &&
             local_of(job.blocks[j].slot) == local_of(job.blocks[j - 1].slot) + 1)
        ++j;
      const DirectoryFiles& files = dirs_[directory_of(job.blocks[i].slot)];
      if (const int e = write_fully(files.meta_fd.get(),
                                    &records[i],
                                    (j - i) * kRecordBytes,
                                    record_offset(local_of(job.blocks[i].slot)));
          e != 0) {
        // Records written before this one stay: their payloads are complete, yet the job fails,
        // so clear them again; a failure here leaves them recoverable and intact.
        const std::vector<SlotRecord> zeros(i);
        for (std::size_t k = 0; k < i; ++k) {
          const DirectoryFiles& f = dirs_[directory_of(job.blocks[k].slot)];
          (void)write_fully(f.meta_fd.get(),
                            &zeros[k],
                            kRecordBytes,
                            record_offset(local_of(job.blocks[k].slot)));
        }
        return errno_text(e) + " writing the record of slot " + std::to_string(job.blocks[i].slot) +
               " to " + files.meta_path.string();
      }
      i = j;
    }
    return {};
  }

  JobMap::iterator find(DiskJobId id) {
    auto it = jobs_.find(id);
    KVO_EXPECTS(it != jobs_.end(),
                "block store: job " + std::to_string(id) + " is unknown or retired");
    return it;
  }

  DiskJobStatus retire(JobMap::iterator it) {
    Job& job = *it->second;
    // The caller learns of the end only now, so the slots stay in use until now.
    for (const Block& b : job.blocks) {
      int& use = slot_use_[static_cast<std::size_t>(b.slot)];
      use      = job.write ? 0 : use - 1;
    }
    DiskJobStatus status;
    status.state = job.error.empty() ? DiskJobState::kDone : DiskJobState::kFailed;
    status.error = std::move(job.error);
    status.lost  = std::move(job.lost);
    std::sort(status.lost.begin(), status.lost.end());
    jobs_.erase(it);
    return status;
  }

  BlockStoreOptions options_;
  std::size_t slot_bytes_{0};
  std::uint64_t num_slots_{0};
  std::vector<DirectoryFiles> dirs_;
  std::vector<std::uint64_t> files_valid_bytes_;  // per directory, at open
  std::vector<RecoveredBlock> recovered_;

  mutable std::mutex mutex_;
  std::condition_variable job_done_;
  std::vector<SlotRecord> records_;  ///< the valid record of each slot (flags 0: none)
  std::vector<int> slot_use_;        ///< -1: a pending write, n > 0: n pending reads
  JobMap jobs_;
  DiskJobId next_job_{1};
  bool memory_registered_{false};
  BlockStoreStats stats_;
  std::unique_ptr<IoEngine> engine_;  // reset first in the destructor
};

}  // namespace
}  // namespace detail

std::unique_ptr<BlockStore> make_block_store(const BlockStoreOptions& options) {
  return std::make_unique<detail::FileBlockStore>(options);
}

}  // namespace kvoffload::storage
