#include "transfer/cuda_scope.hpp"

#include "transfer/cuda_check.hpp"

#include <cstdio>

namespace kvoffload::transfer::detail {

DeviceScope::DeviceScope(int device, const ContextCalls& calls) : calls_{calls} {
  if (calls_.get_context != nullptr && calls_.set_context != nullptr &&
      calls_.get_context(&previous_context_) == 0) {
    restore_context_ = true;
    KVO_CUDA_TRY(calls_.set_device(device));
    return;
  }
  // cudaGetDevice on a thread that never chose one answers 0 without creating a context.
  KVO_CUDA_TRY(calls_.get_device(&previous_device_));
  if (previous_device_ != device) {
    KVO_CUDA_TRY(calls_.set_device(device));
    restore_device_ = true;
  }
}

DeviceScope::~DeviceScope() {
  if (restore_context_) {
    const int result = calls_.set_context(previous_context_);
    if (result != 0) {
      std::fprintf(stderr,
                   "kvoffload: cuCtxSetCurrent could not restore the caller's context (CUresult "
                   "%d), ignored in cleanup\n",
                   result);
    }
  } else if (restore_device_) {
    KVO_CUDA_TRY_NOTHROW(calls_.set_device(previous_device_));
  }
}

}  // namespace kvoffload::transfer::detail
