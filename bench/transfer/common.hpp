// Helpers shared by the host and GPU halves of the transfer benchmark.
#pragma once

#include <kvoffload/transfer/transfer.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <numeric>
#include <random>
#include <vector>

namespace kvoffload::bench {

inline constexpr std::size_t kLayers = 32;
/// Chunk sizes of the bandwidth table; 656 bytes is SGLang's failing item size (a multiple of
/// 16 but of no larger power of two; the GPU table adds 1000 bytes, which is not).
inline const std::vector<std::size_t> kChunkSizes{656, 4096, 16384, 65536, 262144};

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

/// `count` distinct random ids below `limit`.
inline std::vector<BlockId> random_ids(std::size_t count, std::size_t limit, std::uint64_t seed) {
  std::vector<BlockId> ids(limit);
  std::iota(ids.begin(), ids.end(), BlockId{0});
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64{seed});
  ids.resize(count);
  return ids;
}

/// One tensor per layer (vLLM MLA-like): a block is one `chunk` in each of 32 layer pools.
inline transfer::KvLayout layer_pools(std::byte* arena, std::size_t chunk, std::size_t blocks) {
  std::vector<transfer::KvTensor> tensors;
  for (std::size_t l = 0; l < kLayers; ++l) {
    tensors.push_back({arena + l * blocks * chunk, chunk, chunk, static_cast<std::uint32_t>(l)});
  }
  return transfer::KvLayout{tensors, blocks};
}

/// Seconds of one submit + wait.
inline double timed_job(transfer::TransferEngine& engine,
                        const transfer::TransferRequest& request) {
  const double start = now_seconds();
  const auto status  = engine.wait(engine.submit(request));
  const double end   = now_seconds();
  if (status.state != transfer::JobState::kDone) throw std::runtime_error(status.error);
  return end - start;
}

}  // namespace kvoffload::bench
