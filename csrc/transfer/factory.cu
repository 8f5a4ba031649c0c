#include "transfer/cuda_engine.hpp"
#include "transfer/cuda_environment.hpp"
#include "transfer/host_engine.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/transfer/transfer_engine.hpp>

#include <cuda_runtime_api.h>

#include <fstream>
#include <iterator>
#include <string>

namespace kvoffload::transfer {

namespace detail {

CudaProbe probe_cuda() {
  const cudaError_t callers = cudaPeekAtLastError();
  CudaProbe probe;
  int count               = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  probe.count_error       = error;
  probe.count_error_name  = cudaGetErrorName(error);
  probe.count_error_text  = cudaGetErrorString(error);
  probe.device_count      = error == cudaSuccess ? count : 0;
  if (cudaDriverGetVersion(&probe.driver_cuda_version) != cudaSuccess)
    probe.driver_cuda_version = 0;
  if (cudaRuntimeGetVersion(&probe.runtime_cuda_version) != cudaSuccess)
    probe.runtime_cuda_version = CUDART_VERSION;
  std::ifstream proc{"/proc/driver/nvidia/version"};
  if (proc) {
    probe.kernel_module = std::string{std::istreambuf_iterator<char>{proc}, {}};
  }
  // Drop the error the probe itself left, never one the caller had pending.
  if (callers == cudaSuccess) static_cast<void>(cudaGetLastError());
  return probe;
}

}  // namespace detail

CudaEnvironment cuda_environment() {
  return detail::classify_cuda_environment(detail::probe_cuda());
}

bool cuda_device_available(std::string* reason) {
  CudaEnvironment environment = cuda_environment();
  if (environment.availability == CudaAvailability::kUsable) return true;
  if (reason != nullptr) *reason = std::move(environment.message);
  return false;
}

std::unique_ptr<TransferEngine> make_host_transfer_engine(const KvLayout& layout,
                                                          const HostSlots& host,
                                                          const TransferEngineOptions& options) {
  return detail::make_host_engine(layout, host, options, "make_host_transfer_engine was called");
}

std::unique_ptr<TransferEngine> make_transfer_engine(const KvLayout& layout,
                                                     const HostSlots& host,
                                                     const TransferEngineOptions& options) {
  if (options.force_host) {
    return detail::make_host_engine(
        layout, host, options, "TransferEngineOptions::force_host is set");
  }
  const CudaEnvironment environment = cuda_environment();
  switch (environment.availability) {
    case CudaAvailability::kUsable:
      return detail::make_cuda_engine(layout, host, options);
    case CudaAvailability::kNoDevice:
      return detail::make_host_engine(layout, host, options, environment.message);
    case CudaAvailability::kUnusable:
      break;
  }
  KVO_FAIL("make_transfer_engine: " + environment.message);
}

}  // namespace kvoffload::transfer
