#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/offloader.hpp>
#include <kvoffload/transfer/pinned_host_pool.hpp>

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

namespace kvoffload {

using transfer::Direction;
using transfer::JobId;
using transfer::JobState;
using transfer::JobStatus;
using transfer::TransferRequest;

Offloader::Offloader(std::unique_ptr<OffloadingManager> manager,
                     std::unique_ptr<transfer::TransferEngine> engine,
                     std::shared_ptr<void> host_memory)
    : host_memory_{std::move(host_memory)},
      manager_{std::move(manager)},
      engine_{std::move(engine)} {
  KVO_EXPECTS(manager_ != nullptr, "offloader: the manager is null");
  KVO_EXPECTS(engine_ != nullptr, "offloader: the transfer engine is null");
  KVO_EXPECTS(!manager_->plans_transfers(),
              "offloader: the manager moves blocks between tiers of its own (tiered); an "
              "Offloader drives one host tier");
  const std::size_t slots      = manager_->stats().capacity;
  const std::size_t host_slots = engine_->host_slots().num_slots;
  KVO_EXPECTS(slots <= host_slots,
              "offloader: the manager has " + std::to_string(slots) +
                  " slots but the engine only " + std::to_string(host_slots) + " host slots");
}

Offloader::~Offloader() {
  // The engine's jobs read and write memory the caller may free after us: let them finish.
  // Errors are swallowed (a destructor cannot report them); the manager goes with us.
  for (auto& [id, job] : jobs_) {
    if (job.status) continue;  // the engine already reported it
    try {
      (void)engine_->wait(id);
    } catch (...) {  // NOLINT(bugprone-empty-catch): nothing to report to
    }
  }
}

void Offloader::check_gpu_blocks(const char* what,
                                 std::size_t hashes,
                                 std::size_t gpu_blocks) const {
  const std::size_t k = engine_->layout().gpu_blocks_per_slot();
  KVO_EXPECTS(gpu_blocks == hashes * k,
              std::string{"offloader: "} + what + " of " + std::to_string(hashes) +
                  " hashes needs " + std::to_string(hashes * k) + " GPU blocks (" +
                  std::to_string(k) + " per hash), got " + std::to_string(gpu_blocks));
}

std::optional<std::size_t> Offloader::lookup(std::span<const BlockHash> hashes) {
  return manager_->lookup(hashes);
}

void Offloader::touch(std::span<const BlockHash> hashes) {
  manager_->touch(hashes);
}

TransferRequest Offloader::request(Direction direction, const TransferOptions& options) const {
  return TransferRequest{
      .direction        = direction,
      .gpu_blocks       = {},
      .host_slots       = {},
      .method           = options.method,
      .sm_budget        = options.sm_budget,
      .gpu_busy         = options.gpu_busy,
      .wait_event       = options.wait_event,
      .per_layer_events = direction == Direction::kLoad && options.per_layer_events};
}

void Offloader::roll_back(const Job& job) {
  if (job.direction == Direction::kStore) {
    manager_->complete_store(job.hashes, /*success=*/false);  // nothing stays pending
  } else {
    manager_->complete_load(job.hashes);  // drop the pins again
  }
}

JobId Offloader::submit(const TransferRequest& request, Job job) {
  JobId id = 0;
  try {
    id = engine_->submit(request);
  } catch (...) {
    roll_back(job);
    throw;
  }
  try {
    jobs_.try_emplace(id, std::move(job));  // a node allocation: the one thing left to fail
  } catch (...) {
    try {
      (void)engine_->wait(id);  // untracked, it must not outlive this call
    } catch (...) {             // NOLINT(bugprone-empty-catch): the first error is the one to throw
    }
    roll_back(job);
    throw;
  }
  return id;
}

std::optional<JobId> Offloader::load(std::span<const BlockHash> hashes,
                                     std::span<const BlockId> gpu_blocks,
                                     const TransferOptions& options) {
  check_gpu_blocks("a load", hashes.size(), gpu_blocks.size());
  if (hashes.empty()) return std::nullopt;
  // Everything that allocates comes before the pins, so a failure leaves none behind.
  Job job;
  job.direction = Direction::kLoad;
  job.hashes.assign(hashes.begin(), hashes.end());
  job.gpu_blocks.assign(gpu_blocks.begin(), gpu_blocks.end());
  TransferRequest req = request(Direction::kLoad, options);
  req.gpu_blocks      = job.gpu_blocks;
  LoadStoreSpec spec  = manager_->prepare_load(hashes);  // pins; throws naming an unready hash
  req.host_slots      = std::move(spec.block_ids);
  return submit(req, std::move(job));
}

StoreTicket Offloader::store(std::span<const BlockHash> hashes,
                             std::span<const BlockId> gpu_blocks,
                             const TransferOptions& options) {
  check_gpu_blocks("a store", hashes.size(), gpu_blocks.size());
  StoreTicket ticket;
  std::optional<PrepareStoreOutput> prepared = manager_->prepare_store(hashes);
  if (!prepared) {
    ticket.outcome = StoreTicket::Outcome::kNoRoom;
    return ticket;
  }
  ticket.stored  = std::move(prepared->block_hashes_to_store);
  ticket.evicted = std::move(prepared->block_hashes_evicted);
  if (ticket.stored.empty()) {
    ticket.outcome = StoreTicket::Outcome::kNothingToStore;
    return ticket;
  }

  Job job;  // direction: kStore
  TransferRequest req = request(Direction::kStore, options);
  try {
    job.hashes = ticket.stored;
    // The stored hashes are a subsequence of the call's (first occurrences, in order): match
    // each to its position to find its GPU blocks.
    const std::size_t k = engine_->layout().gpu_blocks_per_slot();
    job.gpu_blocks.reserve(ticket.stored.size() * k);
    std::size_t at = 0;
    for (BlockHash hash : ticket.stored) {
      while (at < hashes.size() && hashes[at] != hash)
        ++at;
      KVO_EXPECTS(at < hashes.size(),
                  "offloader: the manager stored hash " + std::to_string(hash) +
                      ", which is not in the call in order");
      job.gpu_blocks.insert(job.gpu_blocks.end(),
                            gpu_blocks.begin() + static_cast<std::ptrdiff_t>(at * k),
                            gpu_blocks.begin() + static_cast<std::ptrdiff_t>((at + 1) * k));
    }
    req.gpu_blocks = job.gpu_blocks;
    req.host_slots = std::move(prepared->store_spec.block_ids);
  } catch (...) {
    manager_->complete_store(ticket.stored, /*success=*/false);
    throw;
  }
  ticket.job     = submit(req, std::move(job));
  ticket.outcome = StoreTicket::Outcome::kSubmitted;
  return ticket;
}

void Offloader::settle(Job& job) {
  if (job.settled) return;
  if (job.direction == Direction::kStore) {
    manager_->complete_store(job.hashes, job.status->state == JobState::kDone);
  } else {
    manager_->complete_load(job.hashes);
  }
  job.settled = true;
}

FinishedJob Offloader::report(JobId id, Job& job) {
  return FinishedJob{.job        = id,
                     .direction  = job.direction,
                     .method     = job.status->method,
                     .ok         = job.status->state == JobState::kDone,
                     .error      = std::move(job.status->error),
                     .hashes     = std::move(job.hashes),
                     .gpu_blocks = std::move(job.gpu_blocks)};
}

std::vector<FinishedJob> Offloader::take_settled() {
  const auto n = static_cast<std::size_t>(
      std::count_if(jobs_.begin(), jobs_.end(), [](const auto& j) { return j.second.settled; }));
  std::vector<FinishedJob> done;
  done.reserve(n);  // below, nothing throws: a job leaves the map only into `done`
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (!it->second.settled) {
      ++it;
      continue;
    }
    done.push_back(report(it->first, it->second));
    it = jobs_.erase(it);
  }
  return done;
}

