// The one error path of CUDA runtime calls. KVO_CUDA_TRY(call) throws kvoffload::runtime_error
// carrying the CUDA error's name and message, the call and file:line; KVO_CUDA_TRY_NOTHROW
// (for destructors and cleanup) prints the same to stderr instead.
#pragma once

#include <cuda_runtime_api.h>

namespace kvoffload::transfer::detail {

[[noreturn]] void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line);
void report_cuda_error(cudaError_t error, const char* call, const char* file, int line) noexcept;

}  // namespace kvoffload::transfer::detail

#define KVO_CUDA_TRY(call)                                                                         \
  do {                                                                                             \
    const cudaError_t kvo_cuda_error_ = (call);                                                    \
    if (kvo_cuda_error_ != cudaSuccess) [[unlikely]] {                                             \
      ::kvoffload::transfer::detail::throw_cuda_error(kvo_cuda_error_, #call, __FILE__, __LINE__); \
    }                                                                                              \
  } while (0)

#define KVO_CUDA_TRY_NOTHROW(call)                      \
  do {                                                  \
    const cudaError_t kvo_cuda_error_ = (call);         \
    if (kvo_cuda_error_ != cudaSuccess) [[unlikely]] {  \
      ::kvoffload::transfer::detail::report_cuda_error( \
          kvo_cuda_error_, #call, __FILE__, __LINE__);  \
    }                                                   \
  } while (0)
