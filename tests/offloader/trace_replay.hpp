// The Mooncake trace through an Offloader, moving real bytes, every loaded byte checked: the
// machinery of offloader_trace_test.cpp, shared with the host + disk tests. Every GPU block
// written for a hash carries a pattern derived from the hash; every load must bring back exactly
// that pattern, while stores evict (and reuse host slots) beside loads still reading theirs.
#pragma once

#include "replay/trace.hpp"

#include <kvoffload/offloader.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kvoffload::testing {

constexpr std::size_t kChunk = 64;  // bytes of one block: small, so the trace runs fast

inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// The bytes of GPU block `sub` (of k) of `hash`.
inline void fill(std::byte* block, BlockHash hash, std::size_t sub) {
  for (std::size_t i = 0; i < kChunk; i += 8) {
    const std::uint64_t word = mix((hash * 8 + sub) * 64 + i);
    std::memcpy(block + i, &word, 8);
  }
}

inline bool holds(const std::byte* block, BlockHash hash, std::size_t sub) {
  std::byte expected[kChunk];
  fill(expected, hash, sub);
  return std::memcmp(block, expected, kChunk) == 0;
}

inline std::size_t longest_request(const replay::Trace& trace, std::size_t requests) {
  std::size_t longest = 0;
  for (std::size_t r = 0; r < requests; ++r)
    longest = std::max(longest, trace.requests[r].hashes.size());
  return longest;
}

struct TraceRun {
  std::size_t verified{0};          ///< loaded blocks whose every byte was checked
  std::size_t stored{0};            ///< blocks the stores wrote
  std::size_t failures{0};          ///< jobs reported failed
  std::size_t lookups{0}, hits{0};  ///< blocks looked up, blocks hit
  std::size_t deferred{0};          ///< lookups answered "retry later"
};

/**
 * Requests [first, first + count) of `trace` through `offloader`, whose layout is one tensor of
 * kChunk-byte blocks over `gpu`, k per host slot, with room for 2 * longest * k GPU blocks: a
 * request uses one half while the previous request's jobs may still use the other. A lookup
 * answered "retry later" is retried after a poll(), as a runtime's next step would.
 */
inline TraceRun replay_verified(Offloader& offloader,
                                std::vector<std::byte>& gpu,
                                std::size_t k,
                                const replay::Trace& trace,
                                std::size_t first,
                                std::size_t count,
                                std::size_t longest) {
  using transfer::JobId;
  TraceRun run;
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
    run.failures += done.ok ? 0 : 1;
    const auto it = loads.find(done.job);
    if (it == loads.end()) return;
    const Load& load = it->second;
    EXPECT_EQ(done.gpu_blocks, load.blocks) << "job " << done.job;
    for (std::size_t i = 0; i < load.hashes.size(); ++i) {
      for (std::size_t sub = 0; sub < k; ++sub) {
        const BlockId b        = load.blocks[i * k + sub];
        const std::byte* block = gpu.data() + static_cast<std::size_t>(b) * kChunk;
        EXPECT_TRUE(holds(block, load.hashes[i], sub))
            << "GPU block " << b << " does not hold part " << sub << " of hash " << load.hashes[i];
      }
      ++run.verified;
    }
    loads.erase(it);
  };

  for (std::size_t r = first; r < first + count; ++r) {
    const std::vector<BlockHash>& hashes = trace.requests[r].hashes;
    // The jobs of two requests ago used this half of the GPU blocks: they must be done.
    std::vector<JobId>& jobs = jobs_of_half[r % 2];
    for (JobId job : jobs) {
      if (running.contains(job)) finished(offloader.wait(job));
    }
    jobs.clear();
    const std::size_t half = (r % 2) * longest * k;
    // "Retry later" (a block on its way up from disk): a runtime's next steps, until it knows.
    std::optional<std::size_t> ready = offloader.lookup(hashes);
    for (; !ready; ready = offloader.lookup(hashes)) {
      ++run.deferred;
      for (const FinishedJob& done : offloader.poll())
        finished(done);
      std::this_thread::yield();
    }
    const std::size_t hit = *ready;
    run.hits += hit;
    run.lookups += hashes.size();
    offloader.touch(hashes);
    std::vector<BlockId> blocks(hashes.size() * k);
    for (std::size_t i = 0; i < blocks.size(); ++i)
      blocks[i] = static_cast<BlockId>(half + i);
    // Poison the load destinations, fill the store sources with each hash's pattern.
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      for (std::size_t sub = 0; sub < k; ++sub) {
        std::byte* block = gpu.data() + static_cast<std::size_t>(blocks[i * k + sub]) * kChunk;
        if (i < hit) {
          std::memset(block, 0xA5, kChunk);
        } else {
          fill(block, hashes[i], sub);
        }
      }
    }
    const std::span<const BlockHash> prefix{hashes.data(), hit};
    if (const auto job = offloader.load(prefix, std::span{blocks}.first(hit * k))) {
      loads.emplace(*job,
                    Load{{prefix.begin(), prefix.end()},
                         {blocks.begin(), blocks.begin() + static_cast<std::ptrdiff_t>(hit * k)}});
      running.insert(*job);
      jobs.push_back(*job);
    }
    // The store may evict while this load and the previous request's jobs still run.
    const StoreTicket ticket =
        offloader.store(std::span{hashes}.subspan(hit), std::span{blocks}.subspan(hit * k));
    run.stored += ticket.stored.size();
    if (ticket.outcome == StoreTicket::Outcome::kSubmitted) {
      running.insert(ticket.job);
      jobs.push_back(ticket.job);
    }
    for (const FinishedJob& done : offloader.poll())
      finished(done);
  }
  for (const FinishedJob& done : offloader.wait_all())
    finished(done);
  return run;
}

}  // namespace kvoffload::testing
