// Asynchronous front end: one worker thread runs queued calls in submission order.
#include <kvoffload/async_manager.hpp>
#include <kvoffload/error.hpp>

namespace kvoffload {

AsyncManager::AsyncManager(std::unique_ptr<OffloadingManager> manager)
    : manager_{std::move(manager)} {
  KVO_EXPECTS(manager_ != nullptr, "async: a manager is required, got null");
  worker_ = std::thread{[this] { run(); }};
}

AsyncManager::~AsyncManager() {
  {
    std::lock_guard lock{mutex_};
    stopping_ = true;
  }
  ready_.notify_one();
  worker_.join();
}

void AsyncManager::enqueue(std::function<void(OffloadingManager&)> work) {
  {
    std::lock_guard lock{mutex_};
    queue_.push_back(std::move(work));
  }
  ready_.notify_one();
}

void AsyncManager::run() {
  for (;;) {
    std::function<void(OffloadingManager&)> work;
    {
      std::unique_lock lock{mutex_};
      ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued has run
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      work(*manager_);
    } catch (...) {
      // Only a completion callback can get here (futures capture the calls' exceptions); the
      // worker must survive it, so it is dropped.
    }
  }
}

void AsyncManager::drain() {
  submit([](OffloadingManager&) {}).wait();
}

std::future<std::optional<std::size_t>> AsyncManager::lookup(std::vector<BlockHash> hashes) {
  return submit([h = std::move(hashes)](OffloadingManager& m) { return m.lookup(h); });
}

std::future<LoadStoreSpec> AsyncManager::prepare_load(std::vector<BlockHash> hashes) {
  return submit([h = std::move(hashes)](OffloadingManager& m) { return m.prepare_load(h); });
}

std::future<void> AsyncManager::touch(std::vector<BlockHash> hashes) {
  return submit([h = std::move(hashes)](OffloadingManager& m) { m.touch(h); });
}

std::future<void> AsyncManager::complete_load(std::vector<BlockHash> hashes) {
  return submit([h = std::move(hashes)](OffloadingManager& m) { m.complete_load(h); });
}

std::future<std::optional<PrepareStoreOutput>> AsyncManager::prepare_store(
    std::vector<BlockHash> hashes) {
  return submit([h = std::move(hashes)](OffloadingManager& m) { return m.prepare_store(h); });
}

std::future<void> AsyncManager::complete_store(std::vector<BlockHash> hashes, bool success) {
  return submit(
      [h = std::move(hashes), success](OffloadingManager& m) { m.complete_store(h, success); });
}

std::future<std::vector<OffloadingEvent>> AsyncManager::take_events() {
  return submit([](OffloadingManager& m) { return m.take_events(); });
}

std::future<ManagerStats> AsyncManager::stats() {
  return submit([](OffloadingManager& m) { return m.stats(); });
}

std::future<std::vector<std::optional<std::size_t>>> AsyncManager::lookup_batch(
    std::vector<std::vector<BlockHash>> requests) {
  return submit([r = std::move(requests)](OffloadingManager& m) {
    std::vector<std::optional<std::size_t>> hits;
    hits.reserve(r.size());
    for (const auto& request : r)
      hits.push_back(m.lookup(request));
    return hits;
  });
}

std::future<std::vector<std::optional<PrepareStoreOutput>>> AsyncManager::prepare_store_batch(
    std::vector<std::vector<BlockHash>> requests) {
  return submit([r = std::move(requests)](OffloadingManager& m) {
    std::vector<std::optional<PrepareStoreOutput>> outs;
    outs.reserve(r.size());
    for (const auto& request : r)
      outs.push_back(m.prepare_store(request));
    return outs;
  });
}

std::future<void> AsyncManager::complete_store_batch(std::vector<std::vector<BlockHash>> requests,
                                                     bool success) {
  return submit([r = std::move(requests), success](OffloadingManager& m) {
    for (const auto& request : r)
      m.complete_store(request, success);
  });
}

}  // namespace kvoffload
