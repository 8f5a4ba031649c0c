// KvLayout arithmetic and its argument checks, and the auto method rule.
#include <kvoffload/error.hpp>
#include <kvoffload/transfer/kv_layout.hpp>
#include <kvoffload/transfer/transfer_engine.hpp>

#include <gtest/gtest.h>

#include <array>
#include <string>

namespace kvoffload::transfer {
namespace {

// Fake addresses: KvLayout only does arithmetic on them.
std::byte* at(std::size_t address) {
  return reinterpret_cast<std::byte*>(address);
}

template <typename F>
void expect_logic_error(F&& f, const std::string& needle) {
  try {
    f();
    FAIL() << "no exception; expected one mentioning \"" << needle << "\"";
  } catch (const logic_error& e) {
    EXPECT_NE(std::string{e.what()}.find(needle), std::string::npos) << e.what();
  }
}

TEST(KvLayout, FlashAttentionArithmetic) {
  // 2 layers, K and V each: chunk 656 bytes (SGLang's item; not a power of two), stride 1024.
  std::vector<KvTensor> tensors{{at(0x10000), 1024, 656, 0},
                                {at(0x20000), 1024, 656, 0},
                                {at(0x30000), 1024, 656, 1},
                                {at(0x40000), 1024, 656, 1}};
  const KvLayout layout{tensors, 64, 3};
  EXPECT_EQ(layout.num_tensors(), 4U);
  EXPECT_EQ(layout.num_layers(), 2U);
  EXPECT_EQ(layout.layer_first_tensor(0), 0U);
  EXPECT_EQ(layout.layer_first_tensor(1), 2U);
  EXPECT_EQ(layout.layer_first_tensor(2), 4U);
  EXPECT_EQ(layout.gpu_block_bytes(), 4U * 656);
  EXPECT_EQ(layout.host_slot_bytes(), 3U * 4 * 656);
  EXPECT_EQ(layout.tensor_offset(2), 2U * 656);
  EXPECT_EQ(layout.host_offset(2, 3), 2U * 4 * 656 + 3 * 656);
  EXPECT_EQ(layout.gpu_chunk(1, 5), at(0x20000 + 5 * 1024));
  EXPECT_THROW(static_cast<void>(layout.tensor_offset(4)), std::out_of_range);
}

TEST(KvLayout, CrossLayerIsOneLayer) {
  const KvLayout layout{{{at(0x1000), 32 * 4096, 32 * 4096, 0}}, 10};
  EXPECT_EQ(layout.num_layers(), 1U);
  EXPECT_EQ(layout.gpu_block_bytes(), 32U * 4096);
  EXPECT_EQ(layout.gpu_blocks_per_slot(), 1U);
}

TEST(KvLayout, RejectsBadTensors) {
  expect_logic_error([] { KvLayout({}, 4); }, "tensor list is empty");
  expect_logic_error([] { KvLayout({{nullptr, 16, 16, 0}}, 4); }, "tensor 0 has a null base");
  expect_logic_error([] { KvLayout({{at(16), 16, 0, 0}}, 4); }, "chunk_bytes 0");
  expect_logic_error(
      [] {
        KvLayout({{at(16), 16, 32, 0}}, 4);
      },
      "chunk_bytes 32 larger than its block_stride_bytes 16");
  expect_logic_error([] { KvLayout({{at(16), 16, 16, 1}}, 4); }, "layer 1, the first must be 0");
  expect_logic_error(
      [] {
        KvLayout({{at(16), 16, 16, 0}, {at(64), 16, 16, 2}}, 4);
      },
      "tensor 1 has layer 2 after layer 0");
  expect_logic_error([] { KvLayout({{at(16), 16, 16, 0}}, 0); }, "num_gpu_blocks is 0");
  expect_logic_error([] { KvLayout({{at(16), 16, 16, 0}}, 4, 0); }, "gpu_blocks_per_slot is 0");
  expect_logic_error(
      [] {
        KvLayout({{at(16), 16, 16, 0}}, std::size_t{1} << 33);
      },
      "exceeds 2^32 - 1");
  // One block: the stride does not matter.
  EXPECT_NO_THROW(KvLayout({{at(16), 0, 32, 0}}, 1));
}

TEST(ChooseMethod, FollowsTheMeasuredRule) {
  EXPECT_EQ(choose_method({.chunk_bytes = 16384}), Method::kKernel);
  EXPECT_EQ(choose_method({.chunk_bytes = 656, .chunks_aligned_16 = false}), Method::kStaged);
  EXPECT_EQ(choose_method({.chunk_bytes = 16384, .kernel_available = false}), Method::kStaged);
  EXPECT_EQ(choose_method({.chunk_bytes = 16384, .gpu_busy = true}), Method::kStaged);
  EXPECT_EQ(choose_method({.chunk_bytes = 2 << 20, .gpu_busy = true}), Method::kBatchMemcpy);
  EXPECT_STREQ(to_string(Method::kPerChunkMemcpy), "per-chunk");
  EXPECT_STREQ(to_string(Direction::kLoad), "load");
}

}  // namespace
}  // namespace kvoffload::transfer
