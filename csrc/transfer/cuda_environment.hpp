// What make_transfer_engine and PinnedHostPool decide from: is a CUDA device usable, is there
// none (the host engine runs), or is one there but unusable (an error to report, never a silent
// host engine that would memcpy from device pointers). The decision is a pure function of the
// probed values, so tests feed it every case a machine can present.
#pragma once

#include <kvoffload/transfer/transfer_engine.hpp>

#include <optional>
#include <string>

namespace kvoffload::transfer::detail {

/// What the CUDA runtime and the OS said (see probe_cuda()).
struct CudaProbe {
  int count_error{0};            ///< cudaGetDeviceCount's result (a cudaError_t)
  std::string count_error_name;  ///< its name, e.g. "cudaErrorInsufficientDriver"
  std::string count_error_text;  ///< its message
  int device_count{0};           ///< devices it reported (valid when count_error is 0)
  int driver_cuda_version{0};    ///< cudaDriverGetVersion: 0 when no driver is installed
  int runtime_cuda_version{0};   ///< cudaRuntimeGetVersion (this build's runtime)
  std::optional<std::string> kernel_module;  ///< /proc/driver/nvidia/version, if it exists
};

/// The NVIDIA kernel module's version ("550.54.14") from /proc/driver/nvidia/version's text,
/// or "" when the text names none.
std::string nvidia_module_version(const std::string& proc_text);

/// "13.0" for 13000.
std::string cuda_version_string(int version);

/// The driver branch a CUDA major version needs on Linux (CUDA 12: 525, CUDA 13: 580).
int minimum_driver_branch(int runtime_cuda_version);

/// Classify a probe. kNoDevice only when there is no driver at all (driver version 0 and no
/// kernel module) or the driver sees no GPU; a driver too old for the runtime, or any other
/// error, is kUnusable with a message naming the versions or the CUDA error.
CudaEnvironment classify_cuda_environment(const CudaProbe& probe);

/// Ask the runtime and /proc (costs a few microseconds after the first call). Leaves the
/// thread's last CUDA error as it found it when that was cudaSuccess.
CudaProbe probe_cuda();

}  // namespace kvoffload::transfer::detail
