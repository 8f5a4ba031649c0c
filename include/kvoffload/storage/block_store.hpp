/**
 * @file block_store.hpp
 * @brief Fixed-size KV blocks on local files (the disk tier): batched reads and writes between
 * host memory and disk slots, checksummed, bounded, and optionally recovered after a restart.
 *
 * A store owns `num_slots()` disk slots of `slot_bytes()` each (the block size rounded up to
 * 4 KiB), in preallocated files under the directories it was given (slots striped over them).
 * It never decides which block goes where: the caller (a tiered manager through the Offloader)
 * names the disk slot of every block, exactly like host slots for the transfer engine.
 *
 * Ordering contract (like the transfer engine's):
 * - submit() validates the request, enqueues it and returns; it never waits for the disk.
 *   A request it rejects throws and leaves the store as it was.
 * - The store does not order jobs against each other: a caller must not read a slot whose
 *   write has not completed, nor write (or discard) a slot a pending read or write uses. A job
 *   holds its slots until poll() or wait() has reported it, and submit_* / discard() throw
 *   logic_error for a slot held that way (reads may share a slot with other reads).
 * - A write job owns its host buffers (reads them) until it completes; a read job writes them.
 * - poll() and wait() report each job's terminal state once; then the job is retired.
 *
 * Integrity: every written block is recorded with its hash, payload length, the format version
 * and a CRC32C of (hash, payload). A read completes `ok` for a block only when the record's
 * hash equals the expected hash and the CRC of the bytes read matches; any other block of the
 * job is reported in `DiskJobStatus::lost` (its host bytes are then undefined: never use them).
 *
 * Persistence (options.persistent): a store reopened on the same directories with the same
 * geometry reports, in recovered(), every block whose write had completed before the previous
 * process ended (SIGKILL included), without reading the payloads; a block whose write had not
 * completed is never recovered. A slot's record is written only after its payload write
 * completed and cleared before the slot is overwritten or discarded. Records and buffered
 * payloads survive a killed process in the page cache; surviving a power loss as well needs
 * flush() (fdatasync) after the writes. A second store on the same directories (any process) is
 * refused with a clear error while the first is open. Files are created mode 0600; a store that
 * is not persistent recreates its files at open and removes them when destroyed.
 *
 * Bounds and faults: every file is preallocated at open, so the files never exceed
 * capacity_bytes (data, records and headers included). An I/O error (ENOSPC, EIO, EFBIG, a short
 * read or write) fails only the job it happened in, with the errno's name, the slot and the file
 * in DiskJobStatus::error; a failed write leaves its slots empty (their old blocks are gone), a
 * failed read lists its blocks in `lost`; the next job runs normally.
 *
 * Environment: KVOFFLOAD_DISABLE_IO_URING=1 makes io_uring setup fail (tests, or a kernel whose
 * io_uring is unwanted): kAuto then uses the thread pool, kIoUring throws. See docs/storage.md.
 */
#pragma once

#include <kvoffload/types.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace kvoffload::storage {

using DiskJobId = std::uint64_t;

/// How the store issues I/O.
enum class IoBackend : std::uint8_t {
  kAuto,        ///< io_uring when it can be set up, else the thread pool (one log line says)
  kIoUring,     ///< io_uring only (construction fails with the reason if it cannot)
  kThreadPool,  ///< pread/pwrite on worker threads
};

/// Construction options (designated initializers welcome).
struct BlockStoreOptions {
  std::vector<std::filesystem::path> directories;  ///< one or more; slot s lives in
                                                   ///< directories[s % n]
  std::size_t block_bytes{0};                      ///< payload bytes of one block (a host slot)
  std::uint64_t capacity_bytes{0};  ///< hard limit on the bytes of all files together,
                                    ///< allocated at open (fallocate) and never exceeded
  bool persistent{false};           ///< keep and recover blocks across restarts
  IoBackend backend{IoBackend::kAuto};
  bool direct_io{true};         ///< O_DIRECT where the file system accepts it (else buffered,
                                ///< with one log line)
  unsigned queue_depth{32};     ///< I/Os in flight per store (io_uring SQ size / pool threads)
  unsigned io_threads{4};       ///< worker threads of the thread-pool backend
  bool verify_checksums{true};  ///< false: CRC neither computed nor checked (benchmarks
                                ///< only; blocks written so fail a later checked read)
  /// Test hook: every job completes no earlier than this after its submission.
  std::chrono::microseconds completion_delay{0};
};

/// One block to write: `bytes` (block_bytes long) go to disk slot `slot` as `hash`.
struct DiskWrite {
  BlockId slot{0};
  BlockHash hash{0};
  const std::byte* bytes{nullptr};
};

