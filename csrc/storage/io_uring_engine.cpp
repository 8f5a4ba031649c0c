// The fast back end: one ring and one thread that fills it up to the queue depth, submits each
// batch with one io_uring_submit, and reaps completions. Tasks inside memory registered with
// register_memory() use fixed buffers (no page pinning per I/O).
#include "storage/io_engine.hpp"

#include <kvoffload/error.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#if KVOFFLOAD_HAVE_LIBURING
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include <liburing.h>
#include <sys/uio.h>
#endif

namespace kvoffload::storage::detail {

namespace {

bool disabled_by_environment() {
  const char* value = std::getenv("KVOFFLOAD_DISABLE_IO_URING");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

#if KVOFFLOAD_HAVE_LIBURING

/// Fixed buffers are at most 1 GiB each; larger registrations are split.
constexpr std::size_t kMaxFixedBufferBytes = std::size_t{1} << 30;

class IoUringEngine final : public IoEngine {
 public:
  IoUringEngine(IoTaskHandler& handler, unsigned queue_depth)
      : handler_{handler}, depth_{queue_depth} {
    KVO_EXPECTS(queue_depth > 0 && queue_depth <= 4096,
                "block store: queue_depth " + std::to_string(queue_depth) + " is outside 1..4096");
    if (disabled_by_environment()) KVO_FAIL("io_uring disabled by KVOFFLOAD_DISABLE_IO_URING=1");
    if (const int rc = io_uring_queue_init(queue_depth, &ring_, 0); rc < 0) {
      KVO_FAIL("io_uring_queue_init(" + std::to_string(queue_depth) +
               ") failed: " + errno_text(-rc));
    }
    thread_ = std::thread{[this] { loop(); }};
  }

  ~IoUringEngine() override {
    {
      std::lock_guard lock{mutex_};
      stopping_ = true;
    }
    ready_.notify_all();
    thread_.join();
    io_uring_queue_exit(&ring_);
  }

  void enqueue(std::span<IoTask* const> tasks) override {
    {
      std::lock_guard lock{mutex_};
      queue_.insert(queue_.end(), tasks.begin(), tasks.end());
    }
    ready_.notify_one();
  }

  bool register_memory(std::span<std::byte> memory) override {
    std::vector<iovec> pieces;
    for (std::size_t at = 0; at < memory.size(); at += kMaxFixedBufferBytes) {
      pieces.push_back({memory.data() + at, std::min(kMaxFixedBufferBytes, memory.size() - at)});
    }
    std::lock_guard lock{mutex_};
    KVO_EXPECTS(fixed_.empty(), "block store: register_host_memory was already called");
    KVO_EXPECTS(in_flight_ == 0 && queue_.empty(),
                "block store: register_host_memory must come before the first job");
    // The ring thread only touches the ring while tasks are in flight, so this is safe here.
    if (const int rc =
            io_uring_register_buffers(&ring_, pieces.data(), static_cast<unsigned>(pieces.size()));
        rc < 0) {
      std::fprintf(stderr,
                   "kvoffload: block store: io_uring_register_buffers failed (%s): no fixed "
                   "buffers\n",
                   errno_text(-rc).c_str());
      return false;
    }
    fixed_ = std::move(pieces);
    return true;
  }

  std::string description() const override {
    std::lock_guard lock{mutex_};
    return "io_uring (queue depth " + std::to_string(depth_) + ", " +
           (fixed_.empty() ? std::string{"no fixed buffers"}
                           : std::to_string(fixed_.size()) + " fixed buffer(s)") +
           ")";
  }

 private:
  struct InFlight {
    IoTask* task{nullptr};
    std::size_t done{0};  // bytes moved by earlier partial completions
  };

  /// The fixed buffer holding [buffer, buffer + length), or -1.
  int fixed_index(const std::byte* buffer, std::size_t length) const {
    for (std::size_t i = 0; i < fixed_.size(); ++i) {
      const auto* base = static_cast<const std::byte*>(fixed_[i].iov_base);
      if (buffer >= base && buffer + length <= base + fixed_[i].iov_len) return static_cast<int>(i);
    }
    return -1;
  }

  void prepare(InFlight* entry) {
    // The ring has depth_ entries and at most depth_ are prepared or in flight, so a free entry
    // exists unless an earlier io_uring_submit failed to hand them over: submit, then retry.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    IoTask& task      = *entry->task;
    std::byte* buffer = task.buffer + entry->done;
    const auto length = static_cast<unsigned>(task.length - entry->done);
    const auto offset = task.offset + entry->done;
    const int fixed   = fixed_index(buffer, length);
    if (task.write) {
      if (fixed >= 0) {
        io_uring_prep_write_fixed(sqe, task.fd, buffer, length, offset, fixed);
      } else {
        io_uring_prep_write(sqe, task.fd, buffer, length, offset);
      }
    } else {
      if (fixed >= 0) {
        io_uring_prep_read_fixed(sqe, task.fd, buffer, length, offset, fixed);
      } else {
        io_uring_prep_read(sqe, task.fd, buffer, length, offset);
      }
    }
    io_uring_sqe_set_data(sqe, entry);
  }

  void complete(InFlight* entry, int result) {
    IoTask& task = *entry->task;
    if (result < 0 && result != -EAGAIN && result != -EINTR) {
      const std::size_t done = entry->done;
      delete entry;
      handler_.after_io(task, -result, done);
      return;
    }
    if (result == 0) {  // end of file
      const std::size_t done = entry->done;
      delete entry;
      handler_.after_io(task, 0, done);
      return;
    }
    if (result > 0) entry->done += static_cast<std::size_t>(result);
    if (entry->done == task.length) {
      delete entry;
      handler_.after_io(task, 0, task.length);
      return;
    }
    retry_.push_back(entry);  // a partial transfer: issue the rest
  }

  void loop() {
    std::vector<IoTask*> taken;
    for (;;) {
      taken.clear();
      {
        std::unique_lock lock{mutex_};
        if (in_flight_ == 0 && retry_.empty()) {
          ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
          if (queue_.empty()) return;  // stopping and drained
        }
        while (in_flight_ + retry_.size() + taken.size() < depth_ && !queue_.empty()) {
          taken.push_back(queue_.front());
          queue_.pop_front();
        }
      }
      unsigned prepared = 0;
      for (InFlight* entry : retry_) {
        prepare(entry);
        ++prepared;
      }
      retry_.clear();
      for (IoTask* task : taken) {
        if (!handler_.before_io(*task)) {
          handler_.after_io(*task, -1, 0);
          continue;
        }
        prepare(new InFlight{task, 0});
        ++prepared;
      }
      if (prepared > 0) {
        add_in_flight(prepared);
        int rc;
        do {
          rc = io_uring_submit(&ring_);
        } while (rc == -EINTR || rc == -EAGAIN);
      }
      if (current_in_flight() == 0) continue;
      io_uring_cqe* cqe = nullptr;
      int rc;
      do {
        rc = io_uring_wait_cqe(&ring_, &cqe);
      } while (rc == -EINTR);
      if (rc < 0) continue;  // cannot happen with entries in flight; retried on the next turn
      unsigned reaped = 0;
      unsigned head;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        complete(static_cast<InFlight*>(io_uring_cqe_get_data(cqe)), cqe->res);
        ++reaped;
      }
      io_uring_cq_advance(&ring_, reaped);
      add_in_flight(-static_cast<int>(reaped));
    }
  }

  void add_in_flight(int change) {
    std::lock_guard lock{mutex_};
    in_flight_ = static_cast<unsigned>(static_cast<int>(in_flight_) + change);
  }

  unsigned current_in_flight() {
    std::lock_guard lock{mutex_};
    return in_flight_;
  }

  IoTaskHandler& handler_;
  const unsigned depth_;
  io_uring ring_{};
  std::vector<iovec> fixed_;  // written before the first task only
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<IoTask*> queue_;
  std::vector<InFlight*> retry_;  // ring thread only
  unsigned in_flight_{0};         // SQEs submitted, CQEs not reaped; guarded by mutex_
  bool stopping_{false};
  std::thread thread_;  // last: started after everything above exists
};

#endif

}  // namespace

#if KVOFFLOAD_HAVE_LIBURING
bool io_uring_compiled() noexcept {
  return true;
}

std::unique_ptr<IoEngine> make_io_uring_engine(IoTaskHandler& handler, unsigned queue_depth) {
  return std::make_unique<IoUringEngine>(handler, queue_depth);
}
#else
bool io_uring_compiled() noexcept {
  return false;
}

std::unique_ptr<IoEngine> make_io_uring_engine(IoTaskHandler&, unsigned) {
  if (disabled_by_environment()) KVO_FAIL("io_uring disabled by KVOFFLOAD_DISABLE_IO_URING=1");
  KVO_FAIL("io_uring is not compiled in (liburing was not found at build time)");
}
#endif

}  // namespace kvoffload::storage::detail
