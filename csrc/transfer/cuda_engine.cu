#include "transfer/cuda_engine.hpp"

#include "copy_chunks.cuh"
#include "transfer/cuda_check.hpp"
#include "transfer/cuda_handles.hpp"
#include "transfer/nvtx.hpp"
#include "transfer/validate.hpp"

#include <kvoffload/error.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
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

/// Issue the copies on `stream`: one cudaMemcpyBatchAsync, or one cudaMemcpyAsync each.
void issue(const CopyList& copies, cudaStream_t stream, bool batch) {
  if (copies.sizes.empty()) return;
  if (!batch || copies.sizes.size() == 1) {
    for (std::size_t i = 0; i < copies.sizes.size(); ++i) {
      KVO_CUDA_TRY(cudaMemcpyAsync(
          copies.dsts[i], copies.srcs[i], copies.sizes[i], cudaMemcpyDefault, stream));
    }
    return;
  }
  cudaMemcpyAttributes attributes{};
  attributes.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
  std::size_t first_index   = 0;
#if CUDART_VERSION >= 13000
  KVO_CUDA_TRY(cudaMemcpyBatchAsync(const_cast<void* const*>(copies.dsts.data()),
                                    copies.srcs.data(),
                                    copies.sizes.data(),
                                    copies.sizes.size(),
                                    &attributes,
                                    &first_index,
                                    1,
                                    stream));
#else
  std::size_t failed_index = 0;
  KVO_CUDA_TRY(cudaMemcpyBatchAsync(const_cast<void**>(copies.dsts.data()),
                                    const_cast<void**>(copies.srcs.data()),
                                    const_cast<std::size_t*>(copies.sizes.data()),
                                    copies.sizes.size(),
                                    &attributes,
                                    &first_index,
                                    1,
                                    &failed_index,
                                    stream));
#endif
}

struct Job {
  Method method{Method::kAuto};
  std::vector<Event> events;  // [0] = done; then one per layer when requested
  bool per_layer{false};
  std::string error;  // set when enqueueing failed
};