/// One block to read: disk slot `slot`, expected to hold `hash`, into `bytes`.
struct DiskRead {
  BlockId slot{0};
  BlockHash hash{0};
  std::byte* bytes{nullptr};
};

enum class DiskJobState : std::uint8_t { kPending, kDone, kFailed };

/// A job's state; terminal states are reported once.
struct DiskJobStatus {
  DiskJobState state{DiskJobState::kPending};
  std::string error;  ///< why it failed (kFailed), e.g. "ENOSPC writing slot 7 of /nvme0/..."
  /// Reads: slots whose block failed the hash or CRC check (or could not be read); the other
  /// blocks of a kFailed read are undefined too unless the error says otherwise.
  std::vector<BlockId> lost;
};

/// A block found at open by a persistent store.
struct RecoveredBlock {
  BlockId slot{0};
  BlockHash hash{0};
};

/// Counters and gauges of a store.
struct BlockStoreStats {
  std::size_t num_slots{0};
  std::uint64_t bytes_written{0}, bytes_read{0};
  std::uint64_t write_jobs{0}, read_jobs{0}, failed_jobs{0};
  std::uint64_t blocks_lost{0};       ///< reads that failed the hash or CRC check
  std::uint64_t blocks_recovered{0};  ///< found at open
  std::uint64_t blocks_discarded{0};  ///< found at open but incomplete or corrupt
  std::uint64_t io_operations{0};     ///< I/Os issued (adjacent slots of a job merge into one)
};

/// @brief The store interface (see the file comment). Methods are thread-safe.
class BlockStore {
 public:
  virtual ~BlockStore()                    = default;
  BlockStore(const BlockStore&)            = delete;
  BlockStore& operator=(const BlockStore&) = delete;

  /// @throws logic_error naming the offending value: a slot out of range, a slot twice in one
  ///         job, a null buffer, a slot a job not yet reported holds
  [[nodiscard]] virtual DiskJobId submit_write(std::span<const DiskWrite> blocks) = 0;
  /// @throws logic_error like submit_write
  [[nodiscard]] virtual DiskJobId submit_read(std::span<const DiskRead> blocks) = 0;
  /// @throws logic_error for an unknown or retired id
  virtual DiskJobStatus poll(DiskJobId job) = 0;
  /// @throws logic_error for an unknown or retired id
  virtual DiskJobStatus wait(DiskJobId job) = 0;

  /// Forget a slot's block (its record is invalidated; it will not be recovered).
  /// @throws logic_error for a slot out of range or held by a job not yet reported;
  ///         runtime_error if the record cannot be written
  virtual void discard(BlockId slot) = 0;
  /// Make every completed write durable against power loss too (fdatasync of all files).
  /// @throws runtime_error naming the file that failed
  virtual void flush() = 0;

  /// Blocks found at open (persistent stores; empty otherwise), ascending slot order.
  [[nodiscard]] virtual const std::vector<RecoveredBlock>& recovered() const noexcept = 0;
  [[nodiscard]] virtual std::size_t num_slots() const noexcept                        = 0;
  [[nodiscard]] virtual std::size_t block_bytes() const noexcept                      = 0;
  /// Bytes one disk slot takes (block_bytes rounded up to 4 KiB).
  [[nodiscard]] virtual std::size_t slot_bytes() const noexcept = 0;
  [[nodiscard]] virtual BlockStoreStats stats() const           = 0;
  /// What the store runs on, in words: back end, O_DIRECT or buffered, CRC implementation,
  /// files.
  [[nodiscard]] virtual std::string description() const = 0;

  /// Optional: host memory the store will read from and write to (e.g. the pinned host pool),
  /// registered as io_uring fixed buffers where that is in use (I/Os wholly inside it use
  /// them; others still work). Call once, before the first job, else logic_error.
  virtual void register_host_memory(std::span<std::byte> memory) = 0;

 protected:
  BlockStore() = default;
};

/**
 * @brief A store on files under options.directories.
 * @throws logic_error for bad options (zero block size, capacity below one slot, no directory)
 * @throws runtime_error naming the path: a missing, unwritable or read-only directory, no
 *         space for the capacity, another store holding the directory's lock, a file of another
 *         format version or geometry, io_uring forced but unavailable
 */
std::unique_ptr<BlockStore> make_block_store(const BlockStoreOptions& options);

/// CRC32C (Castagnoli) of `bytes`, continuing from `crc` (0 to start); hardware accelerated
/// where available.
std::uint32_t crc32c(std::span<const std::byte> bytes, std::uint32_t crc = 0) noexcept;

}  // namespace kvoffload::storage
