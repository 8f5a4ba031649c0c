// The copy kernel compiled as plain C++ and run on the host, thread by thread, with the launch
// geometry and parameters the CUDA engine computes (copy_tensor_table, copy_launch_params,
// copy_grid_ctas): every CTA size, budgets of 1 and 16 SMs, odd chunk sizes and mutually
// misaligned addresses, per-layer tensor ranges, both directions. Each thread's work is
// independent (no shared memory, no barriers), so running the threads one after another is
// what the GPU computes. Under ASan/UBSan (CI) this also checks every access is in bounds and
// every 16/8/4-byte access aligned.
#include <cuda_runtime_api.h>  // dim3, uint3, int4 and the (empty) __global__ / __device__

#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

namespace {
// What the kernel reads as its built-in variables.
uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;
}  // namespace

#include "copy_chunks.cu"

#include "transfer/launch_plan.hpp"
#include "transfer/layouts.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace kvoffload::transfer {
namespace {

namespace k = kernels;

/// Run one engine launch (all its kMaxPairs batches) on the host.
void emulate(const KvLayout& layout,
             const std::vector<detail::CopyPair>& pairs,
             std::size_t t0,
             std::size_t t1,
             std::byte* images,
             bool to_images,
             int cta_threads,
             int budget_sms,
             int ctas_per_sm) {
  const std::vector<k::DeviceTensor> table = detail::copy_tensor_table(layout);
  for (std::size_t first = 0; first < pairs.size(); first += k::kMaxPairs) {
    const k::CopyChunksParams params =
        detail::copy_launch_params(table.data(), table, t0, t1, pairs, first, images, to_images);
    const int grid =
        detail::copy_grid_ctas(std::uint64_t{params.num_pairs} * params.segments_per_block,
                               cta_threads,
                               budget_sms,
                               ctas_per_sm);
    gridDim  = dim3(static_cast<unsigned>(grid));
    blockDim = dim3(static_cast<unsigned>(cta_threads));
    for (unsigned b = 0; b < gridDim.x; ++b) {
      for (unsigned t = 0; t < blockDim.x; ++t) {
        blockIdx  = {b, 0, 0};
        threadIdx = {t, 0, 0};
        k::copy_chunks(params);
      }
    }
  }
}

struct EmulationCase {
  std::size_t page;
  std::size_t arena_shift;  // bytes the tensors start past a 16-byte boundary
  std::size_t image_shift;  // likewise for the images
  int cta_threads;
};

void PrintTo(const EmulationCase& c, std::ostream* os) {
  *os << "page " << c.page << ", arena +" << c.arena_shift << ", images +" << c.image_shift << ", "
      << c.cta_threads << " threads";
}

class CopyKernelEmulation : public ::testing::TestWithParam<EmulationCase> {};

TEST_P(CopyKernelEmulation, GatherAndScatterEveryByteOfEveryLayout) {
  const EmulationCase& c = GetParam();
  std::mt19937_64 rng{c.page * 131 + c.arena_shift * 7 + c.image_shift + c.cta_threads};
  for (const testing::LayoutCase& lc : testing::layout_cases(3, c.page, 12)) {
    SCOPED_TRACE(lc.name);
    std::vector<std::byte> arena_memory(lc.arena_bytes + 32);
    std::byte* arena = arena_memory.data() +
                       (16 - reinterpret_cast<std::uintptr_t>(arena_memory.data()) % 16) % 16 +
                       c.arena_shift;
    const KvLayout layout{lc.build(arena), lc.num_blocks};
    for (std::size_t i = 0; i < lc.arena_bytes; ++i)
      arena[i] = static_cast<std::byte>(rng());
    const std::vector<std::byte> original(arena, arena + lc.arena_bytes);
    // 5 blocks in scrambled order into images with a 40-byte gap between them.
    const std::vector<std::uint32_t> blocks{7, 0, 11, 3, 5};
    const std::size_t image_stride = layout.gpu_block_bytes() + 40;
    std::vector<std::byte> image_memory(blocks.size() * image_stride + 32, std::byte{0xA5});
    std::byte* images = image_memory.data() +
                        (16 - reinterpret_cast<std::uintptr_t>(image_memory.data()) % 16) % 16 +
                        c.image_shift;
    std::vector<detail::CopyPair> pairs;
    for (std::size_t i = 0; i < blocks.size(); ++i)
      pairs.emplace_back(blocks[i], i * image_stride);

    for (const int budget : {1, 16}) {
      SCOPED_TRACE("budget " + std::to_string(budget));
      std::fill(image_memory.begin(), image_memory.end(), std::byte{0xA5});
      // Gather all tensors, as the kernel method's store and the staged gather do.
      emulate(layout, pairs, 0, layout.num_tensors(), images, true, c.cta_threads, budget, 4);
      for (std::size_t i = 0; i < blocks.size(); ++i) {
        for (std::size_t t = 0; t < layout.num_tensors(); ++t) {
          ASSERT_EQ(0,
                    std::memcmp(images + i * image_stride + layout.tensor_offset(t),
                                layout.gpu_chunk(t, static_cast<BlockId>(blocks[i])),
                                layout.tensors()[t].chunk_bytes))
              << "gather: block " << blocks[i] << " tensor " << t;
        }
        for (std::size_t g = layout.gpu_block_bytes(); g < image_stride; ++g)
          ASSERT_EQ(images[i * image_stride + g], std::byte{0xA5}) << "gap written, image " << i;
      }
      // Scatter back into other blocks layer by layer, as a per-layer load does.
      std::vector<detail::CopyPair> to_others;
      for (std::size_t i = 0; i < blocks.size(); ++i)
        to_others.emplace_back(static_cast<std::uint32_t>(1 + 2 * i), i * image_stride);
      std::vector<std::byte> expected(arena, arena + lc.arena_bytes);
      for (std::size_t l = 0; l < layout.num_layers(); ++l) {
        emulate(layout,
                to_others,
                layout.layer_first_tensor(l),
                layout.layer_first_tensor(l + 1),
                images,
                false,
                c.cta_threads,
                budget,
                4);
      }
      for (std::size_t i = 0; i < blocks.size(); ++i) {
        for (std::size_t t = 0; t < layout.num_tensors(); ++t) {
          const auto to = static_cast<std::size_t>(
              layout.gpu_chunk(t, static_cast<BlockId>(1 + 2 * i)) - arena);
          const auto from = static_cast<std::size_t>(
              layout.gpu_chunk(t, static_cast<BlockId>(blocks[i])) - arena);
          std::memcpy(
              expected.data() + to, original.data() + from, layout.tensors()[t].chunk_bytes);
        }
      }
      for (std::size_t b = 0; b < lc.arena_bytes; ++b)
        ASSERT_EQ(arena[b], expected[b]) << "scatter: arena byte " << b;
      std::memcpy(arena, original.data(), lc.arena_bytes);
    }
  }
}

std::vector<EmulationCase> emulation_cases() {
  std::vector<EmulationCase> cases;
  // 7: bytewise; 656: SGLang's item; 1000: 8-byte path; 4096 + 3: a tail past 2 KiB segments;
  // 5000: three segments, the last short.
  for (std::size_t page : {7, 656, 1000, 4099, 5000}) {
    for (const auto& [arena_shift, image_shift] :
         {std::pair{0, 0}, std::pair{8, 8}, std::pair{4, 0}, std::pair{1, 3}}) {
      for (int threads : {32, 256, 1024}) {
        cases.push_back({page,
                         static_cast<std::size_t>(arena_shift),
                         static_cast<std::size_t>(image_shift),
                         threads});
      }
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Sizes,
                         CopyKernelEmulation,
                         ::testing::ValuesIn(emulation_cases()),
                         [](const ::testing::TestParamInfo<EmulationCase>& info) {
                           const EmulationCase& c = info.param;
                           return "page" + std::to_string(c.page) + "_arena" +
                                  std::to_string(c.arena_shift) + "_images" +
                                  std::to_string(c.image_shift) + "_cta" +
                                  std::to_string(c.cta_threads);
                         });

}  // namespace
}  // namespace kvoffload::transfer
