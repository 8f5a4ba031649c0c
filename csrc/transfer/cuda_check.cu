#include "transfer/cuda_check.hpp"

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
  // Clear a non-sticky error so the next call does not report it again.
  static_cast<void>(cudaGetLastError());
  ::kvoffload::detail::throw_runtime_error(file, line, describe(error, call));
}

void report_cuda_error(cudaError_t error, const char* call, const char* file, int line) noexcept {
  static_cast<void>(cudaGetLastError());
  std::fprintf(stderr,
               "kvoffload: %s (%s:%d), ignored in cleanup\n",
               describe(error, call).c_str(),
               file,
               line);
}

}  // namespace kvoffload::transfer::detail
