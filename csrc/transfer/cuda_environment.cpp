#include "transfer/cuda_environment.hpp"

#include <cuda_runtime_api.h>

#include <cctype>
#include <string>

namespace kvoffload::transfer::detail {

std::string nvidia_module_version(const std::string& proc_text) {
  // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024"
  const std::string marker = "Kernel Module";
  std::size_t at           = proc_text.find(marker);
  at                       = at == std::string::npos ? proc_text.find("NVRM version:") : at;
  if (at == std::string::npos) return "";
  for (std::size_t i = at; i < proc_text.size() && proc_text[i] != '\n'; ++i) {
    if (std::isdigit(static_cast<unsigned char>(proc_text[i])) == 0) continue;
    std::size_t end = i;
    while (end < proc_text.size() &&
           (std::isdigit(static_cast<unsigned char>(proc_text[end])) != 0 || proc_text[end] == '.'))
      ++end;
    const std::string word = proc_text.substr(i, end - i);
    if (word.find('.') != std::string::npos) return word;  // skip "x86_64"'s digits
    i = end;
  }
  return "";
}

std::string cuda_version_string(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

int minimum_driver_branch(int runtime_cuda_version) {
  // NVIDIA's minor-version compatibility floors on Linux (CUDA release notes, table 2).
  switch (runtime_cuda_version / 1000) {
    case 11:
      return 450;
    case 12:
      return 525;
    case 13:
      return 580;
    default:
      return 0;  // unknown: the message names the CUDA version only
  }
}

CudaEnvironment classify_cuda_environment(const CudaProbe& probe) {
  const bool no_driver = probe.driver_cuda_version == 0 && !probe.kernel_module.has_value();
  if (probe.count_error == cudaSuccess && probe.device_count > 0) {
    return {CudaAvailability::kUsable,
            std::to_string(probe.device_count) + " CUDA device(s), driver supports CUDA " +
                cuda_version_string(probe.driver_cuda_version)};
  }
  // No driver at all answers cudaErrorInsufficientDriver too: that is "no device".
  if (no_driver || (probe.count_error == cudaSuccess && probe.device_count == 0) ||
      probe.count_error == cudaErrorNoDevice) {
    return {CudaAvailability::kNoDevice, "no NVIDIA driver or GPU found"};
  }
  const int branch = minimum_driver_branch(probe.runtime_cuda_version);
  const std::string needed =
      "CUDA " + cuda_version_string(probe.runtime_cuda_version) +
      (branch > 0 ? " (driver " + std::to_string(branch) + " or newer)" : std::string{});
  const std::string module =
      probe.kernel_module ? nvidia_module_version(*probe.kernel_module) : std::string{};
  std::string found = "an NVIDIA driver";
  if (!module.empty()) found += " " + module;
  if (probe.driver_cuda_version > 0) {
    found += " (supports up to CUDA " + cuda_version_string(probe.driver_cuda_version) + ")";
  }
  if (probe.count_error == cudaErrorInsufficientDriver) {
    return {CudaAvailability::kUnusable,
            found + " is installed but too old: kvoffload's CUDA runtime needs " + needed +
                "; update the driver (the host engine would copy from GPU pointers, so none "
                "is used)"};
  }
  return {CudaAvailability::kUnusable,
          found + " is installed but CUDA cannot use a device: " + probe.count_error_name + " (" +
              probe.count_error_text + ")"};
}

}  // namespace kvoffload::transfer::detail
