// Owning, move-only handles for CUDA streams, events and device buffers, and a non-owning
// stream view. Only .cu files include this header.
#pragma once

#include "transfer/cuda_check.hpp"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

namespace kvoffload::transfer::detail {

/// A non-owning stream; built from a real stream only (never from 0 or nullptr).
class StreamView {
 public:
  explicit StreamView(cudaStream_t stream) noexcept : stream_{stream} {}
  StreamView(std::nullptr_t) = delete;
  StreamView(int)            = delete;
  [[nodiscard]] cudaStream_t get() const noexcept { return stream_; }

 private:
  cudaStream_t stream_;
};

/// A non-blocking stream (no implicit sync with the legacy default stream).
class Stream {
 public:
  /// `priority`: 0 is the default; the greatest value of cudaDeviceGetStreamPriorityRange is the
  /// lowest priority (its CTAs start only when no higher-priority stream's are waiting).
  explicit Stream(int priority = 0) {
    KVO_CUDA_TRY(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, priority));
  }
  ~Stream() {
    if (stream_ != nullptr) KVO_CUDA_TRY_NOTHROW(cudaStreamDestroy(stream_));
  }
  Stream(Stream&& other) noexcept : stream_{std::exchange(other.stream_, nullptr)} {}
  Stream& operator=(Stream&& other) noexcept {
    std::swap(stream_, other.stream_);
    return *this;
  }
  Stream(const Stream&)            = delete;
  Stream& operator=(const Stream&) = delete;
  [[nodiscard]] cudaStream_t get() const noexcept { return stream_; }
  [[nodiscard]] StreamView view() const noexcept { return StreamView{stream_}; }

 private:
  cudaStream_t stream_{nullptr};
};

/// An event without timing (cheapest record / query).
class Event {
 public:
  Event() { KVO_CUDA_TRY(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  ~Event() {
    if (event_ != nullptr) KVO_CUDA_TRY_NOTHROW(cudaEventDestroy(event_));
  }
  Event(Event&& other) noexcept : event_{std::exchange(other.event_, nullptr)} {}
  Event& operator=(Event&& other) noexcept {
    std::swap(event_, other.event_);
    return *this;
  }
  Event(const Event&)            = delete;
  Event& operator=(const Event&) = delete;
  [[nodiscard]] cudaEvent_t get() const noexcept { return event_; }
  void record(StreamView stream) const { KVO_CUDA_TRY(cudaEventRecord(event_, stream.get())); }

 private:
  cudaEvent_t event_{nullptr};
};

/// Device memory from cudaMalloc.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) : bytes_{bytes} {
    if (bytes > 0) KVO_CUDA_TRY(cudaMalloc(&data_, bytes));
  }
  ~DeviceBuffer() {
    if (data_ != nullptr) KVO_CUDA_TRY_NOTHROW(cudaFree(data_));
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_{std::exchange(other.data_, nullptr)}, bytes_{std::exchange(other.bytes_, 0)} {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&)            = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  [[nodiscard]] std::byte* data() const noexcept { return static_cast<std::byte*>(data_); }
  [[nodiscard]] std::size_t size() const noexcept { return bytes_; }

 private:
  void* data_{nullptr};
  std::size_t bytes_{0};
};

}  // namespace kvoffload::transfer::detail
