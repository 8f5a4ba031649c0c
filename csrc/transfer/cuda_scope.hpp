// Scopes that leave the caller's CUDA state as they found it: the current device (context) of
// the calling thread, and the thread's pending "last error". Every public entry point of the
// CUDA engine and of PinnedHostPool opens both.
#pragma once

#include <cuda_runtime_api.h>

namespace kvoffload::transfer::detail {

/// The runtime and driver calls a DeviceScope makes (a seam: tests pass fakes).
struct ContextCalls {
  cudaError_t (*get_device)(int* device);
  cudaError_t (*set_device)(int device);
  /// cuCtxGetCurrent / cuCtxSetCurrent through the runtime's driver entry points (0 = success);
  /// null when the driver does not offer them.
  int (*get_context)(void** context);
  int (*set_context)(void* context);
};

/// The real calls (resolved once).
const ContextCalls& real_context_calls();

/**
 * Makes `device` current for the scope, then restores what was current before: the context
 * (exactly, including "none", so a thread that had no device set does not keep ours and gets
 * no device-0 context), or, without the driver's context calls, the device when it differed.
 * Throws runtime_error when `device` cannot be set.
 */
class DeviceScope {
 public:
  explicit DeviceScope(int device, const ContextCalls& calls = real_context_calls());
  ~DeviceScope();
  DeviceScope(const DeviceScope&)            = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  const ContextCalls& calls_;
  void* previous_context_{nullptr};
  int previous_device_{0};
  bool restore_context_{false};
  bool restore_device_{false};
};

/**
 * Clears on exit the last error this scope's calls left, unless the caller had one pending on
 * entry (then it is the caller's to read, and is left alone).
 */
class LastErrorScope {
 public:
  LastErrorScope() noexcept : callers_{cudaPeekAtLastError()} {}
  ~LastErrorScope() {
    if (callers_ == cudaSuccess) static_cast<void>(cudaGetLastError());
  }
  LastErrorScope(const LastErrorScope&)            = delete;
  LastErrorScope& operator=(const LastErrorScope&) = delete;

 private:
  cudaError_t callers_;
};

}  // namespace kvoffload::transfer::detail
