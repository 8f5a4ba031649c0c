#include "transfer/cuda_engine.hpp"

#include "copy_chunks.cuh"
#include "transfer/cuda_check.hpp"
#include "transfer/cuda_handles.hpp"
#include "transfer/cuda_scope.hpp"
#include "transfer/job_wait.hpp"
#include "transfer/launch_plan.hpp"
#include "transfer/numa.hpp"
#include "transfer/nvtx.hpp"
#include "transfer/validate.hpp"

#include <kvoffload/error.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kvoffload::transfer::detail {

namespace {

namespace k = kernels;

std::string mib(std::size_t bytes) {
  return std::to_string(bytes >> 20) + "." + std::to_string((bytes & ((1U << 20) - 1)) * 10 >> 20) +
         " MiB";
}

/// Copies for the copy engines: one entry per (possibly merged) contiguous range.
struct CopyList {
  std::vector<void*> dsts;
  std::vector<const void*> srcs;
  std::vector<std::size_t> sizes;

  void add(void* dst, const void* src, std::size_t n, bool merge) {
    if (merge && !sizes.empty() &&
        static_cast<std::byte*>(dsts.back()) + sizes.back() == static_cast<std::byte*>(dst) &&
        static_cast<const std::byte*>(srcs.back()) + sizes.back() ==
            static_cast<const std::byte*>(src)) {
      sizes.back() += n;
      return;
    }
    dsts.push_back(dst);
    srcs.push_back(src);
    sizes.push_back(n);
  }
  void clear() {
    dsts.clear();
    srcs.clear();
    sizes.clear();
  }
};

struct Job {
  Method method{Method::kAuto};
  std::vector<Event> events;  // [0] = done; then one per layer when requested
  bool per_layer{false};
  std::string error;  // set when enqueueing failed
};

/// Streams and staging ring of one direction.
struct Lane {
  explicit Lane(int aux_priority) : aux{aux_priority} {}
  Stream main;  // everything but the staged gather / scatter; jobs complete here, in order
  Stream aux;   // the staged gather (stores, low priority) or scatter (loads)
  DeviceBuffer staging;
  std::vector<Event> piece_ready;  // gathered (store) or DMA'd in (load)
  std::vector<Event> piece_free;   // DMA'd out (store) or scattered (load)
  std::size_t next_piece{0};
};

class CudaEngine final : public TransferEngine {
 public:
  CudaEngine(const KvLayout& layout, const HostSlots& host, const TransferEngineOptions& options)
      : layout_{layout}, host_{host}, options_{options} {
    validate_host_slots(layout_, host_);
    KVO_EXPECTS(options.default_sm_budget > 0,
                "engine: default_sm_budget " + std::to_string(options.default_sm_budget) +
                    " must be positive");
    KVO_EXPECTS(options.staging_pieces >= 2, "engine: staging_pieces must be at least 2");
    validate_cta_threads(options.cta_threads);
    const LastErrorScope keep_callers_error;
    const DeviceScope on_device{options.device};
    cudaDeviceProp properties{};
    KVO_CUDA_TRY(cudaGetDeviceProperties(&properties, options.device));
    device_name_ = properties.name;
    sm_count_    = properties.multiProcessorCount;
    // Load the kernel now: loaded lazily at its first launch, it may need a context-wide
    // synchronization, so the first submit would wait behind all queued GPU work.
    cudaFuncAttributes kernel{};
    KVO_CUDA_TRY(cudaFuncGetAttributes(&kernel, reinterpret_cast<const void*>(&k::copy_chunks)));
    kernel_registers_ = kernel.numRegs;
    KVO_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &ctas_per_sm_, reinterpret_cast<const void*>(&k::copy_chunks), options.cta_threads, 0));
    ctas_per_sm_       = std::max(ctas_per_sm_, 1);
    int least_priority = 0;
    int most_priority  = 0;
    KVO_CUDA_TRY(cudaDeviceGetStreamPriorityRange(&least_priority, &most_priority));
    // Stores' gathers run at the lowest priority: under compute they fill the gaps instead of
    // competing with the compute kernel for SMs. Loads (which compute waits for) stay default.
    lanes_[0] = std::make_unique<Lane>(least_priority);
    lanes_[1] = std::make_unique<Lane>(0);
    check_memory();
    upload_tensor_table();
    slot_image_bytes_ = layout_.host_slot_bytes();
    piece_slots_      = std::max<std::size_t>(1, options.staging_piece_bytes / slot_image_bytes_);
  }

  ~CudaEngine() override {
    const LastErrorScope keep_callers_error;
    try {
      // On the engine's device: freeing the ring and the table on a thread with no device set
      // would create a device-0 context.
      const DeviceScope on_device{options_.device};
      // Nothing may still run when the staging ring, the table and the events go away.
      for (const auto& lane : lanes_) {
        if (!lane) continue;
        KVO_CUDA_TRY_NOTHROW(cudaStreamSynchronize(lane->main.get()));
        KVO_CUDA_TRY_NOTHROW(cudaStreamSynchronize(lane->aux.get()));
      }
      jobs_.clear();
      free_events_.clear();
      for (auto& lane : lanes_)
        lane.reset();
      table_ = DeviceBuffer{};
    } catch (const std::exception& e) {
      std::fprintf(stderr, "kvoffload: CUDA engine teardown: %s\n", e.what());
    }
  }

  JobId submit(const TransferRequest& request) override {
    std::lock_guard lock{mutex_};
    validate_request(layout_, host_, request);
    const Method method =
        request.method == Method::kAuto
            ? choose_method({.chunk_bytes       = min_chunk_bytes_,
                             .total_bytes       = request.host_slots.size() * slot_image_bytes_,
                             .gpu_busy          = request.gpu_busy,
                             .chunks_aligned_16 = aligned_16_,
                             .kernel_available  = kernel_available_})
            : request.method;
    KVO_EXPECTS(method != Method::kKernel || kernel_available_,
                "request: the kernel method needs host slots mapped into the device as one "
                "range (use PinnedHostPool, or one cudaHostRegister with cudaHostRegisterMapped)");
    KVO_SCOPED_RANGE(std::string{"kvoffload "} + to_string(request.direction) + " " +
                     to_string(method) + " " + std::to_string(request.gpu_blocks.size()) +
                     " blocks " + mib(request.host_slots.size() * slot_image_bytes_));
    const LastErrorScope keep_callers_error;
    Job job;
    job.method    = method;
    job.per_layer = request.per_layer_events;
    try {
      // Restores the caller's current device (context) when submit returns.
      const DeviceScope on_device{options_.device};
      job.events.push_back(acquire_event());
      if (request.per_layer_events) {
        for (std::size_t l = 0; l < layout_.num_layers(); ++l)
          job.events.push_back(acquire_event());
      }
      enqueue(request, method, job);
    } catch (const runtime_error& e) {
      job.error = e.what();
      // Part of the job may be queued already: let it finish before the failure is reported,
      // so the caller does not reuse slots or blocks the device still touches.
      const Lane& lane = *lanes_[request.direction == Direction::kStore ? 0 : 1];
      KVO_CUDA_TRY_NOTHROW(cudaStreamSynchronize(lane.main.get()));
      KVO_CUDA_TRY_NOTHROW(cudaStreamSynchronize(lane.aux.get()));
    }
    const JobId id = next_job_++;
    jobs_.emplace(id, std::move(job));
    return id;
  }

  JobStatus poll(JobId id) override {
    std::lock_guard lock{mutex_};
    auto it           = find(id);
    const Event* done = completion_event_of(it->second);
    if (done == nullptr) return retire(it, cudaSuccess);  // failed in submit: report its error
    // A "not ready" the query may leave as the thread's last error is cleared by this scope
    // (a later cudaGetLastError() of the caller would take it for a failure), unless the
    // caller had an error of its own pending.
    const LastErrorScope keep_callers_error;
    const cudaError_t state = cudaEventQuery(done->get());
    if (state == cudaErrorNotReady) return {JobState::kPending, it->second.method, {}};
    return retire(it, state);
  }

  JobStatus wait(JobId id) override {
    cudaEvent_t done = nullptr;
    {
      std::lock_guard lock{mutex_};
      auto it            = find(id);
      const Event* event = completion_event_of(it->second);
      // Failed in submit (its events may not exist): nothing to wait on.
      if (event == nullptr) return retire(it, cudaSuccess);
      done = event->get();
    }
    // Block outside the lock, so other threads can submit and poll meanwhile.
    const LastErrorScope keep_callers_error;
    const cudaError_t state = cudaEventSynchronize(done);
    std::lock_guard lock{mutex_};
    return retire(find(id), state);
  }

  std::vector<cudaEvent_t> completion_events(JobId id) override {
    std::lock_guard lock{mutex_};
    const Job& job = find(id)->second;
    std::vector<cudaEvent_t> events;
    for (std::size_t i = job.per_layer ? 1 : 0; i < job.events.size(); ++i) {
      events.push_back(job.events[i].get());
    }
    return events;
  }

  bool is_host_fallback() const noexcept override { return false; }

  std::string description() const override {
    std::lock_guard lock{mutex_};
    std::string text = "CUDA engine on " + device_name_ + " (device " +
                       std::to_string(options_.device) + ", " + std::to_string(sm_count_) +
                       " SMs); copy kernel CTAs of " + std::to_string(options_.cta_threads) +
                       " threads, " + std::to_string(ctas_per_sm_) + " per SM (" +
                       std::to_string(kernel_registers_) + " registers); host slots " +
                       (kernel_available_ ? "mapped for the copy kernel"
                                          : "not mapped as one range: no kernel method");
    if (slots_numa_node_ >= 0) {
      text += "; host slots on NUMA node " + std::to_string(slots_numa_node_);
      if (device_numa_node_ >= 0)
        text += " (the device's node: " + std::to_string(device_numa_node_) + ")";
    }
    if (!batch_supported_) {
      text += "; cudaMemcpyBatchAsync unsupported here (" + batch_error_ +
              "): batch and staged copies use one cudaMemcpyAsync per range";
    }
    return text;
  }

  const KvLayout& layout() const noexcept override { return layout_; }
  const HostSlots& host_slots() const noexcept override { return host_; }

 private:
  using JobMap = std::unordered_map<JobId, Job>;

  void check_memory() {
    std::vector<TensorMemory> tensors;
    for (const KvTensor& tensor : layout_.tensors()) {
      cudaPointerAttributes attributes{};
      KVO_CUDA_TRY(cudaPointerGetAttributes(&attributes, tensor.base));
      tensors.push_back({static_cast<int>(attributes.type), attributes.device});
    }
    validate_tensor_memory(tensors, options_.device);
    // Every slot's first and last byte: a middle registration may be missing or (on a device
    // without cudaDevAttrCanUseHostPointerForRegisteredMem) map elsewhere.
    const HostSlotsMapping mapping = map_host_slots(host_, [](const std::byte* address) {
      cudaPointerAttributes attributes{};
      if (cudaPointerGetAttributes(&attributes, address) != cudaSuccess) return HostMapping{};
      return HostMapping{attributes.type == cudaMemoryTypeHost,
                         static_cast<std::byte*>(attributes.devicePointer)};
    });
    KVO_EXPECTS(!mapping.unpinned_slot.has_value(),
                "host slot " + std::to_string(mapping.unpinned_slot.value_or(0)) +
                    " is not pinned: register the host slots (PinnedHostPool, cudaHostRegister) "
                    "or allocate them with cudaHostAlloc");
    kernel_available_ = mapping.contiguous;
    images_           = mapping.device_base;
    if (cudaDeviceGetAttribute(&device_numa_node_, cudaDevAttrHostNumaId, options_.device) !=
        cudaSuccess)
      device_numa_node_ = -1;
    if (online_numa_nodes().size() > 1) slots_numa_node_ = numa_node_of(host_.base);
  }

  void upload_tensor_table() {
    aligned_16_ = reinterpret_cast<std::uintptr_t>(host_.base) % 16 == 0 &&
                  host_.slot_bytes % 16 == 0 && layout_.gpu_block_bytes() % 16 == 0;
    min_chunk_bytes_ = layout_.tensors().front().chunk_bytes;
    for (const KvTensor& tensor : layout_.tensors()) {
      aligned_16_ = aligned_16_ && reinterpret_cast<std::uintptr_t>(tensor.base) % 16 == 0 &&
                    tensor.block_stride_bytes % 16 == 0 && tensor.chunk_bytes % 16 == 0;
      min_chunk_bytes_ = std::min(min_chunk_bytes_, tensor.chunk_bytes);
    }
    table_host_ = copy_tensor_table(layout_);
    table_      = DeviceBuffer{table_host_.size() * sizeof(k::DeviceTensor)};
    // On an engine stream, then synchronized: a blocking cudaMemcpy from pageable memory may
    // return before the bytes reach the device, and the engine's non-blocking streams are not
    // ordered after the legacy stream, so the first kernel could read a stale table.
    cudaStream_t stream = lanes_[0]->main.get();
    KVO_CUDA_TRY(cudaMemcpyAsync(
        table_.data(), table_host_.data(), table_.size(), cudaMemcpyHostToDevice, stream));
    KVO_CUDA_TRY(cudaStreamSynchronize(stream));
  }

  Event acquire_event() {
    if (free_events_.empty()) return Event{};
    Event event = std::move(free_events_.back());
    free_events_.pop_back();
    return event;
  }

  JobMap::iterator find(JobId id) {
    auto it = jobs_.find(id);
    KVO_EXPECTS(it != jobs_.end(), "job " + std::to_string(id) + " is unknown or retired");
    return it;
  }

  JobStatus retire(JobMap::iterator it, cudaError_t state) {
    Job& job = it->second;
    JobStatus status{JobState::kDone, job.method, {}};
    if (!job.error.empty()) {
      status = {JobState::kFailed, job.method, job.error};
    } else if (state != cudaSuccess) {
      status = {JobState::kFailed,
                job.method,
                std::string{"kvoffload: job failed on the device: "} + cudaGetErrorName(state) +
                    " (" + cudaGetErrorString(state) + ")"};
    }
    // A failed enqueue may have left an event unrecorded or pending: only reuse clean ones.
    if (status.state == JobState::kDone) {
      for (auto& event : job.events)
        free_events_.push_back(std::move(event));
    }
    jobs_.erase(it);
    return status;
  }

  /// Tensor range of layer group `g` (all tensors when not per layer).
  std::pair<std::size_t, std::size_t> group(bool per_layer, std::size_t g) const {
    if (!per_layer) return {0, layout_.num_tensors()};
    return {layout_.layer_first_tensor(g), layout_.layer_first_tensor(g + 1)};
  }

  /// Launch the copy kernel over blocks `pairs` (GPU block, image offset) and tensors [t0, t1),
  /// on at most `budget_sms` SMs' worth of CTAs.
  void launch(const std::vector<CopyPair>& pairs,
              std::size_t t0,
              std::size_t t1,
              std::byte* images,
              bool to_images,
              int budget_sms,
              cudaStream_t stream) {
    const auto* device_table = reinterpret_cast<const k::DeviceTensor*>(table_.data());
    for (std::size_t first = 0; first < pairs.size(); first += k::kMaxPairs) {
      k::CopyChunksParams params =
          copy_launch_params(device_table, table_host_, t0, t1, pairs, first, images, to_images);
      const int grid =
          copy_grid_ctas(static_cast<std::uint64_t>(params.num_pairs) * params.segments_per_block,
                         options_.cta_threads,
                         budget_sms,
                         ctas_per_sm_);
      KVO_SCOPED_RANGE(std::string{"copy_chunks "} + (to_images ? "gather " : "scatter ") +
                       std::to_string(params.num_pairs) + " blocks x " + std::to_string(t1 - t0) +
                       " tensors, " + std::to_string(grid) + " CTAs");
      // The launch's own status, not cudaGetLastError(), which may hold an older call's error.
      void* args[] = {&params};
      KVO_CUDA_TRY(cudaLaunchKernel(reinterpret_cast<const void*>(&k::copy_chunks),
                                    dim3(static_cast<unsigned>(grid)),
                                    dim3(static_cast<unsigned>(options_.cta_threads)),
                                    args,
                                    0,
                                    stream));
    }
  }

  /// Issue the copies on `stream`: one cudaMemcpyBatchAsync, or one cudaMemcpyAsync each (the
  /// per-chunk method, and every batch once the driver said it cannot run the batch API).
  void issue(const CopyList& copies, cudaStream_t stream, bool batch, bool gpu_busy) {
    if (copies.sizes.empty()) return;
    if (batch && batch_supported_ && copies.sizes.size() > 1) {
      cudaMemcpyAttributes attributes{};
      attributes.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
      attributes.flags          = batch_copy_flags(gpu_busy);
      std::size_t first_index   = 0;
      const cudaError_t error   = cudaMemcpyBatchAsync(const_cast<void* const*>(copies.dsts.data()),
                                                     copies.srcs.data(),
                                                     copies.sizes.data(),
                                                     copies.sizes.size(),
                                                     &attributes,
                                                     &first_index,
                                                     1,
                                                     stream);
      if (error == cudaSuccess) return;
      if (!batch_copy_unsupported(error)) {
        throw_cuda_error(error, "cudaMemcpyBatchAsync", __FILE__, __LINE__);
      }
      // Not supported by this driver or platform: per-copy from now on, said in description().
      batch_supported_ = false;
      batch_error_     = cudaGetErrorName(error);
    }
    for (std::size_t i = 0; i < copies.sizes.size(); ++i) {
      KVO_CUDA_TRY(cudaMemcpyAsync(
          copies.dsts[i], copies.srcs[i], copies.sizes[i], cudaMemcpyDefault, stream));
    }
  }

  void enqueue(const TransferRequest& request, Method method, Job& job) {
    const bool store         = request.direction == Direction::kStore;
    Lane& lane               = *lanes_[store ? 0 : 1];
    const std::size_t kb     = layout_.gpu_blocks_per_slot();
    const bool per_layer     = request.per_layer_events;
    const std::size_t groups = per_layer ? layout_.num_layers() : 1;
    if (method == Method::kStaged) {
      enqueue_staged(request, lane, job);
      return;
    }
    cudaStream_t stream = lane.main.get();
    if (request.wait_event != nullptr) {
      KVO_CUDA_TRY(cudaStreamWaitEvent(stream, request.wait_event, 0));
    }
    if (method == Method::kKernel) {
      std::vector<CopyPair> pairs;
      pairs.reserve(request.gpu_blocks.size());
      for (std::size_t i = 0; i < request.gpu_blocks.size(); ++i) {
        const auto slot = static_cast<std::size_t>(request.host_slots[i / kb]);
        pairs.emplace_back(static_cast<std::uint32_t>(request.gpu_blocks[i]),
                           slot * host_.slot_bytes + (i % kb) * layout_.gpu_block_bytes());
      }
      const int budget = request.sm_budget > 0 ? request.sm_budget : options_.default_sm_budget;
      for (std::size_t g = 0; g < groups; ++g) {
        const auto [t0, t1] = group(per_layer, g);
        launch(pairs, t0, t1, images_, store, budget, stream);
        if (per_layer) job.events[1 + g].record(lane.main.view());
      }
    } else {
      const bool batch = method == Method::kBatchMemcpy;
      CopyList copies;
      for (std::size_t g = 0; g < groups; ++g) {
        const auto [t0, t1] = group(per_layer, g);
        copies.clear();
        for (std::size_t i = 0; i < request.gpu_blocks.size(); ++i) {
          std::byte* slot =
              host_.base + static_cast<std::size_t>(request.host_slots[i / kb]) * host_.slot_bytes;
          for (std::size_t t = t0; t < t1; ++t) {
            std::byte* gpu      = layout_.gpu_chunk(t, request.gpu_blocks[i]);
            std::byte* host     = slot + layout_.host_offset(i % kb, t);
            const std::size_t n = layout_.tensors()[t].chunk_bytes;
            if (store) {
              copies.add(host, gpu, n, batch);
            } else {
              copies.add(gpu, host, n, batch);
            }
          }
        }
        issue(copies, stream, batch, request.gpu_busy);
        if (per_layer) job.events[1 + g].record(lane.main.view());
      }
    }
    job.events[0].record(lane.main.view());
  }

  void ensure_staging(Lane& lane) {
    if (lane.staging.size() != 0) return;
    // Events first, buffer last: if anything throws, the lane stays without a ring and the
    // next staged submit builds it again (never a ring without its events).
    std::vector<Event> ready(options_.staging_pieces);
    std::vector<Event> free(options_.staging_pieces);
    DeviceBuffer staging{options_.staging_pieces * piece_slots_ * slot_image_bytes_};
    lane.piece_ready = std::move(ready);
    lane.piece_free  = std::move(free);
    lane.staging     = std::move(staging);
  }

  /// Gather into / scatter from the device staging ring; the copy engines move whole slots.
  void enqueue_staged(const TransferRequest& request, Lane& lane, Job& job) {
    ensure_staging(lane);
    const bool store              = request.direction == Direction::kStore;
    const std::size_t kb          = layout_.gpu_blocks_per_slot();
    const bool per_layer          = request.per_layer_events;
    const std::size_t piece_bytes = piece_slots_ * slot_image_bytes_;
    const std::size_t slots       = request.host_slots.size();
    // Slots adjacent in the host array merge into one DMA when the slot has no padding.
    const bool mergeable = host_.slot_bytes == slot_image_bytes_;
    if (request.wait_event != nullptr) {
      KVO_CUDA_TRY(cudaStreamWaitEvent(lane.aux.get(), request.wait_event, 0));
    }
    std::vector<CopyPair> pairs;
    CopyList copies;
    std::size_t last_piece = 0;
    for (std::size_t first = 0; first < slots; first += piece_slots_) {
      const std::size_t end = std::min(slots, first + piece_slots_);
      const std::size_t r   = lane.next_piece++ % options_.staging_pieces;
      last_piece            = r;
      std::byte* piece      = lane.staging.data() + r * piece_bytes;
      pairs.clear();
      copies.clear();
      for (std::size_t i = first; i < end; ++i) {
        std::byte* host =
            host_.base + static_cast<std::size_t>(request.host_slots[i]) * host_.slot_bytes;
        std::byte* staged = piece + (i - first) * slot_image_bytes_;
        if (store) {
          copies.add(host, staged, slot_image_bytes_, mergeable);
        } else {
          copies.add(staged, host, slot_image_bytes_, mergeable);
        }
        for (std::size_t sub = 0; sub < kb; ++sub) {
          pairs.emplace_back(static_cast<std::uint32_t>(request.gpu_blocks[i * kb + sub]),
                             (i - first) * slot_image_bytes_ + sub * layout_.gpu_block_bytes());
        }
      }
      const bool last = end == slots;
      if (store) {
        KVO_CUDA_TRY(cudaStreamWaitEvent(lane.aux.get(), lane.piece_free[r].get(), 0));
        launch(pairs, 0, layout_.num_tensors(), piece, true, sm_count_, lane.aux.get());
        lane.piece_ready[r].record(lane.aux.view());
        KVO_CUDA_TRY(cudaStreamWaitEvent(lane.main.get(), lane.piece_ready[r].get(), 0));
        issue(copies, lane.main.get(), true, request.gpu_busy);
        lane.piece_free[r].record(lane.main.view());
      } else {
        KVO_CUDA_TRY(cudaStreamWaitEvent(lane.main.get(), lane.piece_free[r].get(), 0));
        issue(copies, lane.main.get(), true, request.gpu_busy);
        lane.piece_ready[r].record(lane.main.view());
        KVO_CUDA_TRY(cudaStreamWaitEvent(lane.aux.get(), lane.piece_ready[r].get(), 0));
        // One all-tensor scatter per piece; the last piece of a per-layer load goes layer by
        // layer. Earlier pieces' scatters precede on this stream: after the last piece's layer
        // g, layer g is complete.
        const std::vector<TensorRange> launches = staged_scatter_launches(layout_, per_layer, last);
        for (std::size_t g = 0; g < launches.size(); ++g) {
          launch(pairs,
                 launches[g].first,
                 launches[g].second,
                 piece,
                 false,
                 sm_count_,
                 lane.aux.get());
          if (per_layer && last) job.events[1 + g].record(lane.aux.view());
        }
        lane.piece_free[r].record(lane.aux.view());
      }
    }
    if (!store) {
      KVO_CUDA_TRY(cudaStreamWaitEvent(lane.main.get(), lane.piece_free[last_piece].get(), 0));
    }
    job.events[0].record(lane.main.view());
  }

  KvLayout layout_;
  HostSlots host_;
  TransferEngineOptions options_;
  std::string device_name_;
  int sm_count_{0};
  bool kernel_available_{false};
  bool aligned_16_{false};
  std::size_t min_chunk_bytes_{0};
  std::byte* images_{nullptr};  // device address of host slot 0 (mapped)
  std::size_t slot_image_bytes_{0};
  std::size_t piece_slots_{1};
  int ctas_per_sm_{1};          // CTAs of options_.cta_threads that fit one SM (occupancy)
  int kernel_registers_{0};     // registers per thread of copy_chunks
  int device_numa_node_{-1};    // cudaDevAttrHostNumaId
  int slots_numa_node_{-1};     // node of host slot 0's page (reported with several nodes)
  bool batch_supported_{true};  // false once cudaMemcpyBatchAsync said not supported
  std::string batch_error_;
  DeviceBuffer table_;
  std::vector<k::DeviceTensor> table_host_;  // what table_ holds
  std::unique_ptr<Lane> lanes_[2];           // [0] stores, [1] loads
  mutable std::mutex mutex_;
  std::vector<Event> free_events_;
  JobMap jobs_;
  JobId next_job_{1};
};

}  // namespace

std::unique_ptr<TransferEngine> make_cuda_engine(const KvLayout& layout,
                                                 const HostSlots& host,
                                                 const TransferEngineOptions& options) {
  return std::make_unique<CudaEngine>(layout, host, options);
}

}  // namespace kvoffload::transfer::detail
