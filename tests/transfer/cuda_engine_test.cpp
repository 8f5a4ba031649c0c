// The CUDA engine on a real device: every layout, every method, random ids and data, poisoned
// destinations, odd and unaligned sizes, per-layer events, the caller's wait event, stores and
// loads at the same time. Every test skips (never passes) without a CUDA device.
#include "transfer/round_trip.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/offloader.hpp>
#include <kvoffload/transfer/transfer.hpp>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace kvoffload::transfer {
namespace {

using testing::ArenaAccess;
using testing::check_round_trip;
using testing::LayoutCase;

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

/// Host-to-device copies the engine's (non-blocking) streams may rely on: a pageable
/// cudaMemcpy can return before its DMA has landed, and nothing orders those streams after
/// the legacy stream, so wait for the device before returning.
void upload_and_wait(void* device, const void* host, std::size_t n) {
  ASSERT_EQ(cudaMemcpy(device, host, n, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

/// The same for a cudaMemset (asynchronous for device memory).
void memset_and_wait(void* device, int value, std::size_t n) {
  ASSERT_EQ(cudaMemset(device, value, n), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

const ArenaAccess kDeviceAccess{
    [](std::byte* arena, const std::byte* from, std::size_t n) { upload_and_wait(arena, from, n); },
    [](std::byte* to, const std::byte* arena, std::size_t n) {
      ASSERT_EQ(cudaMemcpy(to, arena, n, cudaMemcpyDeviceToHost), cudaSuccess);
    }};

struct DeviceArena {
  std::byte* data{nullptr};
  explicit DeviceArena(std::size_t bytes) {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) == cudaSuccess) data = static_cast<std::byte*>(p);
  }
  ~DeviceArena() { cudaFree(data); }
  DeviceArena(const DeviceArena&)            = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
};

class CudaEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!cuda_device_available(&why)) GTEST_SKIP() << why;
  }
};

struct DeviceSetup {
  LayoutCase layout_case;
  DeviceArena arena;
  PinnedHostPool pool;
  HostSlots slots;
  std::unique_ptr<TransferEngine> engine;

