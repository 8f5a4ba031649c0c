// End to end: the Mooncake trace through an Offloader over the host engine, moving real bytes.
// Every GPU block written for a hash carries a pattern derived from the hash; every load must
// bring back exactly that pattern, while stores evict (and reuse host slots) beside loads that
// are still reading theirs. A slot handed out twice, a pin released early or a store confirmed
// before its bytes landed shows up here as a wrong byte.
#include "replay/trace.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/offloader.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <map>
#include <ostream>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kvoffload {
namespace {

using transfer::HostSlots;
using transfer::JobId;
using transfer::JobState;
using transfer::JobStatus;
using transfer::KvLayout;
using transfer::KvTensor;
using transfer::Method;
using transfer::TransferEngine;
using transfer::TransferRequest;

constexpr std::size_t kChunk = 64;  // bytes of one block: small, so the trace runs fast

std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// The bytes of GPU block `sub` (of k) of `hash`.
void fill(std::byte* block, BlockHash hash, std::size_t sub) {
  for (std::size_t i = 0; i < kChunk; i += 8) {
    const std::uint64_t word = mix((hash * 8 + sub) * 64 + i);
    std::memcpy(block + i, &word, 8);
  }
}

bool holds(const std::byte* block, BlockHash hash, std::size_t sub) {
  std::byte expected[kChunk];
  fill(expected, hash, sub);
  return std::memcmp(block, expected, kChunk) == 0;
}

// Copies as late as the contract allows: a job's bytes move only when it is polled (and then
// only half the time, with a fixed seed, so later jobs often finish first) or waited for,
// through a host engine. A pin dropped before its load is reported then lets a store overwrite
// the slot before the load reads it: with density this fails every run (checked by planting
// it). A store confirmed early is the scripted-engine tests' to catch: here a block is rarely
// hit again within the two requests its store can stay queued.
class LateEngine final : public TransferEngine {
 public:
  explicit LateEngine(std::unique_ptr<TransferEngine> inner) : inner_{std::move(inner)} {}

  JobId submit(const TransferRequest& request) override {
    queued_.emplace(next_, request);
    return next_++;
  }
  JobStatus poll(JobId id) override {
    if (queued_.contains(id) && coin_() % 2 == 0) return {JobState::kPending, Method::kKernel, {}};
    return wait(id);
  }
  JobStatus wait(JobId id) override {
    const auto it = queued_.find(id);
    KVO_EXPECTS(it != queued_.end(), "job " + std::to_string(id) + " is unknown or retired");
    const JobStatus status = inner_->wait(inner_->submit(it->second));
    queued_.erase(it);
    return status;
  }
  std::vector<cudaEvent_t> completion_events(JobId) override { return {}; }
  bool is_host_fallback() const noexcept override { return true; }
  std::string description() const override { return "late " + inner_->description(); }
  const KvLayout& layout() const noexcept override { return inner_->layout(); }
  const HostSlots& host_slots() const noexcept override { return inner_->host_slots(); }

 private:
  std::unique_ptr<TransferEngine> inner_;
  std::map<JobId, TransferRequest> queued_;
  std::minstd_rand coin_{7};
  JobId next_{1};
};

struct TraceCase {
  const char* spec;
  bool late;      // LateEngine instead of the host engine's worker threads
  std::size_t k;  // GPU blocks per host slot
};
// What a failure prints as GetParam(), instead of the struct's bytes.
void PrintTo(const TraceCase& c, std::ostream* out) {
  *out << c.spec << (c.late ? ", late engine" : ", host engine threads") << ", k = " << c.k;
}

class OffloaderTrace : public ::testing::TestWithParam<TraceCase> {};

TEST_P(OffloaderTrace, EveryLoadedBlockHoldsItsHashsBytes) {
  const replay::Trace trace =
      replay::load_trace(KVOFFLOAD_SOURCE_DIR "/data/traces/mooncake/conversation_trace.jsonl");
  const std::size_t requests = std::min<std::size_t>(trace.requests.size(), 4000);
  std::size_t longest        = 0;
  for (std::size_t r = 0; r < requests; ++r)
    longest = std::max(longest, trace.requests[r].hashes.size());

  // "GPU" blocks: a request's k blocks per hash at [0, n k) while the previous request's jobs
  // may still use [longest k, longest k + n k): two halves, alternating.
  const std::size_t k          = GetParam().k;
  const std::size_t gpu_blocks = 2 * longest * k;
  std::vector<std::byte> gpu(gpu_blocks * kChunk);
  const KvLayout layout{{KvTensor{gpu.data(), kChunk, kChunk, 0}}, gpu_blocks, k};
  const std::size_t slots = 1500;  // about 2% of the distinct blocks in the slice
  std::vector<std::byte> host(slots * k * kChunk);
  const HostSlots host_slots{host.data(), k * kChunk, slots};
  std::unique_ptr<TransferEngine> engine =
      transfer::make_host_transfer_engine(layout, host_slots, {.host_threads = 3});
  if (GetParam().late) engine = std::make_unique<LateEngine>(std::move(engine));
  auto offloader =
      std::make_unique<Offloader>(make_manager(GetParam().spec, slots, kChunk), std::move(engine));

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
    EXPECT_EQ(done.gpu_blocks, load.blocks) << "job " << done.job;
    for (std::size_t i = 0; i < load.hashes.size(); ++i) {
      for (std::size_t sub = 0; sub < k; ++sub) {
        const BlockId b        = load.blocks[i * k + sub];
        const std::byte* block = gpu.data() + static_cast<std::size_t>(b) * kChunk;
        EXPECT_TRUE(holds(block, load.hashes[i], sub))
            << "GPU block " << b << " does not hold part " << sub << " of hash " << load.hashes[i];
      }
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
    const std::size_t half = (r % 2) * longest * k;
    const std::size_t hit  = offloader->lookup(hashes).value_or(0);
    offloader->touch(hashes);
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
    if (const auto job = offloader->load(prefix, std::span{blocks}.first(hit * k))) {
      loads.emplace(*job,
                    Load{{prefix.begin(), prefix.end()},
                         {blocks.begin(), blocks.begin() + static_cast<std::ptrdiff_t>(hit * k)}});
      running.insert(*job);
      jobs.push_back(*job);
    }
    // The store may evict while this load and the previous request's jobs still run.
    const StoreTicket ticket =
        offloader->store(std::span{hashes}.subspan(hit), std::span{blocks}.subspan(hit * k));
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

INSTANTIATE_TEST_SUITE_P(
    Specs,
    OffloaderTrace,
    ::testing::Values(TraceCase{"lru", false, 1},
                      TraceCase{"density", false, 1},
                      TraceCase{"arc+filter:threshold=2", false, 1},
                      TraceCase{"lru+sharded:shards=4", false, 1},
                      TraceCase{"density", false, 2},
                      TraceCase{"lru", true, 1},
                      TraceCase{"density", true, 1},
                      TraceCase{"density", true, 2}),
    [](const auto& info) {
      std::string name = info.param.spec;
      std::replace_if(
          name.begin(), name.end(), [](char c) { return !std::isalnum(c); }, '_');
      return name + (info.param.late ? "_late" : "_threads") + "_k" + std::to_string(info.param.k);
    });

}  // namespace
}  // namespace kvoffload
