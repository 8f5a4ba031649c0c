#include "transfer/cuda_engine.hpp"
#include "transfer/host_engine.hpp"

#include <kvoffload/transfer/transfer_engine.hpp>

#include <cuda_runtime_api.h>

#include <string>

namespace kvoffload::transfer {

bool cuda_device_available(std::string* reason) {
  int count               = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    static_cast<void>(cudaGetLastError());
    if (reason != nullptr) {
      *reason = std::string{"no CUDA device: "} + cudaGetErrorName(error) + ", " +
                cudaGetErrorString(error);
    }
    return false;
  }
  if (count == 0) {
    if (reason != nullptr) *reason = "no CUDA device: the runtime reports 0 devices";
    return false;
  }
  return true;
}

std::unique_ptr<TransferEngine> make_host_transfer_engine(const KvLayout& layout,
                                                          const HostSlots& host,
                                                          const TransferEngineOptions& options) {
  return detail::make_host_engine(layout, host, options, "requested by the caller");
}

std::unique_ptr<TransferEngine> make_transfer_engine(const KvLayout& layout,
                                                     const HostSlots& host,
                                                     const TransferEngineOptions& options) {
  if (options.force_host) {
    return detail::make_host_engine(layout, host, options, "force_host is set");
  }
  std::string why;
  if (!cuda_device_available(&why)) return detail::make_host_engine(layout, host, options, why);
  return detail::make_cuda_engine(layout, host, options);
}

}  // namespace kvoffload::transfer
