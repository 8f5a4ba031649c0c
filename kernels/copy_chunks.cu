#include "copy_chunks.cuh"

namespace kvoffload::transfer::kernels {

namespace {

constexpr int kWarp = 32;

__device__ __forceinline__ std::uint64_t smaller(std::uint64_t a, std::uint64_t b) {
  return a < b ? a : b;
}

/// Copy `n` elements of V per warp lane stride, four loads in flight per lane.
template <typename V>
__device__ __forceinline__ void warp_copy_body(std::byte* dst,
                                               const std::byte* src,
                                               std::uint64_t count,
                                               int lane) {
  auto* d         = reinterpret_cast<V*>(dst);
  const auto* s   = reinterpret_cast<const V*>(src);
  std::uint64_t i = lane;
  for (; i + 3 * kWarp < count; i += 4 * kWarp) {
    const V a        = s[i];
    const V b        = s[i + kWarp];
    const V c        = s[i + 2 * kWarp];
    const V e        = s[i + 3 * kWarp];
    d[i]             = a;
    d[i + kWarp]     = b;
    d[i + 2 * kWarp] = c;
    d[i + 3 * kWarp] = e;
  }
  for (; i < count; i += kWarp)
    d[i] = s[i];
}

__device__ __forceinline__ void warp_copy_bytes(std::byte* dst,
                                                const std::byte* src,
                                                std::uint64_t n,
                                                int lane) {
  for (std::uint64_t i = lane; i < n; i += kWarp)
    dst[i] = src[i];
}

/// Copy with the widest access the relative alignment of dst and src allows: peel bytes
/// until src is aligned to that width, copy the body wide, finish the tail bytewise.
template <typename V>
__device__ __forceinline__ void warp_copy_aligned_as(std::byte* dst,
                                                     const std::byte* src,
                                                     std::uint64_t n,
                                                     int lane) {
  constexpr std::uint64_t w = sizeof(V);
  const auto misalign       = reinterpret_cast<std::uintptr_t>(src) % w;
  const std::uint64_t head  = misalign == 0 ? 0 : smaller(n, w - misalign);
  warp_copy_bytes(dst, src, head, lane);
  const std::uint64_t count = (n - head) / w;
  warp_copy_body<V>(dst + head, src + head, count, lane);
  const std::uint64_t done = head + count * w;
  warp_copy_bytes(dst + done, src + done, n - done, lane);
}

__device__ __forceinline__ void warp_copy(std::byte* dst,
                                          const std::byte* src,
                                          std::uint64_t n,
                                          int lane) {
  const auto relative =
      reinterpret_cast<std::uintptr_t>(dst) ^ reinterpret_cast<std::uintptr_t>(src);
  if (relative % 16 == 0) {
    warp_copy_aligned_as<int4>(dst, src, n, lane);
  } else if (relative % 8 == 0) {
    warp_copy_aligned_as<std::uint64_t>(dst, src, n, lane);
  } else if (relative % 4 == 0) {
    warp_copy_aligned_as<std::uint32_t>(dst, src, n, lane);
  } else {
    // Mutually misaligned: bytewise (the auto rule sends such layouts through the staging ring).
    warp_copy_bytes(dst, src, n, lane);
  }
}

/// The tensor in [first, end) whose segments contain `segment` (binary search).
__device__ __forceinline__ std::uint32_t find_tensor(const DeviceTensor* tensors,
                                                     std::uint32_t first,
                                                     std::uint32_t end,
                                                     std::uint64_t segment) {
  while (end - first > 1) {
    const std::uint32_t middle = first + (end - first) / 2;
    if (tensors[middle].first_segment <= segment) {
      first = middle;
    } else {
      end = middle;
    }
  }
  return first;
}

}  // namespace

__global__ void __launch_bounds__(kMaxCtaThreads) copy_chunks(CopyChunksParams params) {
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  const std::uint64_t warp =
      (static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const std::uint64_t warps = static_cast<std::uint64_t>(gridDim.x) * blockDim.x / kWarp;
  const std::uint64_t total =
      static_cast<std::uint64_t>(params.num_pairs) * params.segments_per_block;
  for (std::uint64_t item = warp; item < total; item += warps) {
    const std::uint64_t pair    = item / params.segments_per_block;
    const std::uint64_t segment = item % params.segments_per_block + params.first_segment;
    const std::uint32_t t =
        find_tensor(params.tensors, params.first_tensor, params.end_tensor, segment);
    const DeviceTensor tensor  = params.tensors[t];
    const std::uint64_t offset = (segment - tensor.first_segment) * kSegmentBytes;
    const std::uint64_t n      = smaller(kSegmentBytes, tensor.chunk_bytes - offset);
    std::byte* gpu   = tensor.base + params.gpu_block[pair] * tensor.block_stride + offset;
    std::byte* image = params.images + params.image_offset[pair] + tensor.image_offset + offset;
    if (params.to_images != 0) {
      warp_copy(image, gpu, n, lane);
    } else {
      warp_copy(gpu, image, n, lane);
    }
  }
}

}  // namespace kvoffload::transfer::kernels
