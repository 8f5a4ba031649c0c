// The CUDA engine's decisions that need no GPU, each a pure function (or a scope over fakes):
// launch geometry and CTA sizing, the staged scatter launches, copy-engine flags and the batch
// fallback, tensor devices, the host-slot mapping, NUMA placement, restoring the caller's
// device, and what wait() blocks on after a failed submit.
#include "transfer/cuda_scope.hpp"
#include "transfer/job_wait.hpp"
#include "transfer/launch_plan.hpp"
#include "transfer/numa.hpp"
#include "transfer/validate.hpp"

#include "copy_chunks.cuh"
#include "transfer/layouts.hpp"

#include <kvoffload/error.hpp>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace kvoffload::transfer {
namespace {

using detail::copy_grid_ctas;

template <typename F>
std::string logic_error_of(F&& f) {
  try {
    f();
  } catch (const logic_error& e) {
    return e.what();
  }
  return "(no logic_error)";
}

// --- launch geometry (issues: CTAs of 1024 need an idle SM; small jobs got 2 CTAs) ----------

TEST(LaunchPlan, CtaThreadsMustBeWholeWarpsUpTo1024) {
  for (int ok : {32, 128, 256, 1024})
    EXPECT_NO_THROW(detail::validate_cta_threads(ok)) << ok;
  for (int bad : {0, 16, 100, 2048, -32}) {
    EXPECT_NE(logic_error_of([&] {
                detail::validate_cta_threads(bad);
              }).find("cta_threads " + std::to_string(bad)),
              std::string::npos);
  }
}

TEST(LaunchPlan, TheBudgetCountsSmsWorthOfCtas) {
  // 4 CTAs of 256 fit one SM (58 registers): a budget of 4 SMs is 16 CTAs, not 4.
  EXPECT_EQ(copy_grid_ctas(1'000'000, 256, 4, 4), 16);
  EXPECT_EQ(copy_grid_ctas(1'000'000, 1024, 4, 1), 4);
  // Never more CTAs than items need, never zero.
  EXPECT_EQ(copy_grid_ctas(9, 256, 16, 4), 2);
  EXPECT_EQ(copy_grid_ctas(0, 256, 16, 4), 1);
  EXPECT_EQ(copy_grid_ctas(1'000'000, 128, 0, 0), 1);
}

TEST(LaunchPlan, AOneBlockJobSpreadsOneSegmentPerWarp) {
  // One block of 32 layers x 16 KiB: every warp copies one 2 KiB segment (one PCIe round trip,
  // not four dependent 2 KiB steps of an 8 KiB segment), over 32 CTAs (not 2).
  constexpr std::uint64_t segment = kernels::kSegmentBytes;
  EXPECT_EQ(segment, 2048U);
  const std::uint64_t items = 32 * detail::segments_of(16384, segment);
  EXPECT_EQ(items, 256U);
  const int ctas = copy_grid_ctas(items, 256, 16, 4);
  EXPECT_EQ(ctas, 32);
  EXPECT_EQ(static_cast<std::uint64_t>(ctas) * (256 / 32), items);
  // 4 KiB chunks: two segments each.
  EXPECT_EQ(detail::segments_of(4096, segment), 2U);
  EXPECT_EQ(detail::segments_of(4097, segment), 3U);
}

TEST(LaunchPlan, StagedLoadScattersOncePerPieceButTheLast) {
  const KvLayout layout{testing::layout_cases(4, 64, 8)[0].build(reinterpret_cast<std::byte*>(64)),
                        8};
  ASSERT_EQ(layout.num_tensors(), 8U);
  using Ranges = std::vector<detail::TensorRange>;
  EXPECT_EQ(detail::staged_scatter_launches(layout, true, false), (Ranges{{0, 8}}));
  EXPECT_EQ(detail::staged_scatter_launches(layout, false, true), (Ranges{{0, 8}}));
  EXPECT_EQ(detail::staged_scatter_launches(layout, true, true),
            (Ranges{{0, 2}, {2, 4}, {4, 6}, {6, 8}}));
}

TEST(LaunchPlan, CopyEnginesPreferOverlapWhenTheGpuIsBusy) {
  EXPECT_EQ(detail::batch_copy_flags(true),
            static_cast<unsigned>(cudaMemcpyFlagPreferOverlapWithCompute));
  EXPECT_EQ(detail::batch_copy_flags(false), 0U);
}

TEST(LaunchPlan, BatchFallsBackOnlyWhenTheDriverCannotRunIt) {
  EXPECT_TRUE(detail::batch_copy_unsupported(cudaErrorNotSupported));
  EXPECT_TRUE(detail::batch_copy_unsupported(cudaErrorInvalidValue));
  EXPECT_FALSE(detail::batch_copy_unsupported(cudaErrorIllegalAddress));
  EXPECT_FALSE(detail::batch_copy_unsupported(cudaSuccess));
}

// --- tensors of another GPU -------------------------------------------------------------------

TEST(DeviceMemory, ATensorOfAnotherGpuIsRejectedNamingBothDevices) {
  using detail::TensorMemory;
  const std::vector<TensorMemory> on_one{{cudaMemoryTypeDevice, 1}, {cudaMemoryTypeDevice, 1}};
  EXPECT_NO_THROW(detail::validate_tensor_memory(on_one, 1));
  const std::vector<TensorMemory> mixed{{cudaMemoryTypeDevice, 1}, {cudaMemoryTypeDevice, 0}};
  const std::string what = logic_error_of([&] { detail::validate_tensor_memory(mixed, 1); });
  EXPECT_NE(what.find("KV tensor 1 is memory of device 0, but the engine runs on device 1"),
            std::string::npos)
      << what;
  const std::vector<TensorMemory> host{{cudaMemoryTypeHost, 1}};
  EXPECT_NE(logic_error_of([&] {
              detail::validate_tensor_memory(host, 1);
            }).find("KV tensor 0 is not device memory"),
            std::string::npos);
  // Managed memory migrates: any device.
  EXPECT_NO_THROW(detail::validate_tensor_memory({{cudaMemoryTypeManaged, 0}}, 1));
}

// --- host slots: pinned everywhere, mapped as one range for the kernel -------------------------

struct FakeMapping {
  const std::byte* host_base;
  std::byte* device_base;
  std::size_t bytes;
  // Registrations as [offset, end) -> device offset of their first byte.
  std::map<std::size_t, std::pair<std::size_t, std::ptrdiff_t>> chunks;
  detail::HostMapping operator()(const std::byte* address) const {
    const auto offset = static_cast<std::size_t>(address - host_base);
    for (const auto& [first, chunk] : chunks) {
      if (offset >= first && offset < chunk.first) {
        return {true, device_base + chunk.second + static_cast<std::ptrdiff_t>(offset - first)};
      }
    }
    return {};
  }
};

TEST(HostSlotsMapping, EveryRegistrationMappedInPlaceIsOneRange) {
  std::vector<std::byte> memory(10 * 100);
  const HostSlots slots{memory.data(), 100, 10};
  FakeMapping fake{memory.data(), reinterpret_cast<std::byte*>(0x7000'0000), memory.size(), {}};
  fake.chunks        = {{0, {400, 0}}, {400, {800, 400}}, {800, {1000, 800}}};
  const auto mapping = detail::map_host_slots(slots, fake);
  EXPECT_FALSE(mapping.unpinned_slot.has_value());
  EXPECT_TRUE(mapping.contiguous);
  EXPECT_EQ(mapping.device_base, fake.device_base);
}

TEST(HostSlotsMapping, AMiddleRegistrationMappedElsewhereIsNotOneRange) {
  // First and last byte agree; the middle chunk (slots 4-7) maps 1 MiB away: the kernel would
  // write the wrong memory. Checking the range's ends only would call this contiguous.
  std::vector<std::byte> memory(10 * 100);
  const HostSlots slots{memory.data(), 100, 10};
  FakeMapping fake{memory.data(), reinterpret_cast<std::byte*>(0x7000'0000), memory.size(), {}};
  fake.chunks        = {{0, {400, 0}}, {400, {800, 400 + (1 << 20)}}, {800, {1000, 800}}};
  const auto mapping = detail::map_host_slots(slots, fake);
  EXPECT_FALSE(mapping.unpinned_slot.has_value());
  EXPECT_FALSE(mapping.contiguous);
}

TEST(HostSlotsMapping, AnUnregisteredMiddleIsNamed) {
  std::vector<std::byte> memory(10 * 100);
  const HostSlots slots{memory.data(), 100, 10};
  FakeMapping fake{memory.data(), reinterpret_cast<std::byte*>(0x7000'0000), memory.size(), {}};
  fake.chunks        = {{0, {400, 0}}, {800, {1000, 800}}};  // slots 4-7 not registered
  const auto mapping = detail::map_host_slots(slots, fake);
  ASSERT_TRUE(mapping.unpinned_slot.has_value());
  EXPECT_EQ(*mapping.unpinned_slot, 4U);
  EXPECT_FALSE(mapping.contiguous);
}

TEST(HostSlotsMapping, PinnedButUnmappedServesCopyEnginesOnly) {
  std::vector<std::byte> memory(4 * 64);
  const HostSlots slots{memory.data(), 64, 4};
  const auto mapping = detail::map_host_slots(slots, [](const std::byte*) {
    return detail::HostMapping{true, nullptr};
  });
  EXPECT_FALSE(mapping.unpinned_slot.has_value());
  EXPECT_FALSE(mapping.contiguous);
  EXPECT_EQ(mapping.device_base, nullptr);
}

// --- NUMA placement of the pinned pool ---------------------------------------------------------

TEST(Numa, NodeListsAsSysfsWritesThem) {
  EXPECT_EQ(detail::parse_node_list("0"), (std::vector<int>{0}));
  EXPECT_EQ(detail::parse_node_list("0-1"), (std::vector<int>{0, 1}));
  EXPECT_EQ(detail::parse_node_list("0-2,4,6-7"), (std::vector<int>{0, 1, 2, 4, 6, 7}));
  EXPECT_TRUE(detail::parse_node_list("x").empty());
}

TEST(Numa, BindOnlyWithSeveralNodesToTheDevicesNode) {
  EXPECT_EQ(detail::numa_node_to_bind(1, {0, 1}), 1);
  EXPECT_EQ(detail::numa_node_to_bind(0, {0, 1}), 0);
  EXPECT_EQ(detail::numa_node_to_bind(0, {0}), std::nullopt);      // one node: as before
  EXPECT_EQ(detail::numa_node_to_bind(-1, {0, 1}), std::nullopt);  // the system has no NUMA
  EXPECT_EQ(detail::numa_node_to_bind(3, {0, 1}), std::nullopt);   // not online
}

TEST(Numa, PreferredPagesLandOnTheNode) {
  const std::vector<int> online = detail::online_numa_nodes();
  if (online.empty()) GTEST_SKIP() << "sysfs lists no NUMA nodes";
  const int node      = online.back();
  const std::size_t n = std::size_t{4} << 20;
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  if (!detail::prefer_numa_node(p, n, node)) {
    munmap(p, n);
    GTEST_SKIP() << "mbind refused here (seccomp or no NUMA support)";
  }
  std::memset(p, 1, n);
  EXPECT_EQ(detail::numa_node_of(p), node);
  EXPECT_EQ(detail::numa_node_of(static_cast<std::byte*>(p) + n - 1), node);
  munmap(p, n);
}

// --- the caller's device and context are restored ----------------------------------------------

struct FakeCuda {
  static inline int device           = 0;
  static inline void* context        = nullptr;
  static inline int set_device_calls = 0;
  static inline bool offer_contexts  = true;
  static inline std::vector<void*> contexts_of_devices{reinterpret_cast<void*>(0x100),
                                                       reinterpret_cast<void*>(0x200)};
  static cudaError_t get_device(int* d) {
    *d = device;
    return cudaSuccess;
  }
  static cudaError_t set_device(int d) {
    ++set_device_calls;
    if (d < 0 || d >= 2) return cudaErrorInvalidDevice;
    device  = d;
    context = contexts_of_devices[static_cast<std::size_t>(d)];
    return cudaSuccess;
  }
  static int get_context(void** c) {
    *c = context;
    return 0;
  }
  static int set_context(void* c) {
    context = c;
    device  = c == contexts_of_devices[1] ? 1 : 0;
    return 0;
  }
  static void reset() {
    device           = 0;
    context          = nullptr;
    set_device_calls = 0;
  }
};

const detail::ContextCalls kFakeWithContexts{
    &FakeCuda::get_device, &FakeCuda::set_device, &FakeCuda::get_context, &FakeCuda::set_context};
const detail::ContextCalls kFakeWithoutContexts{
    &FakeCuda::get_device, &FakeCuda::set_device, nullptr, nullptr};

TEST(DeviceScope, AThreadWithNoContextGetsNoneBack) {
  // A worker thread that never chose a device calls submit() (or destroys a pool) for device 1:
  // afterwards it must have no context again, not device 1's, and never device 0's.
  FakeCuda::reset();
  {
    const detail::DeviceScope scope{1, kFakeWithContexts};
    EXPECT_EQ(FakeCuda::device, 1);
  }
  EXPECT_EQ(FakeCuda::context, nullptr);
}

TEST(DeviceScope, TheCallersDeviceIsRestored) {
  FakeCuda::reset();
  ASSERT_EQ(FakeCuda::set_device(0), cudaSuccess);
  {
    const detail::DeviceScope scope{1, kFakeWithContexts};
    EXPECT_EQ(FakeCuda::device, 1);
  }
  EXPECT_EQ(FakeCuda::device, 0);
  EXPECT_EQ(FakeCuda::context, FakeCuda::contexts_of_devices[0]);
  // Without the driver's context calls: the device, and no call when it is already current.
  FakeCuda::reset();
  {
    const detail::DeviceScope scope{1, kFakeWithoutContexts};
    EXPECT_EQ(FakeCuda::device, 1);
  }
  EXPECT_EQ(FakeCuda::device, 0);
  FakeCuda::reset();
  { const detail::DeviceScope scope{0, kFakeWithoutContexts}; }
  EXPECT_EQ(FakeCuda::set_device_calls, 0);
}

TEST(DeviceScope, ADeviceThatCannotBeSetThrowsAndChangesNothing) {
  FakeCuda::reset();
  ASSERT_EQ(FakeCuda::set_device(1), cudaSuccess);
  EXPECT_THROW(detail::DeviceScope(5, kFakeWithContexts), runtime_error);
  EXPECT_EQ(FakeCuda::device, 1);
}

// --- wait() after a submit that failed before its first event ----------------------------------

struct FakeEvent {
  int id;
};
struct FakeJob {
  std::vector<FakeEvent> events;
  std::string error;
};

TEST(JobWait, AJobThatFailedInSubmitIsNeverWaitedOn) {
  EXPECT_EQ(detail::completion_event_of(FakeJob{{}, "cudaSetDevice failed"}), nullptr);
  // Failed after some events were taken: they may never be recorded, so still nothing to wait.
  EXPECT_EQ(detail::completion_event_of(FakeJob{{{1}, {2}}, "launch failed"}), nullptr);
  const FakeJob ok{{{7}, {8}}, ""};
  ASSERT_NE(detail::completion_event_of(ok), nullptr);
  EXPECT_EQ(detail::completion_event_of(ok)->id, 7);
}

}  // namespace
}  // namespace kvoffload::transfer
