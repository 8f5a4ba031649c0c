// The portable back end: pread/pwrite on worker threads, one task at a time per thread.
#include "storage/io_engine.hpp"

#include <kvoffload/error.hpp>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

namespace kvoffload::storage::detail {

std::string errno_text(int error_number) {
  const char* name = strerrorname_np(error_number);
  return std::string{name != nullptr ? name : "errno " + std::to_string(error_number)} + " (" +
         std::strerror(error_number) + ")";
}

namespace {

class ThreadPoolEngine final : public IoEngine {
 public:
  ThreadPoolEngine(IoTaskHandler& handler, unsigned threads) : handler_{handler} {
    KVO_EXPECTS(threads > 0, "block store: io_threads is 0");
    workers_.reserve(threads);
    for (unsigned i = 0; i < threads; ++i)
      workers_.emplace_back([this] { work(); });
  }

  ~ThreadPoolEngine() override {
    {
      std::lock_guard lock{mutex_};
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& worker : workers_)
      worker.join();
  }

  void enqueue(std::span<IoTask* const> tasks) override {
    {
      std::lock_guard lock{mutex_};
      queue_.insert(queue_.end(), tasks.begin(), tasks.end());
    }
    if (tasks.size() == 1) {
      ready_.notify_one();
    } else {
      ready_.notify_all();
    }
  }

  bool register_memory(std::span<std::byte>) override { return false; }

  std::string description() const override {
    return "thread pool (pread/pwrite on " + std::to_string(workers_.size()) + " threads)";
  }

 private:
  void run(IoTask& task) noexcept {
    if (!handler_.before_io(task)) {
      handler_.after_io(task, -1, 0);
      return;
    }
    std::size_t done = 0;
    int error        = 0;
    while (done < task.length) {
      const auto offset = static_cast<off_t>(task.offset + done);
      const ssize_t n   = task.write
                              ? ::pwrite(task.fd, task.buffer + done, task.length - done, offset)
                              : ::pread(task.fd, task.buffer + done, task.length - done, offset);
      if (n < 0) {
        if (errno == EINTR) continue;
        error = errno;
        break;
      }
      if (n == 0) break;  // end of file: a short transfer
      done += static_cast<std::size_t>(n);
    }
    handler_.after_io(task, error, done);
  }

  void work() {
    std::unique_lock lock{mutex_};
    for (;;) {
      ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      IoTask* task = queue_.front();
      queue_.pop_front();
      lock.unlock();
      run(*task);
      lock.lock();
    }
  }

  IoTaskHandler& handler_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<IoTask*> queue_;
  bool stopping_{false};
  std::vector<std::thread> workers_;  // last: started after everything above exists
};

}  // namespace

std::unique_ptr<IoEngine> make_thread_pool_engine(IoTaskHandler& handler, unsigned threads) {
  return std::make_unique<ThreadPoolEngine>(handler, threads);
}

}  // namespace kvoffload::storage::detail
