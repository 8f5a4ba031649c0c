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
  const std::size_t slots      = manager_->stats().capacity;
  const std::size_t host_slots = engine_->host_slots().num_slots;
  KVO_EXPECTS(slots <= host_slots,
              "offloader: the manager has " + std::to_string(slots) +
                  " slots but the engine only " + std::to_string(host_slots) + " host slots");
}

Offloader::~Offloader() {
  // The engine's jobs read and write memory the caller may free after us: let them finish.
  // Errors are swallowed (a destructor cannot report them); the manager is told as usual.
  for (auto& [id, job] : jobs_) {
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

JobId Offloader::load(std::span<const BlockHash> hashes,
                      std::span<const BlockId> gpu_blocks,
                      const TransferOptions& options) {
  check_gpu_blocks("a load", hashes.size(), gpu_blocks.size());
  LoadStoreSpec spec = manager_->prepare_load(hashes);  // pins; throws naming an unready hash
  TransferRequest request{.direction        = Direction::kLoad,
                          .gpu_blocks       = {gpu_blocks.begin(), gpu_blocks.end()},
                          .host_slots       = std::move(spec.block_ids),
                          .method           = options.method,
                          .sm_budget        = options.sm_budget,
                          .gpu_busy         = options.gpu_busy,
                          .wait_event       = options.wait_event,
                          .per_layer_events = options.per_layer_events};
  JobId id = 0;
  try {
    id = engine_->submit(request);
  } catch (...) {
    manager_->complete_load(hashes);  // drop the pins again
    throw;
  }
  jobs_.emplace(id, Job{Direction::kLoad, {hashes.begin(), hashes.end()}});
  return id;
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

  // The stored hashes are a subsequence of the call's (first occurrences, in order): match
  // each to its position to find its GPU blocks.
  const std::size_t k = engine_->layout().gpu_blocks_per_slot();
  TransferRequest request{.direction        = Direction::kStore,
                          .gpu_blocks       = {},
                          .host_slots       = std::move(prepared->store_spec.block_ids),
                          .method           = options.method,
                          .sm_budget        = options.sm_budget,
                          .gpu_busy         = options.gpu_busy,
                          .wait_event       = options.wait_event,
                          .per_layer_events = false};
  try {
    request.gpu_blocks.reserve(ticket.stored.size() * k);
    std::size_t at = 0;
    for (BlockHash hash : ticket.stored) {
      while (at < hashes.size() && hashes[at] != hash)
        ++at;
      KVO_EXPECTS(at < hashes.size(),
                  "offloader: the manager stored hash " + std::to_string(hash) +
                      ", which is not in the call in order");
      request.gpu_blocks.insert(request.gpu_blocks.end(),
                                gpu_blocks.begin() + static_cast<std::ptrdiff_t>(at * k),
                                gpu_blocks.begin() + static_cast<std::ptrdiff_t>((at + 1) * k));
    }
    ticket.job = engine_->submit(request);
  } catch (...) {
    manager_->complete_store(ticket.stored, /*success=*/false);  // nothing stays pending
    throw;
  }
  jobs_.emplace(ticket.job, Job{Direction::kStore, ticket.stored});
  ticket.outcome = StoreTicket::Outcome::kSubmitted;
  return ticket;
}

FinishedJob Offloader::finish(JobId id, Job job, const JobStatus& status) {
  const bool ok = status.state == JobState::kDone;
  if (job.direction == Direction::kStore) {
    manager_->complete_store(job.hashes, ok);
  } else {
    manager_->complete_load(job.hashes);
  }
  return FinishedJob{.job       = id,
                     .direction = job.direction,
                     .method    = status.method,
                     .ok        = ok,
                     .error     = status.error,
                     .hashes    = std::move(job.hashes)};
}

std::vector<FinishedJob> Offloader::poll() {
  // Job ids grow with submission: report in id order, oldest first.
  std::vector<JobId> ids;
  ids.reserve(jobs_.size());
  for (const auto& [id, job] : jobs_)
    ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::vector<FinishedJob> done;
  for (JobId id : ids) {
    const JobStatus status = engine_->poll(id);
    if (status.state == JobState::kPending) continue;
    auto node = jobs_.extract(id);
    done.push_back(finish(id, std::move(node.mapped()), status));
  }
  return done;
}

FinishedJob Offloader::wait(JobId id) {
  auto it = jobs_.find(id);
  KVO_EXPECTS(it != jobs_.end(),
              "offloader: job " + std::to_string(id) + " is not running (unknown or reported)");
  const JobStatus status = engine_->wait(id);
  auto node              = jobs_.extract(it);
  return finish(id, std::move(node.mapped()), status);
}

std::vector<FinishedJob> Offloader::wait_all() {
  std::vector<JobId> ids;
  ids.reserve(jobs_.size());
  for (const auto& [id, job] : jobs_)
    ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::vector<FinishedJob> done;
  done.reserve(ids.size());
  for (JobId id : ids)
    done.push_back(wait(id));
  return done;
}

std::vector<cudaEvent_t> Offloader::completion_events(JobId id) {
  KVO_EXPECTS(jobs_.contains(id),
              "offloader: job " + std::to_string(id) + " is not running (unknown or reported)");
  return engine_->completion_events(id);
}

namespace {

std::unique_ptr<OffloadingManager> host_tier_manager(std::string_view policy_spec,
                                                     std::size_t slots,
                                                     std::size_t slot_bytes) {
  ManagerConfig config = parse_manager_spec(policy_spec);
  KVO_EXPECTS(config.policy != "tiered",
              "offloader: policy '" + std::string{policy_spec} +
                  "' is tiered; an Offloader runs one host tier (use a single-tier policy)");
  config.num_blocks    = slots;
  config.block_size    = slot_bytes;
  config.enable_events = false;  // nobody would take them: build the manager to have them
  return make_manager(config);
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
