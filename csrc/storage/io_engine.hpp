// The I/O back ends of the block store: they move the bytes of IoTasks and know nothing of
// slots, records or checksums. The store (an IoTaskHandler) prepares each task on the I/O
// thread (checksums, bounce buffers, record invalidation) and finishes it there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace kvoffload::storage::detail {

/// One I/O: a run of slots adjacent on disk (and in host memory), read or written at once.
struct IoTask {
  int fd{-1};
  bool write{false};
  std::uint64_t offset{0};
  std::byte* buffer{nullptr};  ///< host memory or an aligned bounce buffer
  std::size_t length{0};
  void* context{nullptr};  ///< the handler's (its job and the run's blocks)
};

class IoTaskHandler {
 public:
  virtual ~IoTaskHandler() = default;
  /// On the I/O thread, just before the task's I/O is issued. Returning false skips the I/O
  /// (the handler then recorded why) and goes straight to after_io with error_number -1.
  virtual bool before_io(IoTask& task) noexcept = 0;
  /// On the I/O thread, once: error_number is 0 and bytes_done == length on success, an errno
  /// on failure, 0 with bytes_done < length when the file ended (a short read or write).
  /// The engine never touches the task again after this call.
  virtual void after_io(IoTask& task, int error_number, std::size_t bytes_done) noexcept = 0;
};

class IoEngine {
 public:
  virtual ~IoEngine() = default;
  /// Queue tasks; returns at once. The destructor finishes every queued task first.
  virtual void enqueue(std::span<IoTask* const> tasks) = 0;
  /// Host memory later tasks may point into (io_uring fixed buffers); false if not used.
  virtual bool register_memory(std::span<std::byte> memory) = 0;
  [[nodiscard]] virtual std::string description() const     = 0;
};

std::unique_ptr<IoEngine> make_thread_pool_engine(IoTaskHandler& handler, unsigned threads);

/// Whether liburing was found at build time.
bool io_uring_compiled() noexcept;
/// @throws runtime_error with the reason when a ring cannot be set up (not compiled in,
///         forbidden by the kernel or a sandbox, KVOFFLOAD_DISABLE_IO_URING set to 1)
std::unique_ptr<IoEngine> make_io_uring_engine(IoTaskHandler& handler, unsigned queue_depth);

/// `what` with the errno's name and text, e.g. "ENOSPC (No space left on device)".
std::string errno_text(int error_number);

}  // namespace kvoffload::storage::detail
