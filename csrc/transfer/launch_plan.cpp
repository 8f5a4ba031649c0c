#include "transfer/launch_plan.hpp"

#include <kvoffload/error.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>

namespace kvoffload::transfer::detail {

void validate_cta_threads(int cta_threads) {
  KVO_EXPECTS(cta_threads >= 32 && cta_threads <= 1024 && cta_threads % 32 == 0,
              "engine: cta_threads " + std::to_string(cta_threads) +
                  " must be a multiple of 32 in [32, 1024]");
}

int copy_grid_ctas(std::uint64_t items, int cta_threads, int budget_sms, int ctas_per_sm) {
  const std::uint64_t warps_per_cta = static_cast<std::uint64_t>(std::max(cta_threads / 32, 1));
  const std::uint64_t wanted =
      std::max<std::uint64_t>(1, (items + warps_per_cta - 1) / warps_per_cta);
  const std::uint64_t cap = static_cast<std::uint64_t>(std::max(budget_sms, 1)) *
                            static_cast<std::uint64_t>(std::max(ctas_per_sm, 1));
  return static_cast<int>(std::min({wanted, cap, std::uint64_t{1} << 30}));
}

std::uint64_t segments_of(std::size_t chunk_bytes, std::uint64_t segment_bytes) {
  return (chunk_bytes + segment_bytes - 1) / segment_bytes;
}

std::vector<kernels::DeviceTensor> copy_tensor_table(const KvLayout& layout) {
  std::vector<kernels::DeviceTensor> table;
  table.reserve(layout.num_tensors() + 1);
  std::uint64_t segments = 0;
  for (std::size_t t = 0; t < layout.num_tensors(); ++t) {
    const KvTensor& tensor = layout.tensors()[t];
    table.push_back({tensor.base,
                     tensor.block_stride_bytes,
                     tensor.chunk_bytes,
                     layout.tensor_offset(t),
                     segments});
    segments += segments_of(tensor.chunk_bytes, kernels::kSegmentBytes);
  }
  table.push_back({nullptr, 0, 0, 0, segments});
  return table;
}

kernels::CopyChunksParams copy_launch_params(const kernels::DeviceTensor* device_table,
                                             const std::vector<kernels::DeviceTensor>& table,
                                             std::size_t first_tensor,
                                             std::size_t end_tensor,
                                             const std::vector<CopyPair>& pairs,
                                             std::size_t first_pair,
                                             std::byte* images,
                                             bool to_images) {
  kernels::CopyChunksParams params{};
  params.tensors            = device_table;
  params.first_tensor       = static_cast<std::uint32_t>(first_tensor);
  params.end_tensor         = static_cast<std::uint32_t>(end_tensor);
  params.first_segment      = table[first_tensor].first_segment;
  params.segments_per_block = table[end_tensor].first_segment - table[first_tensor].first_segment;
  params.images             = images;
  params.to_images          = to_images ? 1U : 0U;
  const std::size_t n =
      std::min<std::size_t>(kernels::kMaxPairs, pairs.size() - std::min(first_pair, pairs.size()));
  params.num_pairs = static_cast<std::uint32_t>(n);
  for (std::size_t i = 0; i < n; ++i) {
    params.gpu_block[i]    = pairs[first_pair + i].first;
    params.image_offset[i] = pairs[first_pair + i].second;
  }
  return params;
}

std::vector<TensorRange> staged_scatter_launches(const KvLayout& layout,
                                                 bool per_layer,
                                                 bool last_piece) {
  if (!per_layer || !last_piece) return {{0, layout.num_tensors()}};
  std::vector<TensorRange> launches;
  launches.reserve(layout.num_layers());
  for (std::size_t l = 0; l < layout.num_layers(); ++l)
    launches.emplace_back(layout.layer_first_tensor(l), layout.layer_first_tensor(l + 1));
  return launches;
}

unsigned batch_copy_flags(bool gpu_busy) noexcept {
  return gpu_busy ? static_cast<unsigned>(cudaMemcpyFlagPreferOverlapWithCompute)
                  : static_cast<unsigned>(cudaMemcpyFlagDefault);
}

bool batch_copy_unsupported(int cuda_error) noexcept {
  return cuda_error == cudaErrorNotSupported || cuda_error == cudaErrorInvalidValue;
}

}  // namespace kvoffload::transfer::detail