  DeviceSetup(const LayoutCase& c,
              std::size_t k,
              std::size_t num_slots,
              std::size_t padding,
              const TransferEngineOptions& options = {})
      : layout_case{c},
        arena{c.arena_bytes},
        pool{{.bytes = (KvLayout{c.build(reinterpret_cast<std::byte*>(64)), c.num_blocks, k}
                            .host_slot_bytes() +
                        padding) *
                       num_slots,
              .threads = 4}} {
    const KvLayout layout{c.build(arena.data), c.num_blocks, k};
    slots  = {pool.data(), layout.host_slot_bytes() + padding, num_slots};
    engine = make_transfer_engine(layout, slots, options);
  }
};

/// check_round_trip on a fresh device setup of 24 slots (k GPU blocks each, `padding` bytes
/// after each slot image).
void device_round_trip(const LayoutCase& c,
                       std::size_t k,
                       std::size_t padding,
                       const TransferEngineOptions& options,
                       std::size_t slot_count,
                       Method method,
                       std::uint64_t seed) {
  DeviceSetup s{c, k, 24, padding, options};
  ASSERT_NE(s.arena.data, nullptr);
  ASSERT_FALSE(s.engine->is_host_fallback()) << s.engine->description();
  check_round_trip(*s.engine,
                   s.arena.data,
                   c.arena_bytes,
                   kDeviceAccess,
                   s.pool.data(),
                   s.slots,
                   slot_count,
                   method,
                   seed);
}

class CudaRoundTrip : public CudaEngineTest, public ::testing::WithParamInterface<Method> {};

TEST_P(CudaRoundTrip, EveryLayoutEveryPageSizeExact) {
  const Method method = GetParam();
  std::uint64_t seed  = 1;
  // 7 and 1000: odd sizes (bytewise and 8-byte paths); 656: SGLang's item; 4096 + 16 KiB: usual.
  for (std::size_t page : {7, 656, 1000, 4096, 16384}) {
    for (const LayoutCase& c : testing::layout_cases(3, page, 40)) {
      for (std::size_t k : {std::size_t{1}, std::size_t{2}}) {
        SCOPED_TRACE(c.name + " page " + std::to_string(page) + " k " + std::to_string(k) +
                     " method " + to_string(method));
        device_round_trip(
            c, k, k == 1 ? 0U : 24U, {.staging_piece_bytes = 3 * page}, 40 / k / 2, method, ++seed);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Methods,
                         CudaRoundTrip,
                         ::testing::Values(Method::kKernel,
                                           Method::kStaged,
                                           Method::kBatchMemcpy,
                                           Method::kPerChunkMemcpy,
                                           Method::kAuto),
                         [](const auto& info) {
                           std::string name = to_string(info.param);
                           return name == "per-chunk" ? std::string{"per_chunk"} : name;
                         });

// The copy kernel at every CTA size the engine accepts (its registers are the same: the launch
// bound is 1024), with a small and a large SM budget: the launch geometry must cover every byte.
class CudaCtaSizes : public CudaEngineTest, public ::testing::WithParamInterface<int> {};

TEST_P(CudaCtaSizes, KernelAndStagedExact) {
  const int threads  = GetParam();
  std::uint64_t seed = 500 + static_cast<std::uint64_t>(threads);
  for (std::size_t page : {1000, 4096, 16384}) {
    for (const LayoutCase& c : testing::layout_cases(4, page, 32)) {
      for (Method m : {Method::kKernel, Method::kStaged}) {
        SCOPED_TRACE(c.name + " page " + std::to_string(page) + " " + to_string(m));
        device_round_trip(c,
                          1,
                          0,
                          {.default_sm_budget   = threads == 32 ? 1 : 16,
                           .staging_piece_bytes = 5 * page,
                           .cta_threads         = threads},
                          20,
                          m,
                          ++seed);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Threads,
                         CudaCtaSizes,
                         ::testing::Values(32, 128, 256, 1024),
                         [](const auto& info) { return "cta" + std::to_string(info.param); });

// The workload shape: 64 random blocks x 32 layers x 16 KiB, K and V per layer.
TEST_F(CudaEngineTest, ScatteredBlocksTargetShapeAllMethods) {
  const LayoutCase c = testing::layout_cases(32, 16384, 96)[0];
  DeviceSetup s{c, 1, 80, 0};
  ASSERT_NE(s.arena.data, nullptr);
  std::uint64_t seed = 100;
  for (Method m : {Method::kKernel, Method::kStaged, Method::kBatchMemcpy}) {
    SCOPED_TRACE(to_string(m));
    check_round_trip(*s.engine,
                     s.arena.data,
                     c.arena_bytes,
                     kDeviceAccess,
                     s.pool.data(),
                     s.slots,
                     64,
                     m,
                     ++seed);
  }
}

TEST_F(CudaEngineTest, SmallBudgetAndFullBudgetAgree) {
  const LayoutCase c = testing::layout_cases(4, 4096, 64)[2];
  DeviceSetup s{c, 1, 64, 0};
  for (int budget : {1, 4, 132}) {
    SCOPED_TRACE(budget);
    TransferEngine& e = *s.engine;
    std::vector<std::byte> mirror(c.arena_bytes);
    for (std::size_t i = 0; i < mirror.size(); ++i)
      mirror[i] = static_cast<std::byte>(i * 7 + budget);
    kDeviceAccess.upload(s.arena.data, mirror.data(), mirror.size());
    std::vector<BlockId> blocks(48);
    for (std::size_t i = 0; i < blocks.size(); ++i)
      blocks[i] = static_cast<BlockId>(63 - i);
    std::vector<BlockId> slots(48);
    for (std::size_t i = 0; i < slots.size(); ++i)
      slots[i] = static_cast<BlockId>(i);
    const JobStatus st = e.wait(e.submit({.direction  = Direction::kStore,
                                          .gpu_blocks = blocks,
                                          .host_slots = slots,
                                          .method     = Method::kKernel,
                                          .sm_budget  = budget}));
    ASSERT_EQ(st.state, JobState::kDone) << st.error;
    const KvLayout& layout = e.layout();
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      testing::expect_block_image(layout,
                                  mirror,
                                  s.arena.data,
                                  blocks[i],
                                  s.pool.data() + i * s.slots.slot_bytes,
                                  "budget");
    }
  }
}

TEST_F(CudaEngineTest, PerLayerEventsOfLoads) {
  const LayoutCase c = testing::layout_cases(6, 4096, 32)[0];
  for (Method m :
       {Method::kKernel, Method::kStaged, Method::kBatchMemcpy, Method::kPerChunkMemcpy}) {
    SCOPED_TRACE(to_string(m));
    DeviceSetup s{c, 1, 32, 0, {.staging_piece_bytes = 4 * 6 * 2 * 4096}};
    TransferEngine& e = *s.engine;
    std::vector<std::byte> host_bytes(s.slots.slot_bytes * 16);
    for (std::size_t i = 0; i < host_bytes.size(); ++i)
      host_bytes[i] = static_cast<std::byte>(i % 251);
    std::memcpy(s.pool.data(), host_bytes.data(), host_bytes.size());
    std::vector<BlockId> blocks;
    std::vector<BlockId> slots;
    for (BlockId i = 0; i < 16; ++i) {
      blocks.push_back(31 - 2 * i);
      slots.push_back(i);
    }
    const JobId id    = e.submit({.direction        = Direction::kLoad,
                                  .gpu_blocks       = blocks,
                                  .host_slots       = slots,
                                  .method           = m,
                                  .per_layer_events = true});
    const auto events = e.completion_events(id);
    ASSERT_EQ(events.size(), 6U);
    const KvLayout& layout = e.layout();
    for (std::size_t l = 0; l < events.size(); ++l) {
      CUDA_OK(cudaEventSynchronize(events[l]));
      // Layer l is complete now, whatever later layers are doing.
      for (std::size_t t = layout.layer_first_tensor(l); t < layout.layer_first_tensor(l + 1);
           ++t) {
        for (std::size_t i = 0; i < blocks.size(); ++i) {
          std::vector<std::byte> got(4096);
          CUDA_OK(
              cudaMemcpy(got.data(), layout.gpu_chunk(t, blocks[i]), 4096, cudaMemcpyDeviceToHost));
          ASSERT_EQ(
              0,
              std::memcmp(got.data(),
                          host_bytes.data() + i * s.slots.slot_bytes + layout.tensor_offset(t),
                          4096))
              << "layer " << l << " tensor " << t << " block " << blocks[i];
        }
      }
    }
    EXPECT_EQ(e.wait(id).state, JobState::kDone);
  }
}

// A store must not read the GPU blocks before the caller's event: the caller's stream first
// sleeps on the host, then writes the blocks, then records the event.
TEST_F(CudaEngineTest, StoreWaitsForTheCallersEvent) {
  const LayoutCase c = testing::layout_cases(2, 4096, 16)[2];
  for (Method m :
       {Method::kKernel, Method::kStaged, Method::kBatchMemcpy, Method::kPerChunkMemcpy}) {
    SCOPED_TRACE(to_string(m));
    DeviceSetup s{c, 1, 16, 0};
    cudaStream_t compute = nullptr;
    cudaEvent_t written  = nullptr;
    CUDA_OK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    CUDA_OK(cudaEventCreateWithFlags(&written, cudaEventDisableTiming));
    memset_and_wait(s.arena.data, 0x11, c.arena_bytes);
    CUDA_OK(cudaLaunchHostFunc(
        compute,
        [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(50)); },
        nullptr));
    CUDA_OK(cudaMemsetAsync(s.arena.data, 0x77, c.arena_bytes, compute));
    CUDA_OK(cudaEventRecord(written, compute));
    const JobStatus st = s.engine->wait(s.engine->submit({.direction  = Direction::kStore,
                                                          .gpu_blocks = {3, 5},
                                                          .host_slots = {0, 1},
                                                          .method     = m,
                                                          .wait_event = written}));
    ASSERT_EQ(st.state, JobState::kDone) << st.error;
    for (std::size_t b = 0; b < 2 * s.slots.slot_bytes; ++b) {
      ASSERT_EQ(s.pool.data()[b], std::byte{0x77}) << "byte " << b << " read before the event";
    }
    CUDA_OK(cudaStreamSynchronize(compute));
    CUDA_OK(cudaEventDestroy(written));
    CUDA_OK(cudaStreamDestroy(compute));
  }
}

// Stores of one half of the blocks and loads into the other half, in flight together.
TEST_F(CudaEngineTest, StoresAndLoadsAtTheSameTime) {
  const LayoutCase c = testing::layout_cases(4, 8192, 128)[0];
  for (Method m : {Method::kKernel, Method::kStaged, Method::kBatchMemcpy}) {
    SCOPED_TRACE(to_string(m));
    DeviceSetup s{c, 1, 128, 0, {.staging_piece_bytes = 1 << 20}};
    TransferEngine& e      = *s.engine;
    const KvLayout& layout = e.layout();
    std::vector<std::byte> mirror(c.arena_bytes);
    for (std::size_t i = 0; i < mirror.size(); ++i)
      mirror[i] = static_cast<std::byte>((i * 13) >> 3);
    kDeviceAccess.upload(s.arena.data, mirror.data(), mirror.size());
    std::vector<std::byte> host_src(s.slots.slot_bytes * 64);
    for (std::size_t i = 0; i < host_src.size(); ++i)
      host_src[i] = static_cast<std::byte>(i % 241);
    std::memcpy(s.pool.data() + 64 * s.slots.slot_bytes, host_src.data(), host_src.size());
    std::vector<JobId> jobs;
    for (BlockId r = 0; r < 8; ++r) {
      std::vector<BlockId> store_blocks, store_slots, load_blocks, load_slots;
      for (BlockId i = 0; i < 8; ++i) {
        store_blocks.push_back(r * 8 + i);  // blocks 0..63 -> slots 0..63
        store_slots.push_back(63 - (r * 8 + i));
        load_blocks.push_back(64 + r * 8 + i);  // slots 64..127 -> blocks 64..127
        load_slots.push_back(127 - (r * 8 + i));
      }
      jobs.push_back(e.submit({.direction  = Direction::kStore,
                               .gpu_blocks = store_blocks,
                               .host_slots = store_slots,
                               .method     = m}));
      jobs.push_back(e.submit({.direction  = Direction::kLoad,
                               .gpu_blocks = load_blocks,
                               .host_slots = load_slots,
                               .method     = m}));
    }
    for (JobId id : jobs)
      ASSERT_EQ(e.wait(id).state, JobState::kDone);
    for (BlockId b = 0; b < 64; ++b) {
      testing::expect_block_image(
          layout,
          mirror,
          s.arena.data,
          b,
          s.pool.data() + static_cast<std::size_t>(63 - b) * s.slots.slot_bytes,
          "concurrent store");
    }
    std::vector<std::byte> after(c.arena_bytes);
    kDeviceAccess.download(after.data(), s.arena.data, after.size());
    for (BlockId b = 64; b < 128; ++b) {
      testing::expect_block_image(
          layout,
          after,
          s.arena.data,
          b,
          host_src.data() + static_cast<std::size_t>(127 - b) * s.slots.slot_bytes,
          "concurrent load");
    }
  }
}

TEST_F(CudaEngineTest, PollsWithoutBlockingAndRetires) {
  const LayoutCase c = testing::layout_cases(2, 4096, 16)[2];
  DeviceSetup s{c, 1, 16, 0};
  TransferEngine& e = *s.engine;
  const JobId id = e.submit({.direction = Direction::kStore, .gpu_blocks = {1}, .host_slots = {2}});
  ASSERT_EQ(e.completion_events(id).size(), 1U);
  JobStatus st        = e.poll(id);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (st.state == JobState::kPending && std::chrono::steady_clock::now() < deadline)
    st = e.poll(id);
  EXPECT_EQ(st.state, JobState::kDone);
  EXPECT_EQ(st.method, Method::kKernel);
  EXPECT_THROW(e.poll(id), logic_error);
  EXPECT_NE(e.description().find("CUDA engine on"), std::string::npos) << e.description();
}

// A poll that finds a job still pending must not fail the next submit: the runtime leaves
// "not ready" as the thread's last error. A host function holds the store back until released.
TEST_F(CudaEngineTest, APendingPollDoesNotFailTheNextSubmit) {
  const LayoutCase c = testing::layout_cases(2, 4096, 16)[2];
  DeviceSetup s{c, 1, 16, 0};
  TransferEngine& e  = *s.engine;
  cudaStream_t gate  = nullptr;
  cudaEvent_t opened = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&gate, cudaStreamNonBlocking));
  CUDA_OK(cudaEventCreateWithFlags(&opened, cudaEventDisableTiming));
  static std::atomic<bool> open;  // static: outlives this test if it fails with the gate shut
  open = false;
  struct Release {  // never leave the gate shut, whatever fails below
    std::atomic<bool>& flag;
    ~Release() { flag = true; }
  } release{open};
  CUDA_OK(cudaLaunchHostFunc(
      gate,
      [](void* flag) {
        while (!static_cast<std::atomic<bool>*>(flag)->load())
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
      },
      &open));
  CUDA_OK(cudaEventRecord(opened, gate));
  const JobId held = e.submit(
      {.direction = Direction::kStore, .gpu_blocks = {1}, .host_slots = {2}, .wait_event = opened});
  EXPECT_EQ(e.poll(held).state, JobState::kPending);
  // What fails without the clearing: the caller's own error check after its own launch.
  EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess)
      << "poll left " << cudaGetErrorName(cudaPeekAtLastError()) << " as the thread's last error";
  CUDA_OK(cudaMemsetAsync(s.arena.data, 0, 16, gate));
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the caller's next error check fails";
  const JobId next            = e.submit({.direction  = Direction::kLoad,
                                          .gpu_blocks = {3},
                                          .host_slots = {5},
                                          .method     = Method::kKernel});
  open                        = true;
  const JobStatus next_status = e.wait(next);
  EXPECT_EQ(next_status.state, JobState::kDone) << next_status.error;
  EXPECT_EQ(e.wait(held).state, JobState::kDone);
  CUDA_OK(cudaStreamSynchronize(gate));
  CUDA_OK(cudaEventDestroy(opened));
  CUDA_OK(cudaStreamDestroy(gate));
}

TEST_F(CudaEngineTest, RejectsPageableHostSlots) {
  const LayoutCase c = testing::layout_cases(2, 4096, 16)[2];
  DeviceArena arena{c.arena_bytes};
  std::vector<std::byte> pageable(16 * 2 * 4096);
  const KvLayout layout{c.build(arena.data), c.num_blocks};
  EXPECT_THROW(make_transfer_engine(layout, {pageable.data(), 2 * 4096, 16}), logic_error);
  // "GPU" tensors in host memory are rejected too.
  PinnedHostPool pool{{.bytes = 16 * 2 * 4096}};
  const KvLayout host_layout{c.build(pageable.data()), c.num_blocks};
  EXPECT_THROW(make_transfer_engine(host_layout, {pool.data(), 2 * 4096, 16}), logic_error);
}

TEST_F(CudaEngineTest, PinnedHostPoolRegistersInChunks) {
  PinnedHostPool pool{
      {.bytes = 40 << 20, .threads = 4, .register_chunk_bytes = 8 << 20, .align_bytes = 656 * 64}};
  ASSERT_TRUE(pool.registered());
  cudaPointerAttributes a{};
  CUDA_OK(cudaPointerGetAttributes(&a, pool.data() + pool.size() - 1));
  EXPECT_EQ(a.type, cudaMemoryTypeHost);
  // One DMA over the whole pool, across the registration chunks, with a pattern that differs
  // from byte to byte and chunk to chunk; every byte compared after the way back.
  void* device = nullptr;
  CUDA_OK(cudaMalloc(&device, pool.size()));
  std::vector<std::byte> pattern(pool.size());
  for (std::size_t i = 0; i < pattern.size(); ++i)
    pattern[i] = static_cast<std::byte>((i * 2654435761U) >> 13);
  std::memcpy(pool.data(), pattern.data(), pool.size());
  CUDA_OK(cudaMemcpy(device, pool.data(), pool.size(), cudaMemcpyHostToDevice));
  std::memset(pool.data(), 0, pool.size());
  CUDA_OK(cudaMemcpy(pool.data(), device, pool.size(), cudaMemcpyDeviceToHost));
  const auto differs = std::mismatch(pattern.begin(), pattern.end(), pool.data());
  EXPECT_EQ(differs.first, pattern.end())
      << "first differing byte at offset " << (differs.first - pattern.begin());
  CUDA_OK(cudaFree(device));
}

/// The thread's current context through the runtime's driver entry point (no libcuda link).
void* current_context() {
  using GetContext = int (*)(void**);
  void* function   = nullptr;
  cudaDriverEntryPointQueryResult found{};
  if (cudaGetDriverEntryPointByVersion(
          "cuCtxGetCurrent", &function, 4000, cudaEnableDefault, &found) != cudaSuccess ||
      found != cudaDriverEntryPointSuccess) {
    ADD_FAILURE() << "cuCtxGetCurrent not available";
    return nullptr;
  }
  void* context = nullptr;
  EXPECT_EQ(reinterpret_cast<GetContext>(function)(&context), 0);
  return context;
}

// A worker thread that never chose a device submits, waits and destroys a pool: afterwards it
// has no current context again (submit used to leave the engine's device set on it, and the
// pool's destructor unregistered without one, creating a device-0 context).
TEST_F(CudaEngineTest, CallsLeaveTheCallersContextAsTheyFoundIt) {
  const LayoutCase c = testing::layout_cases(2, 4096, 16)[2];
  DeviceSetup s{c, 1, 16, 0};
  std::thread worker{[&] {
    ASSERT_EQ(current_context(), nullptr) << "a fresh thread has no context";
    const JobStatus st = s.engine->wait(
        s.engine->submit({.direction = Direction::kStore, .gpu_blocks = {1}, .host_slots = {2}}));
    EXPECT_EQ(st.state, JobState::kDone) << st.error;
    EXPECT_EQ(current_context(), nullptr) << "submit / wait left a context current";
    { PinnedHostPool pool{{.bytes = 4 << 20, .threads = 2}}; }
    EXPECT_EQ(current_context(), nullptr) << "the pool's destructor left a context current";
  }};
  worker.join();
  // With a context current, the same one is current afterwards.
  CUDA_OK(cudaSetDevice(0));
  void* mine = current_context();
  static_cast<void>(s.engine->wait(
      s.engine->submit({.direction = Direction::kLoad, .gpu_blocks = {4}, .host_slots = {2}})));
  EXPECT_EQ(current_context(), mine);
}

// An error the caller has pending (non-sticky: a failed cudaMalloc) is the caller's to read:
// submit, poll and wait must neither clear it nor fail because of it.
TEST_F(CudaEngineTest, TheCallersPendingErrorIsLeftAlone) {
  const LayoutCase c = testing::layout_cases(2, 4096, 16)[2];
  DeviceSetup s{c, 1, 16, 0};
  void* huge = nullptr;
  ASSERT_EQ(cudaMalloc(&huge, std::size_t{1} << 60), cudaErrorMemoryAllocation);
  const JobId id =
      s.engine->submit({.direction = Direction::kStore, .gpu_blocks = {1}, .host_slots = {2}});
  static_cast<void>(s.engine->poll(id));
  const JobStatus st = s.engine->wait(id);
  EXPECT_EQ(st.state, JobState::kDone) << st.error;
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation) << "the caller's error was cleared";
}

// KV tensors on a GPU other than options.device are refused, naming both devices.
TEST_F(CudaEngineTest, TensorsOfAnotherDeviceAreRefused) {
  int count = 0;
  CUDA_OK(cudaGetDeviceCount(&count));
  if (count < 2) GTEST_SKIP() << "needs two GPUs; this machine has " << count;
  const LayoutCase c = testing::layout_cases(2, 4096, 16)[2];
  CUDA_OK(cudaSetDevice(1));
  DeviceArena arena{c.arena_bytes};
  CUDA_OK(cudaSetDevice(0));
  ASSERT_NE(arena.data, nullptr);
  PinnedHostPool pool{{.bytes = 16 * 2 * 4096}};
  const KvLayout layout{c.build(arena.data), c.num_blocks};
  try {
    make_transfer_engine(layout, {pool.data(), 2 * 4096, 16}, {.device = 0});
    FAIL() << "accepted tensors of device 1 for an engine on device 0";
  } catch (const logic_error& e) {
    EXPECT_NE(std::string{e.what()}.find("memory of device 1, but the engine runs on device 0"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(CudaEngineTest, DescriptionNamesTheCtaSizeAndItsOccupancy) {
  const LayoutCase c = testing::layout_cases(2, 4096, 16)[2];
  DeviceSetup s{c, 1, 16, 0, {.cta_threads = 128}};
  const std::string text = s.engine->description();
  EXPECT_NE(text.find("CTAs of 128 threads"), std::string::npos) << text;
  EXPECT_NE(text.find(" per SM ("), std::string::npos) << text;
}

// The Offloader over the CUDA engine: hashes in, bytes back, with per-layer load events and
// the manager told only once the jobs finished.
TEST_F(CudaEngineTest, OffloaderRoundTripOnTheDevice) {
  const std::size_t k = 2;
  const LayoutCase c  = testing::layout_cases(4, 1000, 40).front();  // 1000 B: not 16-aligned
  DeviceArena arena{c.arena_bytes};
  ASSERT_NE(arena.data, nullptr);
  const KvLayout layout{c.build(arena.data), c.num_blocks, k};
  std::vector<std::byte> image(c.arena_bytes);
  for (std::size_t i = 0; i < image.size(); ++i)
    image[i] = static_cast<std::byte>((i * 131 + 7) >> 3);
  upload_and_wait(arena.data, image.data(), image.size());

  // The offloader allocates and registers its own 8 pinned host slots.
  auto offloader = make_offloader("lru", layout, std::size_t{8});
  ASSERT_FALSE(offloader->engine().is_host_fallback()) << offloader->engine().description();
  const std::vector<BlockHash> hashes{501, 502, 503};
  const std::vector<BlockId> from{3, 9, 14, 1, 30, 22};
  const StoreTicket t = offloader->store(hashes, from);
  ASSERT_EQ(t.outcome, StoreTicket::Outcome::kSubmitted);
  for (const FinishedJob& f : offloader->wait_all())
    ASSERT_TRUE(f.ok) << f.error;
  ASSERT_EQ(offloader->lookup(hashes), 3U);

  const std::vector<BlockId> to{39, 38, 37, 36, 35, 34};
  const JobId load = offloader->load(hashes, to, {.per_layer_events = true}).value();
  EXPECT_EQ(offloader->completion_events(load).size(), layout.num_layers());
  const FinishedJob done = offloader->wait(load);
  ASSERT_TRUE(done.ok) << done.error;
  EXPECT_EQ(offloader->manager().stats().pinned, 0U);

  std::vector<std::byte> after(c.arena_bytes);
  CUDA_OK(cudaMemcpy(after.data(), arena.data, after.size(), cudaMemcpyDeviceToHost));
  for (std::size_t t_i = 0; t_i < layout.num_tensors(); ++t_i) {
    const KvTensor& tensor = layout.tensors()[t_i];
    const std::size_t base = static_cast<std::size_t>(tensor.base - arena.data);
    for (std::size_t i = 0; i < to.size(); ++i) {
      const std::size_t src = base + static_cast<std::size_t>(from[i]) * tensor.block_stride_bytes;
      const std::size_t dst = base + static_cast<std::size_t>(to[i]) * tensor.block_stride_bytes;
      ASSERT_EQ(std::memcmp(after.data() + dst, image.data() + src, tensor.chunk_bytes), 0)
          << "tensor " << t_i << " block " << from[i] << " -> " << to[i];
    }
  }
}

}  // namespace
}  // namespace kvoffload::transfer
