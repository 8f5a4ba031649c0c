// End to end: the Mooncake trace through an Offloader over the host engine, moving real bytes.
// Every GPU block written for a hash carries a pattern derived from the hash; every load must
// bring back exactly that pattern, while stores evict (and reuse host slots) beside loads that
// are still reading theirs. A slot handed out twice, a pin released early or a store confirmed
// before its bytes landed shows up here as a wrong byte.
#include "replay/trace.hpp"

#include <kvoffload/offloader.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kvoffload {
namespace {

using transfer::HostSlots;
using transfer::JobId;
using transfer::KvLayout;
using transfer::KvTensor;

constexpr std::size_t kChunk = 64;  // bytes of one block: small, so the trace runs fast

std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

void fill(std::byte* block, BlockHash hash) {
  for (std::size_t i = 0; i < kChunk; i += 8) {
    const std::uint64_t word = mix(hash * 64 + i);
    std::memcpy(block + i, &word, 8);
  }
}

bool holds(const std::byte* block, BlockHash hash) {
  std::byte expected[kChunk];
  fill(expected, hash);
  return std::memcmp(block, expected, kChunk) == 0;
}

class OffloaderTrace : public ::testing::TestWithParam<const char*> {};

TEST_P(OffloaderTrace, EveryLoadedBlockHoldsItsHashsBytes) {
  const replay::Trace trace =
      replay::load_trace(KVOFFLOAD_SOURCE_DIR "/data/traces/mooncake/conversation_trace.jsonl");
  const std::size_t requests = std::min<std::size_t>(trace.requests.size(), 4000);
  std::size_t longest        = 0;
  for (std::size_t r = 0; r < requests; ++r)
    longest = std::max(longest, trace.requests[r].hashes.size());

  // "GPU" blocks: a request's blocks at [0, n) while the previous request's loads may still
  // be reading into [longest, longest + n): two halves, alternating.
  const std::size_t gpu_blocks = 2 * longest;
  std::vector<std::byte> gpu(gpu_blocks * kChunk);
  const KvLayout layout{{KvTensor{gpu.data(), kChunk, kChunk, 0}}, gpu_blocks};
  const std::size_t slots = 1500;  // about 2% of the distinct blocks in the slice
  std::vector<std::byte> host(slots * kChunk);
  auto offloader = make_offloader(GetParam(),
                                  layout,
                                  HostSlots{host.data(), kChunk, slots},
                                  {.force_host = true, .host_threads = 3});

  std::size_t verified = 0;
  std::size_t stored   = 0;
  std::size_t failures = 0;
  struct Load {
    std::vector<BlockHash> hashes;
    std::vector<BlockId> blocks;
  };
  std::unordered_map<JobId, Load> loads;
  std::unordered_set<JobId> running;
  std::vector<JobId> jobs_of_half[2];
  // A finished load must have brought back each hash's pattern.
  auto finished = [&](const FinishedJob& done) {
    running.erase(done.job);
    failures += done.ok ? 0 : 1;
    const auto it = loads.find(done.job);
    if (it == loads.end()) return;
    const Load& load = it->second;
    for (std::size_t i = 0; i < load.hashes.size(); ++i) {
      const std::byte* block = gpu.data() + static_cast<std::size_t>(load.blocks[i]) * kChunk;
      EXPECT_TRUE(holds(block, load.hashes[i]))
          << "GPU block " << load.blocks[i] << " does not hold hash " << load.hashes[i];
      ++verified;
    }
    loads.erase(it);
  };

  for (std::size_t r = 0; r < requests; ++r) {
    const std::vector<BlockHash>& hashes = trace.requests[r].hashes;
    // The jobs of two requests ago used this half of the GPU blocks: they must be done.
    std::vector<JobId>& jobs = jobs_of_half[r % 2];
    for (JobId job : jobs) {
      if (running.contains(job)) finished(offloader->wait(job));
    }
    jobs.clear();
    const std::size_t half = (r % 2) * longest;
    const std::size_t hit  = offloader->lookup(hashes).value_or(0);
    offloader->touch(hashes);
    std::vector<BlockId> blocks(hashes.size());
    for (std::size_t i = 0; i < blocks.size(); ++i)
      blocks[i] = static_cast<BlockId>(half + i);
    // Poison the load destinations, fill the store sources with each hash's pattern.
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      std::byte* block = gpu.data() + (half + i) * kChunk;
      if (i < hit) {
        std::memset(block, 0xA5, kChunk);
      } else {
        fill(block, hashes[i]);
      }
    }
    if (hit > 0) {
      const std::span<const BlockHash> prefix{hashes.data(), hit};
      const JobId job = offloader->load(prefix, std::span{blocks}.first(hit));
      loads.emplace(job,
                    Load{{prefix.begin(), prefix.end()}, {blocks.begin(), blocks.begin() + hit}});
      running.insert(job);
      jobs.push_back(job);
    }
    // The store may evict while this load and the previous request's jobs still run.
    const StoreTicket ticket =
        offloader->store(std::span{hashes}.subspan(hit), std::span{blocks}.subspan(hit));
    stored += ticket.stored.size();
    if (ticket.outcome == StoreTicket::Outcome::kSubmitted) {
      running.insert(ticket.job);
      jobs.push_back(ticket.job);
    }
    for (const FinishedJob& done : offloader->poll())
      finished(done);
  }
  for (const FinishedJob& done : offloader->wait_all())
    finished(done);

  EXPECT_EQ(failures, 0U);
  EXPECT_GT(verified, 1000U) << "too few hits to exercise loads";
  EXPECT_GT(stored, slots) << "the host slots never had to be reused";
  const ManagerStats st = offloader->manager().stats();
  EXPECT_GT(st.evictions, 0U);
  EXPECT_EQ(st.pending, 0U);
  EXPECT_EQ(st.pinned, 0U);
}

INSTANTIATE_TEST_SUITE_P(Specs,
                         OffloaderTrace,
                         ::testing::Values("lru", "density", "arc+filter:threshold=2"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace_if(
                               name.begin(),
                               name.end(),
                               [](char c) { return !std::isalnum(c); },
                               '_');
                           return name;
                         });

}  // namespace
}  // namespace kvoffload
