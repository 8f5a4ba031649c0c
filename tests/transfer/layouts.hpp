// The KV layouts of vLLM and SGLang as KvLayout tensor lists over one arena, shared by the CPU
// and GPU tests. Each case says how many bytes its arena needs and builds its tensors from the
// arena's base address, so the same case runs on host memory and on device memory.
#pragma once

#include <kvoffload/transfer/kv_layout.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace kvoffload::transfer::testing {

struct LayoutCase {
  std::string name;
  std::size_t num_blocks{0};
  std::size_t arena_bytes{0};
  std::function<std::vector<KvTensor>(std::byte* arena)> build;
};

/// `page` = bytes of one block of one layer for K (or V); `layers` layers.
inline std::vector<LayoutCase> layout_cases(std::size_t layers,
                                            std::size_t page,
                                            std::size_t blocks) {
  std::vector<LayoutCase> cases;
  // vLLM FlashAttention / SGLang layer-first: separate K and V tensor per layer.
  cases.push_back(
      {"flash_attention", blocks, 2 * layers * blocks * page, [=](std::byte* arena) {
         std::vector<KvTensor> t;
         for (std::size_t l = 0; l < layers; ++l) {
           for (std::size_t kv = 0; kv < 2; ++kv) {
             t.push_back(
                 {arena + (2 * l + kv) * blocks * page, page, page, static_cast<std::uint32_t>(l)});
           }
         }
         return t;
       }});
  // vLLM FlashInfer: K and V of a block fused in one tensor per layer.
  cases.push_back(
      {"flashinfer", blocks, 2 * layers * blocks * page, [=](std::byte* arena) {
         std::vector<KvTensor> t;
         for (std::size_t l = 0; l < layers; ++l) {
           t.push_back(
               {arena + l * blocks * 2 * page, 2 * page, 2 * page, static_cast<std::uint32_t>(l)});
         }
         return t;
       }});
  // vLLM MLA: one latent tensor per layer.
  cases.push_back(
      {"mla", blocks, layers * blocks * page, [=](std::byte* arena) {
         std::vector<KvTensor> t;
         for (std::size_t l = 0; l < layers; ++l) {
           t.push_back({arena + l * blocks * page, page, page, static_cast<std::uint32_t>(l)});
         }
         return t;
       }});
  // vLLM cross-layer: one tensor, all layers of a block contiguous.
  cases.push_back({"cross_layer", blocks, layers * blocks * page, [=](std::byte* arena) {
                     return std::vector<KvTensor>{{arena, layers * page, layers * page, 0}};
                   }});
  // SGLang page-first: K buffer [page][layer], V buffer likewise; one tensor per (layer, K/V).
  cases.push_back({"sglang_page_first", blocks, 2 * layers * blocks * page, [=](std::byte* arena) {
                     std::vector<KvTensor> t;
                     for (std::size_t l = 0; l < layers; ++l) {
                       for (std::size_t kv = 0; kv < 2; ++kv) {
                         t.push_back({arena + kv * layers * blocks * page + l * page,
                                      layers * page,
                                      page,
                                      static_cast<std::uint32_t>(l)});
                       }
                     }
                     return t;
                   }});
  // Padded pool: the block stride is larger than the chunk, and the chunk starts off-aligned.
  cases.push_back(
      {"padded_offset", blocks, layers * blocks * (page + 24) + 8, [=](std::byte* arena) {
         std::vector<KvTensor> t;
         for (std::size_t l = 0; l < layers; ++l) {
           t.push_back({arena + 8 + l * blocks * (page + 24),
                        page + 24,
                        page,
                        static_cast<std::uint32_t>(l)});
         }
         return t;
       }});
  return cases;
}

}  // namespace kvoffload::transfer::testing
