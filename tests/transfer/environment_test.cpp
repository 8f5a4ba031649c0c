// What counts as "no GPU" (the host engine runs), what is an error (a driver too old for our
// runtime, or another CUDA failure), and what the user reads in each case. The classification
// gets injected probe values; the last tests run the real probe on this machine.
#include "transfer/cuda_environment.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/transfer/transfer.hpp>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvoffload::transfer {
namespace {

using detail::classify_cuda_environment;
using detail::CudaProbe;

const char* const kProcText =
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n";

CudaProbe insufficient_driver() {
  return {.count_error          = cudaErrorInsufficientDriver,
          .count_error_name     = "cudaErrorInsufficientDriver",
          .count_error_text     = "CUDA driver version is insufficient for CUDA runtime version",
          .runtime_cuda_version = 13000};
}

TEST(CudaEnvironment, NoDriverAtAllIsNoDevice) {
  // This CI: no kernel module, cudaDriverGetVersion says 0, the runtime says "insufficient".
  const CudaEnvironment env = classify_cuda_environment(insufficient_driver());
  EXPECT_EQ(env.availability, CudaAvailability::kNoDevice);
  EXPECT_EQ(env.message, "no NVIDIA driver or GPU found");
}

TEST(CudaEnvironment, DriverTooOldIsAnErrorNamingBothVersions) {
  CudaProbe probe           = insufficient_driver();
  probe.driver_cuda_version = 12040;
  probe.kernel_module       = kProcText;
  const CudaEnvironment env = classify_cuda_environment(probe);
  EXPECT_EQ(env.availability, CudaAvailability::kUnusable);
  for (const char* needle : {"550.54.14",
                             "supports up to CUDA 12.4",
                             "needs CUDA 13.0",
                             "driver 580 or newer",
                             "too old"}) {
    EXPECT_NE(env.message.find(needle), std::string::npos) << needle << " in " << env.message;
  }
}

TEST(CudaEnvironment, EitherSignOfADriverMakesItPresent) {
  // The kernel module alone (cudaDriverGetVersion failing), or the version alone (no /proc in
  // a container): both mean a driver is there, so "insufficient" is a real error.
  CudaProbe module_only     = insufficient_driver();
  module_only.kernel_module = kProcText;
  EXPECT_EQ(classify_cuda_environment(module_only).availability, CudaAvailability::kUnusable);
  CudaProbe version_only           = insufficient_driver();
  version_only.driver_cuda_version = 12020;
  const CudaEnvironment env        = classify_cuda_environment(version_only);
  EXPECT_EQ(env.availability, CudaAvailability::kUnusable);
  EXPECT_NE(env.message.find("supports up to CUDA 12.2"), std::string::npos) << env.message;
}

TEST(CudaEnvironment, ADriverWithoutGpusIsNoDevice) {
  CudaProbe no_device{.count_error          = cudaErrorNoDevice,
                      .count_error_name     = "cudaErrorNoDevice",
                      .driver_cuda_version  = 13000,
                      .runtime_cuda_version = 13000,
                      .kernel_module        = kProcText};
  EXPECT_EQ(classify_cuda_environment(no_device).availability, CudaAvailability::kNoDevice);
  CudaProbe zero{.count_error = cudaSuccess, .device_count = 0, .driver_cuda_version = 13000};
  EXPECT_EQ(classify_cuda_environment(zero).availability, CudaAvailability::kNoDevice);
}

TEST(CudaEnvironment, OtherErrorsWithADriverAreErrorsNamingTheCudaError) {
  CudaProbe mismatch{.count_error      = cudaErrorSystemDriverMismatch,
                     .count_error_name = "cudaErrorSystemDriverMismatch",
                     .count_error_text =
                         "system has unsupported display driver / cuda driver "
                         "combination",
                     .driver_cuda_version  = 13000,
                     .runtime_cuda_version = 13000,
                     .kernel_module        = kProcText};
  const CudaEnvironment env = classify_cuda_environment(mismatch);
  EXPECT_EQ(env.availability, CudaAvailability::kUnusable);
  EXPECT_NE(env.message.find("cudaErrorSystemDriverMismatch"), std::string::npos) << env.message;
}

TEST(CudaEnvironment, UsableDevice) {
  CudaProbe ok{.count_error = cudaSuccess, .device_count = 2, .driver_cuda_version = 13000};
  const CudaEnvironment env = classify_cuda_environment(ok);
  EXPECT_EQ(env.availability, CudaAvailability::kUsable);
  EXPECT_NE(env.message.find("2 CUDA device(s)"), std::string::npos) << env.message;
}

TEST(CudaEnvironment, VersionsReadTheWayUsersWriteThem) {
  EXPECT_EQ(detail::nvidia_module_version(kProcText), "550.54.14");
  EXPECT_EQ(detail::nvidia_module_version("NVRM version: NVIDIA UNIX Open Kernel Module for "
                                          "x86_64  580.65.06  Release Build"),
            "580.65.06");
  EXPECT_EQ(detail::nvidia_module_version("garbage"), "");
  EXPECT_EQ(detail::cuda_version_string(12080), "12.8");
  EXPECT_EQ(detail::cuda_version_string(13000), "13.0");
  EXPECT_EQ(detail::minimum_driver_branch(13010), 580);
  EXPECT_EQ(detail::minimum_driver_branch(12040), 525);
}

// On a machine without a driver (CI): one plain sentence, the host engine, a pool that does not
// try to register (issue: cudaHostRegister of 1 GiB failed with cudaErrorInsufficientDriver).
class NoDriverHere : public ::testing::Test {
 protected:
  void SetUp() override {
    const CudaEnvironment env = cuda_environment();
    if (env.availability != CudaAvailability::kNoDevice) {
      GTEST_SKIP() << "this machine has a usable or unusable driver: " << env.message;
    }
  }
};

TEST_F(NoDriverHere, TheMessageSaysItOnceInTheUsersTerms) {
  std::string why;
  EXPECT_FALSE(cuda_device_available(&why));
  EXPECT_EQ(why, "no NVIDIA driver or GPU found");
  std::vector<std::byte> arena(1024);
  std::vector<std::byte> host(1024);
  const KvLayout layout{{{arena.data(), 64, 64, 0}}, 8};
  const std::string text     = make_transfer_engine(layout, {host.data(), 64, 16})->description();
  const std::string sentence = "no NVIDIA driver or GPU found: using the host engine";
  ASSERT_EQ(text.find(sentence), 0U) << text;
  EXPECT_EQ(text.find(sentence, 1), std::string::npos) << "said twice: " << text;
  EXPECT_EQ(text.find("cudaError"), std::string::npos) << text;
}

// The README's snippet, without a GPU: a PinnedHostPool with default options, then an engine.
TEST_F(NoDriverHere, ThePoolDoesNotRegisterAndTheEngineRuns) {
  std::vector<std::byte> arena(2 * 8 * 4096);
  std::vector<KvTensor> tensors{{arena.data(), 4096, 4096, 0},
                                {arena.data() + 8 * 4096, 4096, 4096, 0}};
  const KvLayout layout{tensors, 8};
  PinnedHostPool pool{
      {.bytes = 4 * layout.host_slot_bytes(), .align_bytes = layout.host_slot_bytes()}};
  EXPECT_FALSE(pool.registered());
  EXPECT_EQ(pool.numa_node(), -1);
  auto engine = make_transfer_engine(layout, {pool.data(), layout.host_slot_bytes(), 4});
  ASSERT_TRUE(engine->is_host_fallback());
  arena[4096 + 5]    = std::byte{42};  // block 1 of tensor 0
  const JobStatus st = engine->wait(
      engine->submit({.direction = Direction::kStore, .gpu_blocks = {1}, .host_slots = {3}}));
  ASSERT_EQ(st.state, JobState::kDone) << st.error;
  EXPECT_EQ(pool.data()[3 * layout.host_slot_bytes() + 5], std::byte{42});
}

}  // namespace
}  // namespace kvoffload::transfer
