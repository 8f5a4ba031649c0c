// The transfer engine for Python, with host slots of its own: GPU blocks and host slots by id,
// jobs by int. What kvoffload.vllm's experimental worker moves vLLM's KV blocks with.
#include "bindings.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/transfer/kv_layout.hpp>
#include <kvoffload/transfer/pinned_host_pool.hpp>
#include <kvoffload/transfer/transfer_engine.hpp>
#include <kvoffload/transfer/transfer_request.hpp>

#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;

namespace kvoffload::python {
namespace {

using transfer::Direction;
using transfer::JobState;
using transfer::JobStatus;

/// An engine over a pinned host pool it owns, behind a mutex of its own; calls run without
/// the GIL.
class PyTransferEngine {
 public:
  PyTransferEngine(const transfer::KvLayout& layout,
                   std::size_t host_slots,
                   const transfer::TransferEngineOptions& options)
      : layout_{layout} {
    const std::size_t slot_bytes = layout.host_slot_bytes();
    KVO_EXPECTS(host_slots > 0, "transfer engine: host_slots is 0");
    KVO_EXPECTS(host_slots <= std::numeric_limits<std::size_t>::max() / slot_bytes,
                "transfer engine: " + std::to_string(host_slots) + " host slots of " +
                    std::to_string(slot_bytes) + " bytes overflow the address space");
    const bool cuda = !options.force_host && transfer::cuda_device_available();
    pool_           = std::make_unique<transfer::PinnedHostPool>(
        transfer::PinnedHostPoolOptions{.bytes              = host_slots * slot_bytes,
                                                  .align_bytes        = slot_bytes,
                                                  .register_with_cuda = cuda,
                                                  .device             = options.device});
    host_   = {pool_->data(), slot_bytes, host_slots};
    engine_ = transfer::make_transfer_engine(layout_, host_, options);
  }

  template <class Work>
  decltype(auto) run(Work&& work) {
    nb::gil_scoped_release unlocked;
    std::lock_guard lock{mutex_};
    return std::forward<Work>(work)(*engine_);
  }

  transfer::JobId submit(Direction direction,
                         const std::vector<std::int64_t>& gpu_blocks,
                         const std::vector<std::int64_t>& host_slots,
                         bool gpu_busy,
                         std::uintptr_t wait_event) {
    transfer::TransferRequest request{.direction  = direction,
                                      .gpu_blocks = {gpu_blocks.begin(), gpu_blocks.end()},
                                      .host_slots = {host_slots.begin(), host_slots.end()},
                                      .gpu_busy   = gpu_busy,
                                      .wait_event = reinterpret_cast<cudaEvent_t>(wait_event)};
    return run([&](transfer::TransferEngine& e) { return e.submit(request); });
  }

  [[nodiscard]] const transfer::KvLayout& layout() const noexcept { return layout_; }
  [[nodiscard]] const transfer::HostSlots& host() const noexcept { return host_; }

