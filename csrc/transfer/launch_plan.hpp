// The CUDA engine's decisions that need no device: launch geometry of the copy kernel, the
// launches of a staged load's piece, the copy-engine flags, when a batch copy falls back.
// Pure functions of their inputs (plain C++), so the CPU tests pin every one of them.
#pragma once

#include <kvoffload/transfer/kv_layout.hpp>
#include <kvoffload/transfer/transfer_request.hpp>

#include <cuda_runtime_api.h>  // before copy_chunks.cuh: __global__ for host compilers

#include "copy_chunks.cuh"

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace kvoffload::transfer::detail {

/// Threads per CTA allowed for the copy kernel: a multiple of 32 in [32, 1024] (its
/// __launch_bounds__ is 1024, so every size compiles to the same registers).
void validate_cta_threads(int cta_threads);

/**
 * CTAs of one copy launch: one warp per item (a segment of one chunk of one block) when the
 * budget allows, else the budget, which counts whole SMs' worth of CTAs (`ctas_per_sm` =
 * CTAs of `cta_threads` threads that fit one SM, from the occupancy calculator). Never 0.
 */
int copy_grid_ctas(std::uint64_t items, int cta_threads, int budget_sms, int ctas_per_sm);

/// Segments (kernel work items) of a chunk of `chunk_bytes`, at `segment_bytes` each.
std::uint64_t segments_of(std::size_t chunk_bytes, std::uint64_t segment_bytes);

/// The copy kernel's tensor table: one entry per tensor (base, stride, chunk, offset in the
/// block image, segments before it), then a sentinel whose first_segment is a whole block's.
std::vector<kernels::DeviceTensor> copy_tensor_table(const KvLayout& layout);

/// One block of a launch: its GPU block id and the offset of its image from `images`.
using CopyPair = std::pair<std::uint32_t, std::uint64_t>;

/**
 * Kernel parameters of one launch over tensors [first_tensor, end_tensor) and the pairs
 * [first_pair, first_pair + n), n = min(kMaxPairs, pairs.size() - first_pair). `device_table` is
 * where `table` lives on the device (the host emulation passes `table.data()`).
 */
kernels::CopyChunksParams copy_launch_params(const kernels::DeviceTensor* device_table,
                                             const std::vector<kernels::DeviceTensor>& table,
                                             std::size_t first_tensor,
                                             std::size_t end_tensor,
                                             const std::vector<CopyPair>& pairs,
                                             std::size_t first_pair,
                                             std::byte* images,
                                             bool to_images);

/// Tensor range [first, end) of one launch.
using TensorRange = std::pair<std::size_t, std::size_t>;

/**
 * Scatter launches of one piece of a staged load: one launch over all tensors, except for the
 * last piece of a per-layer load, which scatters layer by layer (only its launches record the
 * per-layer events; earlier pieces precede them on the same stream).
 */
std::vector<TensorRange> staged_scatter_launches(const KvLayout& layout,
                                                 bool per_layer,
                                                 bool last_piece);

/// cudaMemcpyAttributes::flags of a copy-engine batch: prefer overlap with compute when the
/// caller said the GPU is busy (the method was chosen to spare the SMs).
unsigned batch_copy_flags(bool gpu_busy) noexcept;

/// True when cudaMemcpyBatchAsync's error means the driver or platform cannot run it
/// (not supported, invalid value): the engine then issues per-copy cudaMemcpyAsync instead.
bool batch_copy_unsupported(int cuda_error) noexcept;

}  // namespace kvoffload::transfer::detail
