// The host + disk Offloader over the CUDA engine: blocks stored from device memory into a host
// tier too small to keep them are demoted to the real block store (files in a temporary
// directory), brought back up to the host, loaded into other device blocks, and every byte of
// the device KV cache is compared on the host. Skips (never passes) without a CUDA device.
#include "storage/store_test_util.hpp"

#include <kvoffload/offloader.hpp>
#include <kvoffload/transfer/transfer.hpp>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kvoffload {
namespace {

using transfer::KvLayout;
using transfer::KvTensor;
using Hashes = std::vector<BlockHash>;

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

constexpr std::size_t kLayers      = 4;     // K and V per layer: 8 tensors
constexpr std::size_t kChunk       = 1000;  // bytes of a block in one tensor: not 16-aligned
constexpr std::size_t kStride      = 1024;  // distance between blocks: a gap after each chunk
constexpr std::size_t kGpuBlocks   = 40;
constexpr std::size_t kTensorBytes = kStride * kGpuBlocks;
constexpr std::size_t kArenaBytes  = 2 * kLayers * kTensorBytes;
constexpr std::size_t kHostSlots   = 2;  // two blocks at a time: the rest go to disk
constexpr std::size_t kDiskSlots   = 16;
constexpr unsigned char kPoison    = 0xA5;

struct DeviceBuffer {
  std::byte* data{nullptr};
  explicit DeviceBuffer(std::size_t bytes) {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) == cudaSuccess) data = static_cast<std::byte*>(p);
  }
  ~DeviceBuffer() { cudaFree(data); }
  DeviceBuffer(const DeviceBuffer&)            = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// The engine's streams are non-blocking: wait for the device after each plain copy or memset.
void upload(std::byte* device, const std::vector<std::byte>& host) {
  CUDA_OK(cudaMemcpy(device, host.data(), host.size(), cudaMemcpyHostToDevice));
  CUDA_OK(cudaDeviceSynchronize());
}

class TieredOffloaderGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!transfer::cuda_device_available(&why)) GTEST_SKIP() << why;
  }
};

TEST_F(TieredOffloaderGpu, BlocksGoToDiskAndComeBackToOtherDeviceBlocksExact) {
  DeviceBuffer arena{kArenaBytes};
  ASSERT_NE(arena.data, nullptr);
  std::vector<KvTensor> tensors;
  for (std::size_t t = 0; t < 2 * kLayers; ++t)
    tensors.push_back(
        {arena.data + t * kTensorBytes, kStride, kChunk, static_cast<std::uint32_t>(t / 2)});
  const KvLayout layout{tensors, kGpuBlocks, 1};

  std::vector<std::byte> image(kArenaBytes);
  for (std::size_t i = 0; i < image.size(); ++i)
    image[i] = static_cast<std::byte>((i * 131 + 7) >> 3 ^ i >> 11);
  upload(arena.data, image);

  testing::TempDir dir;
  const std::size_t disk_slot_bytes = (layout.host_slot_bytes() + 4095) / 4096 * 4096;
  const DiskTierOptions disk{.store = {.directories    = {dir.path()},
                                       .capacity_bytes = kDiskSlots * disk_slot_bytes + 65536,
                                       .persistent     = false,
                                       .direct_io      = false}};
  auto offloader = make_offloader("tiered:promote=0", layout, kHostSlots, disk);
  ASSERT_FALSE(offloader->engine().is_host_fallback()) << offloader->engine().description();

  // Two blocks per store into two host slots: each store demotes the two before it to disk.
  const std::vector<std::pair<Hashes, std::vector<BlockId>>> stores{
      {{11, 12}, {3, 9}}, {{13, 14}, {14, 1}}, {{15, 16}, {30, 22}}};
  for (const auto& [hashes, from] : stores) {
    const StoreTicket ticket = offloader->store(hashes, from);
    ASSERT_EQ(ticket.outcome, StoreTicket::Outcome::kSubmitted);
    const FinishedJob done = offloader->wait(ticket.job);
    ASSERT_TRUE(done.ok) << done.error;
  }
  for (const FinishedJob& f : offloader->wait_all())
    ASSERT_TRUE(f.ok) << f.error;
  ASSERT_GE(offloader->stats().demotions, 4u) << "the host tier kept what it could not hold";

  // From here the device holds only poison: what a load writes can only come from the tiers.
  std::vector<std::byte> expected(kArenaBytes, std::byte{kPoison});
  CUDA_OK(cudaMemset(arena.data, kPoison, kArenaBytes));
  CUDA_OK(cudaDeviceSynchronize());

  // Oldest first: 11 and 12 are on disk; bringing them up demotes 15 and 16, and so on.
  const std::vector<std::pair<std::size_t, std::vector<BlockId>>> loads{
      {0, {39, 38}}, {1, {37, 36}}, {2, {35, 34}}};
  for (const auto& [which, to] : loads) {
    const auto& [hashes, from]       = stores[which];
    std::optional<std::size_t> ready = offloader->lookup(hashes);
    for (int tries = 0; !ready && tries < 20; ++tries) {  // nullopt until the disk read lands
      for (const FinishedJob& f : offloader->wait_all())
        ASSERT_TRUE(f.ok) << f.error;
      ready = offloader->lookup(hashes);
    }
    ASSERT_EQ(ready, hashes.size()) << "hashes " << hashes[0] << ", " << hashes[1];
    const std::optional<transfer::JobId> load = offloader->load(hashes, to);
    ASSERT_TRUE(load);
    const FinishedJob done = offloader->wait(*load);
    ASSERT_TRUE(done.ok) << done.error;
    for (const KvTensor& tensor : layout.tensors()) {
      const std::size_t base = static_cast<std::size_t>(tensor.base - arena.data);
      for (std::size_t i = 0; i < to.size(); ++i)
        std::memcpy(expected.data() + base + static_cast<std::size_t>(to[i]) * kStride,
                    image.data() + base + static_cast<std::size_t>(from[i]) * kStride,
                    kChunk);
    }
  }

  const OffloaderStats st = offloader->stats();
  EXPECT_GE(st.promotions, 6u) << "a block was loaded without coming up from disk";
  EXPECT_GE(st.bytes_read_disk, 6 * layout.host_slot_bytes());
  EXPECT_EQ(st.blocks_lost, 0u);
  EXPECT_EQ(offloader->manager().stats().pinned, 0u);

  // Every byte: the loaded blocks hold their source blocks' bytes, the rest is still poison.
  std::vector<std::byte> after(kArenaBytes);
  CUDA_OK(cudaMemcpy(after.data(), arena.data, after.size(), cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < kArenaBytes; ++i) {
    ASSERT_EQ(after[i], expected[i])
        << "byte " << i % kStride << " of block " << i % kTensorBytes / kStride << " of tensor "
        << i / kTensorBytes;
  }
}

}  // namespace
}  // namespace kvoffload
