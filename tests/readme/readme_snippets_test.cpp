// The README's C++ examples, compiled and run as they are written: extract_readme.sh copies each
// block marked `<!-- readme-test: NAME -->` into NAME.inc, included below as a function body
// after the few declarations the README's prose assumes (the scaffolding). A README edit that
// breaks an example breaks this build (errors name README.md and its line).
#include "includes.inc"  // the snippets' own #include lines come first: they must suffice

#include <kvoffload/kvoffload.hpp>
#include <kvoffload/transfer/transfer.hpp>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <iostream>
#include <memory>
#include <span>
#include <vector>

namespace {

/// The GPU KV cache the transfer-engine snippet indexes as k_cache[l] / v_cache[l]: device
/// memory when a CUDA device is usable, else host memory (for the host engine).
class FakeKvCache {
 public:
  static constexpr std::size_t kLayers    = 32;
  static constexpr std::size_t kChunk     = 16384;  // the snippet's block stride and chunk bytes
  static constexpr std::size_t kGpuBlocks = 48;     // the snippet stores block 42

  FakeKvCache() : gpu_{kvoffload::transfer::cuda_device_available()} {
    const std::size_t bytes = 2 * kLayers * kGpuBlocks * kChunk;
    if (gpu_) {
      void* memory = nullptr;
      if (cudaMalloc(&memory, bytes) != cudaSuccess) throw std::runtime_error("cudaMalloc");
      base_ = static_cast<std::byte*>(memory);
    } else {
      host_.resize(bytes);
      base_ = host_.data();
    }
    for (std::size_t l = 0; l < kLayers; ++l) {
      k_cache.push_back(base_ + (2 * l) * kGpuBlocks * kChunk);
      v_cache.push_back(base_ + (2 * l + 1) * kGpuBlocks * kChunk);
    }
  }
  ~FakeKvCache() {
    if (gpu_) cudaFree(base_);
  }
  FakeKvCache(const FakeKvCache&)            = delete;
  FakeKvCache& operator=(const FakeKvCache&) = delete;

  std::vector<void*> k_cache, v_cache;  // void*, as a runtime hands them out (torch data_ptr())

 private:
  bool gpu_;
  std::byte* base_{nullptr};
  std::vector<std::byte> host_;
};

}  // namespace

#if __has_include("manager.inc")
TEST(ReadmeSnippet, UsingAManager) {
#include "manager.inc"
  // The block ran a request through: its three new blocks are stored and ready.
  EXPECT_EQ(cache->stats().ready, hashes.size());
  EXPECT_EQ(cache->lookup(hashes).value_or(0), hashes.size());
}
#endif

#if __has_include("transfer_engine.inc")
TEST(ReadmeSnippet, TransferEngine) {
  FakeKvCache kv;
  auto& k_cache                    = kv.k_cache;
  auto& v_cache                    = kv.v_cache;
  const std::size_t num_gpu_blocks = FakeKvCache::kGpuBlocks;
  const std::size_t num_slots      = 4;
  cudaEvent_t compute_done         = nullptr;  // no kernel to wait for here
#include "transfer_engine.inc"
  EXPECT_EQ(status.state, JobState::kDone) << status.error;
}
#endif

#if __has_include("disk_tier.inc")
// Compiled, not run: the snippet names NVMe directories of a serving machine.
TEST(ReadmeSnippet, DiskTierCompiles) {
  using namespace kvoffload::transfer;
  std::vector<std::byte> memory(FakeKvCache::kGpuBlocks * 16384);
  KvLayout layout{{KvTensor{memory.data(), 16384, 16384, 0}}, FakeKvCache::kGpuBlocks};
  const std::size_t num_slots                           = 4;
  std::vector<kvoffload::BlockHash> next_request_hashes = {1, 2, 3};
  [[maybe_unused]] auto snippet                         = [&] {
#include "disk_tier.inc"
  };
  SUCCEED() << "the disk-tier snippet compiles";
}
#endif

#if __has_include("offloader.inc")
TEST(ReadmeSnippet, Offloader) {
  // What the README's transfer-engine snippet above it declared.
  using namespace kvoffload::transfer;
  FakeKvCache kv;
  std::vector<KvTensor> tensors;
  for (std::uint32_t l = 0; l < FakeKvCache::kLayers; ++l) {
    tensors.push_back({static_cast<std::byte*>(kv.k_cache[l]), 16384, 16384, l});
    tensors.push_back({static_cast<std::byte*>(kv.v_cache[l]), 16384, 16384, l});
  }
  KvLayout layout{tensors, FakeKvCache::kGpuBlocks};
  const std::size_t num_slots                = 4;
  std::vector<kvoffload::BlockHash> hashes   = {0x9e37, 0x7f4a, 0x2c1b};
  std::vector<kvoffload::BlockId> gpu_blocks = {5, 6, 7};
  cudaEvent_t kv_written                     = nullptr;  // the KV was written before
#include "offloader.inc"
  EXPECT_EQ(hit, 0U);  // a new offloader: nothing to load yet
  EXPECT_FALSE(load.has_value());
  ASSERT_EQ(st.outcome, kvoffload::StoreTicket::Outcome::kSubmitted);
  for (const kvoffload::FinishedJob& job : offloader->wait_all())
    EXPECT_TRUE(job.ok) << job.error;
  EXPECT_EQ(offloader->lookup(hashes).value_or(0), hashes.size());  // stored, ready to load
}
#endif
