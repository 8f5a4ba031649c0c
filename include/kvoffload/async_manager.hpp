/**
 * @file async_manager.hpp
 * @brief Asynchronous front end: calls queue to one worker thread and answer through futures
 * or completion callbacks.
 *
 * Work runs on the worker in submission order (first in, first out), one item at a time, so a
 * caller that submits `prepare_store` then `complete_store` sees them applied in that order,
 * and any thread may submit. A call's exception (e.g. logic_error for misuse) is delivered
 * through its future. Batch calls run several requests in one turn of the worker. The
 * destructor runs the work already queued, then stops the worker.
 */
#pragma once

#include <kvoffload/offloading_manager.hpp>

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace kvoffload {

/// @brief Runs a manager's calls on a worker thread (see the file comment).
class AsyncManager {
 public:
  /// @throws logic_error if manager is null
  explicit AsyncManager(std::unique_ptr<OffloadingManager> manager);
  ~AsyncManager();
  AsyncManager(const AsyncManager&)            = delete;
  AsyncManager& operator=(const AsyncManager&) = delete;

  std::future<std::optional<std::size_t>> lookup(std::vector<BlockHash> hashes);
  std::future<LoadStoreSpec> prepare_load(std::vector<BlockHash> hashes);
  std::future<void> touch(std::vector<BlockHash> hashes);
  std::future<void> complete_load(std::vector<BlockHash> hashes);
  std::future<std::optional<PrepareStoreOutput>> prepare_store(std::vector<BlockHash> hashes);
  std::future<void> complete_store(std::vector<BlockHash> hashes, bool success = true);
  std::future<std::vector<OffloadingEvent>> take_events();
  std::future<ManagerStats> stats();

  /// @brief lookup() of each request, in order, in one turn of the worker.
  std::future<std::vector<std::optional<std::size_t>>> lookup_batch(
      std::vector<std::vector<BlockHash>> requests);
  /// @brief prepare_store() of each request, in order, in one turn of the worker.
  std::future<std::vector<std::optional<PrepareStoreOutput>>> prepare_store_batch(
      std::vector<std::vector<BlockHash>> requests);
  /// @brief complete_store(request, success) of each request, in order, in one turn.
  std::future<void> complete_store_batch(std::vector<std::vector<BlockHash>> requests,
                                         bool success = true);

  /**
   * @brief Run `work(manager)` on the worker; its result or exception comes through the future.
   * Several calls inside one `work` are atomic with respect to other submissions.
   */
  template <class F>
  auto submit(F work) -> std::future<std::invoke_result_t<F&, OffloadingManager&>> {
    using R   = std::invoke_result_t<F&, OffloadingManager&>;
    auto task = std::make_shared<std::packaged_task<R(OffloadingManager&)>>(std::move(work));
    auto done = task->get_future();
    enqueue([task](OffloadingManager& manager) { (*task)(manager); });
    return done;
  }

  /**
   * @brief Run `work(manager)` on the worker, then `callback(future)` on the worker with the
   * ready future of its result (get() returns the value or rethrows the exception).
   */
  template <class F, class Callback>
  void submit(F work, Callback callback) {
    using R = std::invoke_result_t<F&, OffloadingManager&>;
    enqueue([work     = std::move(work),
             callback = std::move(callback)](OffloadingManager& manager) mutable {
      std::packaged_task<R(OffloadingManager&)> task{std::move(work)};
      task(manager);
      callback(task.get_future());
    });
  }

  /// @brief Block until everything submitted before this call has run.
  void drain();

 private:
  void enqueue(std::function<void(OffloadingManager&)> work);
  void run();

  std::unique_ptr<OffloadingManager> manager_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void(OffloadingManager&)>> queue_;
  bool stopping_{false};
  std::thread worker_;  // last: starts after everything it reads is constructed
};

}  // namespace kvoffload
