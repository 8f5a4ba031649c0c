#include "transfer/host_engine.hpp"

#include "transfer/nvtx.hpp"
#include "transfer/validate.hpp"

#include <kvoffload/error.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kvoffload::transfer::detail {

namespace {

struct HostJob {
  TransferRequest request;
  Method method{Method::kAuto};
  std::size_t tasks_left{0};  // guarded by the engine's mutex
  std::string error;          // first error of a task, guarded likewise
};

struct Task {
  std::shared_ptr<HostJob> job;
  std::size_t first_slot{0};  // index into request.host_slots
  std::size_t end_slot{0};
};

class HostEngine final : public TransferEngine {
 public:
  HostEngine(const KvLayout& layout,
             const HostSlots& host,
             const TransferEngineOptions& options,
             std::string why_host)
      : layout_{layout}, host_{host}, why_host_{std::move(why_host)} {
    validate_host_slots(layout_, host_);
    KVO_EXPECTS(options.host_threads > 0, "host engine: host_threads is 0");
    workers_.reserve(options.host_threads);
    for (unsigned i = 0; i < options.host_threads; ++i) {
      workers_.emplace_back([this] { work(); });
    }
  }

  ~HostEngine() override {
    {
      std::lock_guard lock{mutex_};
      stopping_ = true;
    }
    work_ready_.notify_all();
    for (auto& worker : workers_)
      worker.join();
  }

  JobId submit(const TransferRequest& request) override {
    validate_request(layout_, host_, request);
    KVO_EXPECTS(request.wait_event == nullptr,
                "request: the host engine cannot wait on a CUDA event (wait_event must be null)");
    KVO_SCOPED_RANGE(std::string{"host "} + to_string(request.direction) + " " +
                     std::to_string(request.gpu_blocks.size()) + " blocks");
    auto job     = std::make_shared<HostJob>();
    job->request = request;
    // Every method is a memcpy here; report what the CUDA engine would have run.
    job->method =
        request.method != Method::kAuto
            ? request.method
            : choose_method({.chunk_bytes = min_chunk_bytes(), .gpu_busy = request.gpu_busy});
    const std::size_t slots = request.host_slots.size();
    const std::size_t tasks = std::min<std::size_t>(slots, workers_.size() * 4);
    std::lock_guard lock{mutex_};
    const JobId id  = next_job_++;
    job->tasks_left = tasks;
    for (std::size_t t = 0; t < tasks; ++t) {
      queue_.push_back({job, slots * t / tasks, slots * (t + 1) / tasks});
    }
    jobs_.emplace(id, std::move(job));
    work_ready_.notify_all();
    return id;
  }

  JobStatus poll(JobId id) override {
    std::lock_guard lock{mutex_};
    return report(find(id));
  }

  JobStatus wait(JobId id) override {
    std::unique_lock lock{mutex_};
    auto it = find(id);
    job_done_.wait(lock, [&] { return it->second->tasks_left == 0; });
    return report(it);
  }

  std::vector<cudaEvent_t> completion_events(JobId id) override {
    std::lock_guard lock{mutex_};
    find(id);
    return {};
  }

  bool is_host_fallback() const noexcept override { return true; }

  std::string description() const override {
    // The reason first, in the caller's terms ("no NVIDIA driver or GPU found"), said once.
    return why_host_ + ": using the host engine (KV \"GPU\" tensors are host memory, copies " +
           "are memcpy on " + std::to_string(workers_.size()) + " worker threads)";
  }

  const KvLayout& layout() const noexcept override { return layout_; }
  const HostSlots& host_slots() const noexcept override { return host_; }

 private:
  using JobMap = std::unordered_map<JobId, std::shared_ptr<HostJob>>;

  JobMap::iterator find(JobId id) {
    auto it = jobs_.find(id);
    KVO_EXPECTS(it != jobs_.end(), "job " + std::to_string(id) + " is unknown or retired");
    return it;
  }

  JobStatus report(JobMap::iterator it) {
    const HostJob& job = *it->second;
    if (job.tasks_left != 0) return {JobState::kPending, job.method, {}};
    JobStatus status{
        job.error.empty() ? JobState::kDone : JobState::kFailed, job.method, job.error};
    jobs_.erase(it);
    return status;
  }

  std::size_t min_chunk_bytes() const {
    std::size_t smallest = layout_.tensors().front().chunk_bytes;
    for (const auto& t : layout_.tensors())
      smallest = std::min(smallest, t.chunk_bytes);
    return smallest;
  }

  void run(const Task& task) const {
    const TransferRequest& request = task.job->request;
    const std::size_t k            = layout_.gpu_blocks_per_slot();
    const bool store               = request.direction == Direction::kStore;
    for (std::size_t i = task.first_slot; i < task.end_slot; ++i) {
      std::byte* slot =
          host_.base + static_cast<std::size_t>(request.host_slots[i]) * host_.slot_bytes;
      for (std::size_t sub = 0; sub < k; ++sub) {
        const BlockId block = request.gpu_blocks[i * k + sub];
        for (std::size_t t = 0; t < layout_.num_tensors(); ++t) {
          std::byte* gpu        = layout_.gpu_chunk(t, block);
          std::byte* host_chunk = slot + layout_.host_offset(sub, t);
          const std::size_t n   = layout_.tensors()[t].chunk_bytes;
          if (store) {
            std::memcpy(host_chunk, gpu, n);
          } else {
            std::memcpy(gpu, host_chunk, n);
          }
        }
      }
    }
  }

  void work() {
    std::unique_lock lock{mutex_};
    for (;;) {
      work_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      Task task = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      std::string error;
      try {
        run(task);
      } catch (const std::exception& e) {
        error = e.what();
      }
      lock.lock();
      if (!error.empty() && task.job->error.empty()) task.job->error = std::move(error);
      if (--task.job->tasks_left == 0) job_done_.notify_all();
    }
  }

  KvLayout layout_;
  HostSlots host_;
  std::string why_host_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable job_done_;
  std::deque<Task> queue_;
  JobMap jobs_;
  JobId next_job_{1};
  bool stopping_{false};
  std::vector<std::thread> workers_;  // last: started after everything above exists
};

}  // namespace

std::unique_ptr<TransferEngine> make_host_engine(const KvLayout& layout,
                                                 const HostSlots& host,
                                                 const TransferEngineOptions& options,
                                                 std::string why_host) {
  return std::make_unique<HostEngine>(layout, host, options, std::move(why_host));
}

}  // namespace kvoffload::transfer::detail
