#include <kvoffload/error.hpp>
#include <kvoffload/transfer/kv_layout.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>

namespace kvoffload::transfer {

KvLayout::KvLayout(std::vector<KvTensor> tensors,
                   std::size_t num_gpu_blocks,
                   std::size_t gpu_blocks_per_slot)
    : num_gpu_blocks_{num_gpu_blocks}, gpu_blocks_per_slot_{gpu_blocks_per_slot} {
  KVO_EXPECTS(!tensors.empty(), "KvLayout: the tensor list is empty");
  KVO_EXPECTS(num_gpu_blocks > 0, "KvLayout: num_gpu_blocks is 0");
  // Kernels index blocks with 32 bits; 2^32 blocks is far beyond any KV cache.
  KVO_EXPECTS(num_gpu_blocks <= std::numeric_limits<std::uint32_t>::max(),
              "KvLayout: num_gpu_blocks " + std::to_string(num_gpu_blocks) + " exceeds 2^32 - 1");
  KVO_EXPECTS(gpu_blocks_per_slot > 0, "KvLayout: gpu_blocks_per_slot is 0");
  tensor_offset_.reserve(tensors.size());
  layer_first_tensor_.push_back(0);
  std::size_t offset = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const KvTensor& t       = tensors[i];
    const std::string which = "KvLayout: tensor " + std::to_string(i);
    KVO_EXPECTS(t.base != nullptr, which + " has a null base");
    KVO_EXPECTS(t.chunk_bytes > 0, which + " has chunk_bytes 0");
    KVO_EXPECTS(num_gpu_blocks == 1 || t.chunk_bytes <= t.block_stride_bytes,
                which + " has chunk_bytes " + std::to_string(t.chunk_bytes) +
                    " larger than its block_stride_bytes " + std::to_string(t.block_stride_bytes));
    if (i == 0) {
      KVO_EXPECTS(t.layer == 0,
                  which + " has layer " + std::to_string(t.layer) + ", the first must be 0");
    } else {
      const std::uint32_t previous = tensors[i - 1].layer;
      KVO_EXPECTS(t.layer == previous || t.layer == previous + 1,
                  which + " has layer " + std::to_string(t.layer) + " after layer " +
                      std::to_string(previous) + ": tensors must be grouped by layer in order");
      if (t.layer != previous) layer_first_tensor_.push_back(i);
    }
    tensor_offset_.push_back(offset);
    offset += t.chunk_bytes;
  }
  layer_first_tensor_.push_back(tensors.size());
  gpu_block_bytes_ = offset;
  tensors_         = std::move(tensors);
}

}  // namespace kvoffload::transfer