 private:
  transfer::KvLayout layout_;
  std::unique_ptr<transfer::PinnedHostPool> pool_;  // outlives the engine (declared first)
  transfer::HostSlots host_{};
  std::unique_ptr<transfer::TransferEngine> engine_;
  std::mutex mutex_;
};

/// store (kStore) or load as a method of PyTransferEngine.
auto submit_method(Direction direction) {
  return [direction](PyTransferEngine& self,
                     const std::vector<std::int64_t>& gpu_blocks,
                     const std::vector<std::int64_t>& host_slots,
                     bool gpu_busy,
                     std::uintptr_t wait_event) {
    return self.submit(direction, gpu_blocks, host_slots, gpu_busy, wait_event);
  };
}

}  // namespace

void bind_transfer(nb::module_& m) {
  nb::enum_<JobState>(m, "TransferState")
      .value("PENDING", JobState::kPending)
      .value("DONE", JobState::kDone)
      .value("FAILED", JobState::kFailed);

  nb::class_<JobStatus>(m, "TransferStatus", "A transfer job's state (terminal ones once).")
      .def_ro("state", &JobStatus::state)
      .def_ro("error", &JobStatus::error, "Why it failed (FAILED only).")
      .def_prop_ro("method",
                   [](const JobStatus& s) { return std::string{transfer::to_string(s.method)}; })
      .def("__repr__", [](const JobStatus& s) {
        const char* state = s.state == JobState::kPending ? "PENDING"
                            : s.state == JobState::kDone  ? "DONE"
                                                          : "FAILED";
        return "TransferStatus(state=" + std::string{state} +
               (s.error.empty() ? "" : ", error='" + s.error + "'") + ")";
      });

  nb::class_<PyTransferEngine>(
      m,
      "TransferEngine",
      "Moves KV blocks between GPU blocks and host slots it owns (pinned when a GPU is used):\n"
      "the CUDA engine on a usable device, else the host engine (which treats the GPU\n"
      "addresses as host memory). Host slot s holds gpu_blocks_per_slot GPU blocks, block-major,\n"
      "each tensor's chunk at tensor_offset(t). Jobs are ints; poll/wait report a terminal\n"
      "state once. The memory behind every GPU address must outlive the engine.")
      .def("store",
           submit_method(Direction::kStore),
           "gpu_blocks"_a,
           "host_slots"_a,
           "gpu_busy"_a   = false,
           "wait_event"_a = 0,
           "Copy GPU blocks into host slots (k GPU blocks per slot, in order); returns the job.\n"
           "wait_event: a cudaEvent_t as an int the copy waits for (0: none).")
      .def("load",
           submit_method(Direction::kLoad),
           "gpu_blocks"_a,
           "host_slots"_a,
           "gpu_busy"_a   = false,
           "wait_event"_a = 0,
           "Copy host slots into GPU blocks; returns the job.")
      .def(
          "poll",
          [](PyTransferEngine& self, transfer::JobId job) {
            return self.run([&](transfer::TransferEngine& e) { return e.poll(job); });
          },
          "job"_a,
          "The job's state without waiting; a terminal state is reported once.")
      .def(
          "wait",
          [](PyTransferEngine& self, transfer::JobId job) {
            return self.run([&](transfer::TransferEngine& e) { return e.wait(job); });
          },
          "job"_a,
          "Wait for the job and report it (once).")
      .def(
          "tensor_offset",
          [](const PyTransferEngine& self, std::size_t tensor) {
            return self.layout().tensor_offset(tensor);
          },
          "tensor"_a,
          "Offset of a tensor's chunk inside a host slot's first GPU block.")
      .def_prop_ro(
          "host_address",
          [](const PyTransferEngine& self) {
            return reinterpret_cast<std::uintptr_t>(self.host().base);
          },
          "Address of host slot 0 (valid while the engine lives).")
      .def_prop_ro("host_slot_bytes",
                   [](const PyTransferEngine& self) { return self.host().slot_bytes; })
      .def_prop_ro("num_host_slots",
                   [](const PyTransferEngine& self) { return self.host().num_slots; })
      .def_prop_ro(
          "is_host_fallback",
          [](PyTransferEngine& self) {
            return self.run([](transfer::TransferEngine& e) { return e.is_host_fallback(); });
          })
      .def_prop_ro("description", [](PyTransferEngine& self) {
        return self.run([](transfer::TransferEngine& e) { return e.description(); });
      });

  m.def(
      "make_transfer_engine",
      [](const std::vector<TensorTuple>& tensors,
         std::size_t num_gpu_blocks,
         std::size_t host_slots,
         std::size_t gpu_blocks_per_slot,
         bool force_host,
         int device) {
        const transfer::KvLayout layout =
            kv_layout_of(tensors, num_gpu_blocks, gpu_blocks_per_slot);
        const transfer::TransferEngineOptions options{.device = device, .force_host = force_host};
        nb::gil_scoped_release unlocked;  // pinning the host slots takes a while
        return new PyTransferEngine(layout, host_slots, options);
      },
      "tensors"_a,
      "num_gpu_blocks"_a,
      "host_slots"_a,
      "gpu_blocks_per_slot"_a = 1,
      "force_host"_a          = false,
      "device"_a              = 0,
      nb::rv_policy::take_ownership,
      "A TransferEngine with `host_slots` host slots of its own. `tensors` lists the GPU KV\n"
      "tensors as (base address, block stride bytes, chunk bytes, layer) tuples of ints, like\n"
      "make_offloader. Raises LogicError for a bad layout and RuntimeFailure when pinning fails.");
}

}  // namespace kvoffload::python