std::vector<FinishedJob> Offloader::poll() {
  for (auto& [id, job] : jobs_) {
    if (!job.status) {
      JobStatus status = engine_->poll(id);
      if (status.state == JobState::kPending) continue;
      job.status = std::move(status);
    }
    settle(job);  // may throw: the job keeps its status and is settled by a later call
  }
  return take_settled();
}

FinishedJob Offloader::wait(JobId id) {
  auto it = jobs_.find(id);
  KVO_EXPECTS(it != jobs_.end(),
              "offloader: job " + std::to_string(id) + " is not running (unknown or reported)");
  Job& job = it->second;
  if (!job.status) job.status = engine_->wait(id);
  settle(job);
  FinishedJob done = report(id, job);
  jobs_.erase(it);
  return done;
}

std::vector<FinishedJob> Offloader::wait_all() {
  for (auto& [id, job] : jobs_) {
    if (!job.status) job.status = engine_->wait(id);
    settle(job);
  }
  return take_settled();
}

std::vector<cudaEvent_t> Offloader::completion_events(JobId id) {
  const auto it = jobs_.find(id);
  KVO_EXPECTS(it != jobs_.end() && !it->second.status,
              "offloader: job " + std::to_string(id) + " is not running (unknown or reported)");
  return engine_->completion_events(id);
}

