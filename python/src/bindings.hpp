// The pieces of the kvoffload._kvoffload module, each registered by its own function.
#pragma once

#include <kvoffload/offloading_manager.hpp>
#include <kvoffload/tiered_manager.hpp>
#include <kvoffload/transfer/kv_layout.hpp>

#include <nanobind/nanobind.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace kvoffload::python {

/**
 * @brief A manager as Python holds it: the C++ manager behind a mutex of its own.
 *
 * Calls release the GIL while the manager works, so another Python thread may call the same
 * manager meanwhile; the mutex keeps the manager's one-caller-at-a-time rule. The GIL is always
 * released before the mutex is taken, so the two never wait on each other.
 */
class Manager {
 public:
  Manager(std::unique_ptr<OffloadingManager> manager, std::string spec, std::size_t block_size);

  /// Run `work(manager)` without the GIL and under the mutex.
  template <class Work>
  decltype(auto) run(Work&& work) {
    nanobind::gil_scoped_release unlocked;
    std::lock_guard lock{mutex_};
    return std::forward<Work>(work)(*manager_);
  }

  /// Run `work(tiered)`, or throw logic_error naming the spec when the manager is not tiered.
  template <class Work>
  decltype(auto) run_tiered(const char* what, Work&& work) {
    require_tiered(what);
    nanobind::gil_scoped_release unlocked;
    std::lock_guard lock{mutex_};
    return std::forward<Work>(work)(*tiered_);
  }

  [[nodiscard]] const std::string& spec() const noexcept { return spec_; }
  [[nodiscard]] std::size_t block_size() const noexcept { return block_size_; }
  [[nodiscard]] bool tiered() const noexcept { return tiered_ != nullptr; }

 private:
  void require_tiered(const char* what) const;

  std::unique_ptr<OffloadingManager> manager_;
  TieredOffloadingManager* tiered_{nullptr};  // inside manager_, when it is tiered
  std::string spec_;
  std::size_t block_size_{0};
  std::mutex mutex_;
};

/// A GPU KV tensor as Python passes it: (base address, block stride bytes, chunk bytes, layer).
using TensorTuple = std::tuple<std::uintptr_t, std::size_t, std::size_t, std::uint32_t>;

/// The layout of make_offloader and make_transfer_engine. @throws logic_error for a bad one
transfer::KvLayout kv_layout_of(const std::vector<TensorTuple>& tensors,
                                std::size_t num_gpu_blocks,
                                std::size_t gpu_blocks_per_slot);

void bind_types(nanobind::module_& m);
void bind_manager(nanobind::module_& m);
void bind_replay(nanobind::module_& m);
void bind_offloader(nanobind::module_& m);
void bind_storage(nanobind::module_& m);
void bind_transfer(nanobind::module_& m);

}  // namespace kvoffload::python
