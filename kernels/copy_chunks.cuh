// The chunk copy kernel: moves the chunks of a list of KV blocks between the GPU tensors and
// block-major images (in mapped pinned host memory, or in a device staging buffer). One kernel
// serves the zero-copy method (images in host memory) and the staged gather / scatter (images
// in device memory).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvoffload::transfer::kernels {

/// Most threads per CTA (the kernel's __launch_bounds__): any CTA size up to it runs with the
/// same registers (about 58 a thread). The engine launches smaller CTAs
/// (TransferEngineOptions::cta_threads, 256 by default) so that they fit beside compute on a
/// partly busy SM instead of waiting for a whole idle one.
inline constexpr int kMaxCtaThreads = 1024;
/// A warp copies one segment of a chunk at a time: 2 KiB = one step of the warp (32 lanes x
/// four 16-byte loads in flight), so a segment costs one PCIe round trip, and a small job
/// (one block) spreads over many warps instead of a few warps' dependent steps.
inline constexpr std::uint64_t kSegmentBytes = 2048;
/// Blocks per launch: their ids and image offsets travel in the kernel parameters (no upload).
inline constexpr int kMaxPairs = 256;

/// One GPU tensor as the kernel sees it (a table in device memory, uploaded once).
struct DeviceTensor {
  std::byte* base;
  std::uint64_t block_stride;
  std::uint64_t chunk_bytes;
  std::uint64_t image_offset;   ///< offset of this tensor's chunk inside a block image
  std::uint64_t first_segment;  ///< segments of all tensors before this one, per block
};

struct CopyChunksParams {
  const DeviceTensor* tensors;  ///< the whole table
  std::uint32_t first_tensor;   ///< this launch copies tensors [first_tensor, end_tensor)
  std::uint32_t end_tensor;
  std::uint64_t first_segment;  ///< tensors[first_tensor].first_segment
  std::uint64_t segments_per_block;
  std::byte* images;  ///< base of the images (device-accessible)
  std::uint32_t num_pairs;
  std::uint32_t to_images;  ///< 1: GPU tensors -> images (store); 0: images -> tensors
  std::uint32_t gpu_block[kMaxPairs];
  std::uint64_t image_offset[kMaxPairs];  ///< offset of each block's image from `images`
};

/// Copy every (pair, tensor) chunk of `params`; grid-stride over warps, any alignment.
__global__ void copy_chunks(CopyChunksParams params);

}  // namespace kvoffload::transfer::kernels
