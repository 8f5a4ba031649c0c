#include "transfer/cuda_check.hpp"
#include "transfer/cuda_scope.hpp"

#include <kvoffload/error.hpp>

#include <cstdio>
#include <string>

namespace kvoffload::transfer::detail {

namespace {
std::string describe(cudaError_t error, const char* call) {
  return std::string{"CUDA error "} + cudaGetErrorName(error) + " (" + cudaGetErrorString(error) +
         ") in " + call;
}
}  // namespace

void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line) {
  // The error is not cleared here: a LastErrorScope at the entry point clears what the library
  // left, and never an error the caller had pending.
  ::kvoffload::detail::throw_runtime_error(file, line, describe(error, call));
}

void report_cuda_error(cudaError_t error, const char* call, const char* file, int line) noexcept {
  std::fprintf(stderr,
               "kvoffload: %s (%s:%d), ignored in cleanup\n",
               describe(error, call).c_str(),
               file,
               line);
}

namespace {
// cuCtxGetCurrent / cuCtxSetCurrent, found through the runtime so that libcuda is not a link
// dependency (CI has no driver). CUcontext is a pointer, CUresult an int enum (0 = success).
using GetContext = int (*)(void**);
using SetContext = int (*)(void*);

template <typename F>
F driver_entry_point(const char* symbol) {
  void* function = nullptr;
  cudaDriverEntryPointQueryResult found{};
  if (cudaGetDriverEntryPointByVersion(symbol, &function, 4000, cudaEnableDefault, &found) !=
          cudaSuccess ||
      found != cudaDriverEntryPointSuccess) {
    return nullptr;
  }
  return reinterpret_cast<F>(function);
}
}  // namespace

const ContextCalls& real_context_calls() {
  static const ContextCalls calls = [] {
    const LastErrorScope keep_callers_error;
    return ContextCalls{&cudaGetDevice,
                        &cudaSetDevice,
                        driver_entry_point<GetContext>("cuCtxGetCurrent"),
                        driver_entry_point<SetContext>("cuCtxSetCurrent")};
  }();
  return calls;
}

}  // namespace kvoffload::transfer::detail