/// Streams and staging ring of one direction.
struct Lane {
  Stream main;  // everything but the staged gather / scatter; jobs complete here, in order
  Stream aux;   // the staged gather (stores) or scatter (loads)
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
    KVO_CUDA_TRY(cudaSetDevice(options.device));
    cudaDeviceProp properties{};
    KVO_CUDA_TRY(cudaGetDeviceProperties(&properties, options.device));
    device_name_ = properties.name;
    sm_count_    = properties.multiProcessorCount;
    check_memory();
    upload_tensor_table();
    slot_image_bytes_ = layout_.host_slot_bytes();
    piece_slots_      = std::max<std::size_t>(1, options.staging_piece_bytes / slot_image_bytes_);
    lanes_[0]         = std::make_unique<Lane>();
    lanes_[1]         = std::make_unique<Lane>();
  }

  ~CudaEngine() override {
    // Nothing may still run when the staging ring, the table and the events go away.
    for (const auto& lane : lanes_) {
      if (!lane) continue;
      KVO_CUDA_TRY_NOTHROW(cudaStreamSynchronize(lane->main.get()));
      KVO_CUDA_TRY_NOTHROW(cudaStreamSynchronize(lane->aux.get()));
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
    Job job;
    job.method    = method;
    job.per_layer = request.per_layer_events;
    try {
      KVO_CUDA_TRY(cudaSetDevice(options_.device));
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
    auto it = find(id);
    if (!it->second.error.empty()) return retire(it, cudaErrorUnknown);
    const cudaError_t state = cudaEventQuery(it->second.events[0].get());
    if (state == cudaErrorNotReady) {
      // The runtime also leaves "not ready" as the thread's last error: clear it, or a later
      // check of cudaGetLastError() would take it for a failure.
      static_cast<void>(cudaGetLastError());
      return {JobState::kPending, it->second.method, {}};
    }
    return retire(it, state);
  }

  JobStatus wait(JobId id) override {
    cudaEvent_t done = nullptr;
    {
      std::lock_guard lock{mutex_};
      done = find(id)->second.events[0].get();
    }
    // Block outside the lock, so other threads can submit and poll meanwhile.
    const cudaError_t state = cudaEventSynchronize(done);
    std::lock_guard lock{mutex_};
    auto it = find(id);
    if (!it->second.error.empty()) return retire(it, cudaErrorUnknown);
    return retire(it, state);
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
    return "CUDA engine on " + device_name_ + " (device " + std::to_string(options_.device) + ", " +
           std::to_string(sm_count_) + " SMs); host slots " +
           (kernel_available_ ? "mapped for the copy kernel" : "not mapped: no kernel method");
  }

  const KvLayout& layout() const noexcept override { return layout_; }
  const HostSlots& host_slots() const noexcept override { return host_; }

 private:
  using JobMap = std::unordered_map<JobId, Job>;

  void check_memory() {
    cudaPointerAttributes first{};
    cudaPointerAttributes last{};
    std::byte* end = host_.base + host_.slot_bytes * host_.num_slots - 1;
    KVO_CUDA_TRY(cudaPointerGetAttributes(&first, host_.base));
    KVO_CUDA_TRY(cudaPointerGetAttributes(&last, end));
    KVO_EXPECTS(first.type == cudaMemoryTypeHost && last.type == cudaMemoryTypeHost,
                "host slots are not pinned: register them (PinnedHostPool, cudaHostRegister) or "
                "allocate them with cudaHostAlloc");
    kernel_available_ = first.devicePointer != nullptr && last.devicePointer != nullptr &&
                        static_cast<std::byte*>(last.devicePointer) -
                                static_cast<std::byte*>(first.devicePointer) ==
                            end - host_.base;
    images_ = static_cast<std::byte*>(first.devicePointer);
    for (std::size_t t = 0; t < layout_.num_tensors(); ++t) {
      cudaPointerAttributes attributes{};
      KVO_CUDA_TRY(cudaPointerGetAttributes(&attributes, layout_.tensors()[t].base));
      KVO_EXPECTS(
          attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged,
          "KV tensor " + std::to_string(t) + " is not device memory");
    }
  }

  void upload_tensor_table() {
    std::vector<k::DeviceTensor> table;
    std::uint64_t segments = 0;
    aligned_16_            = reinterpret_cast<std::uintptr_t>(host_.base) % 16 == 0 &&
                  host_.slot_bytes % 16 == 0 && layout_.gpu_block_bytes() % 16 == 0;
    min_chunk_bytes_ = layout_.tensors().front().chunk_bytes;
    for (std::size_t t = 0; t < layout_.num_tensors(); ++t) {
      const KvTensor& tensor = layout_.tensors()[t];
      table.push_back({tensor.base,
                       tensor.block_stride_bytes,
                       tensor.chunk_bytes,
                       layout_.tensor_offset(t),
                       segments});
      segments += (tensor.chunk_bytes + k::kSegmentBytes - 1) / k::kSegmentBytes;
      aligned_16_ = aligned_16_ && reinterpret_cast<std::uintptr_t>(tensor.base) % 16 == 0 &&
                    tensor.block_stride_bytes % 16 == 0 && tensor.chunk_bytes % 16 == 0;
      min_chunk_bytes_ = std::min(min_chunk_bytes_, tensor.chunk_bytes);
    }
    table.push_back({nullptr, 0, 0, 0, segments});  // sentinel: segments of a whole block
    table_ = DeviceBuffer{table.size() * sizeof(k::DeviceTensor)};
    KVO_CUDA_TRY(cudaMemcpy(table_.data(), table.data(), table_.size(), cudaMemcpyHostToDevice));
    segments_before_.reserve(table.size());
    for (const auto& entry : table)
      segments_before_.push_back(entry.first_segment);
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
      static_cast<void>(cudaGetLastError());
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

  /// Launch the copy kernel over blocks `pairs` (GPU block, image offset) and tensors [t0, t1).
  void launch(const std::vector<std::pair<std::uint32_t, std::uint64_t>>& pairs,
              std::size_t t0,
              std::size_t t1,
              std::byte* images,
              bool to_images,
              int ctas,
              cudaStream_t stream) {
    k::CopyChunksParams params{};
    params.tensors            = reinterpret_cast<const k::DeviceTensor*>(table_.data());
    params.first_tensor       = static_cast<std::uint32_t>(t0);
    params.end_tensor         = static_cast<std::uint32_t>(t1);
    params.first_segment      = segments_before_[t0];
    params.segments_per_block = segments_before_[t1] - segments_before_[t0];
    params.images             = images;
    params.to_images          = to_images ? 1U : 0U;
    for (std::size_t first = 0; first < pairs.size(); first += k::kMaxPairs) {
      const std::size_t n = std::min<std::size_t>(k::kMaxPairs, pairs.size() - first);
      params.num_pairs    = static_cast<std::uint32_t>(n);
      for (std::size_t i = 0; i < n; ++i) {
        params.gpu_block[i]    = pairs[first + i].first;
        params.image_offset[i] = pairs[first + i].second;
      }
      const std::uint64_t warps = n * params.segments_per_block;
      const auto grid           = static_cast<int>(
          std::min<std::uint64_t>(static_cast<std::uint64_t>(ctas),
                                  (warps + k::kCopyThreads / 32 - 1) / (k::kCopyThreads / 32)));
      KVO_SCOPED_RANGE(std::string{"copy_chunks "} + (to_images ? "gather " : "scatter ") +
                       std::to_string(n) + " blocks x " + std::to_string(t1 - t0) + " tensors, " +
                       std::to_string(grid) + " CTAs");
      // The launch's own status, not cudaGetLastError(), which may hold an older call's error.
      void* args[] = {&params};
      KVO_CUDA_TRY(cudaLaunchKernel(reinterpret_cast<const void*>(&k::copy_chunks),
                                    dim3(static_cast<unsigned>(grid)),
                                    dim3(k::kCopyThreads),
                                    args,
                                    0,
                                    stream));
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
      std::vector<std::pair<std::uint32_t, std::uint64_t>> pairs;
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
        issue(copies, stream, batch);
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
    const std::size_t groups      = per_layer ? layout_.num_layers() : 1;
    const std::size_t piece_bytes = piece_slots_ * slot_image_bytes_;
    const std::size_t slots       = request.host_slots.size();
    // Slots adjacent in the host array merge into one DMA when the slot has no padding.
    const bool mergeable = host_.slot_bytes == slot_image_bytes_;
    if (request.wait_event != nullptr) {
      KVO_CUDA_TRY(cudaStreamWaitEvent(lane.aux.get(), request.wait_event, 0));
    }
    std::vector<std::pair<std::uint32_t, std::uint64_t>> pairs;
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
        issue(copies, lane.main.get(), true);
        lane.piece_free[r].record(lane.main.view());
      } else {
        KVO_CUDA_TRY(cudaStreamWaitEvent(lane.main.get(), lane.piece_free[r].get(), 0));
        issue(copies, lane.main.get(), true);
        lane.piece_ready[r].record(lane.main.view());
        KVO_CUDA_TRY(cudaStreamWaitEvent(lane.aux.get(), lane.piece_ready[r].get(), 0));
        for (std::size_t g = 0; g < groups; ++g) {
          const auto [t0, t1] = group(per_layer, g);
          launch(pairs, t0, t1, piece, false, sm_count_, lane.aux.get());
          // Earlier pieces' scatters precede on this stream: after the last piece's layer g,
          // layer g is complete.
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
  DeviceBuffer table_;
  std::vector<std::uint64_t> segments_before_;
  std::unique_ptr<Lane> lanes_[2];  // [0] stores, [1] loads
  std::mutex mutex_;
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