namespace {

std::unique_ptr<OffloadingManager> host_tier_manager(std::string_view policy_spec,
                                                     std::size_t slots,
                                                     std::size_t slot_bytes) {
  ManagerConfig config = parse_manager_spec(policy_spec);
  config.num_blocks    = slots;
  config.block_size    = slot_bytes;
  config.enable_events = false;  // nobody would take them: build the manager to have them
  auto manager         = make_manager(config);
  // The constructor refuses it too; asking here names the spec, before any memory is pinned.
  KVO_EXPECTS(!manager->plans_transfers(),
              "offloader: policy '" + std::string{policy_spec} +
                  "' is tiered; an Offloader runs one host tier (use a single-tier policy)");
  return manager;
}

}  // namespace

std::unique_ptr<Offloader> make_offloader(std::string_view policy_spec,
                                          const transfer::KvLayout& layout,
                                          const transfer::HostSlots& host,
                                          const transfer::TransferEngineOptions& options) {
  auto manager = host_tier_manager(policy_spec, host.num_slots, layout.host_slot_bytes());
  return std::make_unique<Offloader>(std::move(manager),
                                     transfer::make_transfer_engine(layout, host, options));
}

std::unique_ptr<Offloader> make_offloader(std::string_view policy_spec,
                                          const transfer::KvLayout& layout,
                                          std::size_t host_slots,
                                          const transfer::TransferEngineOptions& options) {
  KVO_EXPECTS(host_slots > 0, "offloader: host_slots is 0");
  const std::size_t slot_bytes = layout.host_slot_bytes();
  KVO_EXPECTS(host_slots <= std::numeric_limits<std::size_t>::max() / slot_bytes,
              "offloader: " + std::to_string(host_slots) + " host slots of " +
                  std::to_string(slot_bytes) + " bytes overflow the address space");
  auto manager    = host_tier_manager(policy_spec, host_slots, slot_bytes);  // spec errors first
  const bool cuda = !options.force_host && transfer::cuda_device_available();
  auto pool       = std::make_shared<transfer::PinnedHostPool>(
      transfer::PinnedHostPoolOptions{.bytes              = host_slots * slot_bytes,
                                            .align_bytes        = slot_bytes,
                                            .register_with_cuda = cuda,
                                            .device             = options.device});
  const transfer::HostSlots host{pool->data(), slot_bytes, host_slots};
  auto engine = transfer::make_transfer_engine(layout, host, options);
  return std::make_unique<Offloader>(std::move(manager), std::move(engine), std::move(pool));
}

}  // namespace kvoffload
