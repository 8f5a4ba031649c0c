/**
 * @file kv_layout.hpp
 * @brief Where the KV bytes of one block live on the GPU, and where they go in a host slot.
 *
 * A GPU KV cache is a list of tensors. Block `b` of tensor `t` is the `chunk_bytes` bytes at
 * `base + b * block_stride_bytes`. That describes every layout in use:
 * - vLLM FlashAttention: two tensors per layer (K, V), stride = chunk = one page of one layer;
 * - vLLM FlashInfer: one tensor per layer, K and V of a block fused (chunk = 2 pages);
 * - vLLM MLA: one tensor per layer;
 * - vLLM cross-layer: one tensor whose block holds all layers contiguously (chunk = L pages);
 * - SGLang layer-first: as FlashAttention; SGLang page-first: per layer `l`, base + l * page,
 *   stride = L * page, chunk = page (or one tensor per K/V with chunk = L * page).
 *
 * The host side is block-major: a host slot holds `gpu_blocks_per_slot` GPU blocks, each as
 * one contiguous image of `gpu_block_bytes()` bytes (its tensors' chunks in tensor order), the
 * images back to back. Any chunk size works, including sizes that are not multiples of 16.
 */
#pragma once

#include <kvoffload/types.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvoffload::transfer {

/// One GPU tensor of the KV cache (see the file comment). Non-owning.
struct KvTensor {
  std::byte* base{nullptr};           ///< address of block 0 (device memory, or host memory
                                      ///< for the host engine)
  std::size_t block_stride_bytes{0};  ///< distance between blocks b and b + 1
  std::size_t chunk_bytes{0};         ///< bytes of one block in this tensor
  std::uint32_t layer{0};             ///< model layer (for per-layer load events)
};

/// A caller-owned array of equally sized host slots (pinned memory for the CUDA engine).
struct HostSlots {
  std::byte* base{nullptr};   ///< address of slot 0
  std::size_t slot_bytes{0};  ///< distance between slots s and s + 1
  std::size_t num_slots{0};   ///< slots in the array
};

/**
 * @brief The GPU KV layout and the block-major host image of it.
 *
 * Immutable after construction; cheap to copy.
 */
class KvLayout {
 public:
  /**
   * @brief Describe a KV cache.
   * @param tensors the GPU tensors, grouped by layer: the first has layer 0, and each next
   *        tensor has the same layer as the one before it or the next one
   * @param num_gpu_blocks blocks in every tensor (valid block ids are [0, num_gpu_blocks))
   * @param gpu_blocks_per_slot GPU blocks in one host slot (vLLM's offloaded block = k GPU
   *        blocks, not necessarily adjacent on the GPU)
   * @throws logic_error on an empty list, a null base, a zero chunk, a chunk larger than the
   *         stride (when there is more than one block), bad layer ids, zero counts, or
   *         num_gpu_blocks above 2^32 - 1
   */
  KvLayout(std::vector<KvTensor> tensors,
           std::size_t num_gpu_blocks,
           std::size_t gpu_blocks_per_slot = 1);

  [[nodiscard]] const std::vector<KvTensor>& tensors() const noexcept { return tensors_; }
  [[nodiscard]] std::size_t num_tensors() const noexcept { return tensors_.size(); }
  [[nodiscard]] std::size_t num_gpu_blocks() const noexcept { return num_gpu_blocks_; }
  [[nodiscard]] std::size_t gpu_blocks_per_slot() const noexcept { return gpu_blocks_per_slot_; }
  /// Layers: one more than the last tensor's layer id.
  [[nodiscard]] std::size_t num_layers() const noexcept { return layer_first_tensor_.size() - 1; }
  /// Tensors of layer `layer` are [layer_first_tensor(layer), layer_first_tensor(layer + 1)).
  [[nodiscard]] std::size_t layer_first_tensor(std::size_t layer) const {
    return layer_first_tensor_.at(layer);
  }
  /// Bytes of one GPU block over all tensors (= the size of its host image).
  [[nodiscard]] std::size_t gpu_block_bytes() const noexcept { return gpu_block_bytes_; }
  /// Bytes one host slot needs: gpu_blocks_per_slot() * gpu_block_bytes().
  [[nodiscard]] std::size_t host_slot_bytes() const noexcept {
    return gpu_blocks_per_slot_ * gpu_block_bytes_;
  }
  /// Offset of tensor `tensor`'s chunk inside one GPU block's host image.
  [[nodiscard]] std::size_t tensor_offset(std::size_t tensor) const {
    return tensor_offset_.at(tensor);
  }
  /// Offset inside a host slot of tensor `tensor`'s chunk of the slot's `sub_block`-th block.
  [[nodiscard]] std::size_t host_offset(std::size_t sub_block, std::size_t tensor) const {
    return sub_block * gpu_block_bytes_ + tensor_offset(tensor);
  }
  /// Address of block `block`'s chunk in tensor `tensor` (no range check: see validate).
  [[nodiscard]] std::byte* gpu_chunk(std::size_t tensor, BlockId block) const {
    const KvTensor& t = tensors_[tensor];
    return t.base + static_cast<std::size_t>(block) * t.block_stride_bytes;
  }

 private:
  std::vector<KvTensor> tensors_;
  std::vector<std::size_t> tensor_offset_;
  std::vector<std::size_t> layer_first_tensor_;
  std::size_t num_gpu_blocks_{0};
  std::size_t gpu_blocks_per_slot_{1};
  std::size_t gpu_block_bytes_{0};
};

}  // namespace kvoffload::transfer
