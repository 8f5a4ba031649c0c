// End to end: the Mooncake trace through an Offloader over the host engine, moving real bytes
// (trace_replay.hpp: every loaded byte checked). A slot handed out twice, a pin released early
// or a store confirmed before its bytes landed shows up here as a wrong byte.
#include "trace_replay.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/offloader.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kvoffload {
namespace {

using testing::kChunk;

using transfer::HostSlots;
using transfer::JobId;
using transfer::JobState;
using transfer::JobStatus;
using transfer::KvLayout;
using transfer::KvTensor;
using transfer::Method;
using transfer::TransferEngine;
using transfer::TransferRequest;

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
  const std::size_t longest  = testing::longest_request(trace, requests);

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

  const testing::TraceRun run =
      testing::replay_verified(*offloader, gpu, k, trace, 0, requests, longest);
  EXPECT_EQ(run.failures, 0U);
  EXPECT_GT(run.verified, 1000U) << "too few hits to exercise loads";
  EXPECT_GT(run.stored, slots) << "the host slots never had to be reused";
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
