#include "disk_tier.hpp"

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

Offloader::Offloader(std::unique_ptr<TieredOffloadingManager> manager,
                     std::unique_ptr<transfer::TransferEngine> engine,
                     std::unique_ptr<storage::BlockStore> store,
                     std::size_t max_disk_jobs,
                     std::shared_ptr<void> host_memory)
    : host_memory_{std::move(host_memory)}, engine_{std::move(engine)} {
  KVO_EXPECTS(manager != nullptr, "offloader: the manager is null");
  KVO_EXPECTS(engine_ != nullptr, "offloader: the transfer engine is null");
  tiered_  = manager.get();
  manager_ = std::move(manager);
  disk_    = std::make_unique<detail::DiskTier>(*tiered_,
                                             std::move(store),
                                             engine_->host_slots(),
                                             engine_->layout().host_slot_bytes(),
                                             max_disk_jobs);
}

Offloader::~Offloader() {
  // The engine's jobs read and write memory the caller may free after us: let them finish.
  // Errors are swallowed (a destructor cannot report them); the manager goes with us. Deferred
  // stores never reached the engine; the disk tier waits for its own jobs.
  for (auto& [id, job] : jobs_) {
    if (job.status || job.deferred) continue;  // reported already, or never submitted
    try {
      (void)engine_->wait(job.engine_job);
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

void Offloader::run_plans(std::vector<TransferPlan> plans) {
  disk_->execute(plans);
  start_deferred();
}

void Offloader::start_deferred() {
  for (auto& [id, job] : jobs_) {
    if (!job.deferred || disk_->reads_host_slots(job.deferred->host_slots)) continue;
    try {
      job.engine_job = engine_->submit(*job.deferred);
    } catch (const std::exception& e) {
      // Reported as a failed store by the next poll() or wait(): it is abandoned then.
      job.status = JobStatus{JobState::kFailed, transfer::Method::kAuto, e.what()};
    }
    job.deferred.reset();
  }
}

void Offloader::start_now(Job& job) {
  while (job.deferred) {
    const bool progressed = disk_->progress(/*wait_for_one=*/true);
    start_deferred();
    KVO_EXPECTS(progressed || !job.deferred,
                "offloader: a deferred store waits for host slots no disk job will release");
  }
}

std::optional<std::size_t> Offloader::lookup(std::span<const BlockHash> hashes) {
  if (!disk_) return manager_->lookup(hashes);
  (void)disk_->progress(/*wait_for_one=*/false);  // a retry sees the blocks that came up
  start_deferred();
  const std::optional<std::size_t> ready = manager_->lookup(hashes);
  if (!ready) {
    ++lookups_deferred_;
    return std::nullopt;
  }
  const std::span<const BlockHash> prefix = hashes.first(*ready);
  const auto tiers                        = tiered_->lookup_tiers(prefix);
  const auto first_on_disk                = static_cast<std::size_t>(
      std::find_if(tiers.begin(), tiers.end(), [](const auto& t) { return t && *t > 0; }) -
      tiers.begin());
  if (first_on_disk == prefix.size()) return ready;
  // A busy disk would abandon the reads, and the demotions that make their room would drop
  // host blocks for nothing: answer the host part now.
  if (!disk_->accepting()) {
    ++lookups_disk_busy_;
    return first_on_disk;
  }
  std::vector<BlockHash> on_disk;
  for (std::size_t i = first_on_disk; i < prefix.size(); ++i)
    if (tiers[i] && *tiers[i] > 0) on_disk.push_back(prefix[i]);
  tiered_->hint_prefetch(on_disk);
  // The host part of the prefix is not demoted to make room for the rest.
  run_plans(tiered_->process_prefetch(prefix.first(first_on_disk)));
  // Only a block on its way up is worth waiting for; one that cannot move now is a miss.
  if (tiered_->lookup_tiers(prefix.subspan(first_on_disk, 1)).front()) return first_on_disk;
  ++lookups_deferred_;
  return std::nullopt;
}

void Offloader::prefetch(std::span<const BlockHash> hashes) {
  if (!disk_) return;
  tiered_->hint_prefetch(hashes);
  if (disk_->accepting()) run_plans(tiered_->process_prefetch());  // else a later call's
}

void Offloader::touch(std::span<const BlockHash> hashes) {
  manager_->touch(hashes);
  if (disk_) run_plans(tiered_->take_transfer_plans());  // promotions of blocks hit on disk
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
  const JobId id = next_job_;
  job.started    = std::chrono::steady_clock::now();
  // A store into host slots a demotion still reads waits for it (submitted by start_deferred).
  const bool wait_for_disk = disk_ && request.direction == Direction::kStore &&
                             disk_->reads_host_slots(request.host_slots);
  if (wait_for_disk) {
    try {
      job.deferred = request;
      jobs_.try_emplace(id, std::move(job));
    } catch (...) {
      roll_back(job);
      throw;
    }
    ++next_job_;
    ++stores_deferred_;
    return id;
  }
  try {
    job.engine_job = engine_->submit(request);
  } catch (...) {
    roll_back(job);
    throw;
  }
  try {
    jobs_.try_emplace(id, std::move(job));  // a node allocation: the one thing left to fail
  } catch (...) {
    try {
      (void)engine_->wait(job.engine_job);  // untracked, it must not outlive this call
    } catch (...) {  // NOLINT(bugprone-empty-catch): the first error is the one to throw
    }
    roll_back(job);
    throw;
  }
  ++next_job_;
  return id;
}

std::optional<JobId> Offloader::load(std::span<const BlockHash> hashes,
                                     std::span<const BlockId> gpu_blocks,
                                     const TransferOptions& options) {
  check_gpu_blocks("a load", hashes.size(), gpu_blocks.size());
  if (hashes.empty()) return std::nullopt;
  if (disk_) {
    const auto tiers = tiered_->lookup_tiers(hashes);
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      KVO_EXPECTS(!tiers[i] || *tiers[i] == 0,
                  "offloader: block hash " + std::to_string(hashes[i]) +
                      " is on disk; lookup() brings it up to the host, load it once lookup "
                      "counts it");
    }
  }
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
  if (disk_) {
    try {
      // The demotions that make room read their host slots before the store writes them.
      run_plans(tiered_->take_transfer_plans());
    } catch (...) {
      if (prepared) manager_->complete_store(prepared->block_hashes_to_store, /*success=*/false);
      throw;
    }
  }
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
  const bool ok = job.status->state == JobState::kDone;
  if (job.direction == Direction::kStore) {
    manager_->complete_store(job.hashes, ok);
  } else {
    manager_->complete_load(job.hashes);
  }
  job.settled = true;
  (job.direction == Direction::kStore ? store_latency_ : load_latency_)
      .record(std::chrono::steady_clock::now() - job.started);
  if (ok) {
    const std::uint64_t bytes = job.hashes.size() * engine_->layout().host_slot_bytes();
    (job.direction == Direction::kStore ? bytes_stored_ : bytes_loaded_) += bytes;
  }
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
  if (disk_) {
    (void)disk_->progress(/*wait_for_one=*/false);
    start_deferred();
  }
  for (auto& [id, job] : jobs_) {
    if (job.deferred) continue;
    if (!job.status) {
      JobStatus status = engine_->poll(job.engine_job);
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
  start_now(job);
  if (!job.status) job.status = engine_->wait(job.engine_job);
  settle(job);
  FinishedJob done = report(id, job);
  jobs_.erase(it);
  return done;
}

std::vector<FinishedJob> Offloader::wait_all() {
  for (auto& [id, job] : jobs_) {
    start_now(job);
    if (!job.status) job.status = engine_->wait(job.engine_job);
    settle(job);
  }
  if (disk_) {
    while (disk_->jobs_in_flight() > 0) {
      KVO_EXPECTS(disk_->progress(/*wait_for_one=*/true),
                  "offloader: disk jobs wait for host slots no job will release");
    }
  }
  return take_settled();
}

std::vector<cudaEvent_t> Offloader::completion_events(JobId id) {
  const auto it = jobs_.find(id);
  KVO_EXPECTS(it != jobs_.end() && !it->second.status,
              "offloader: job " + std::to_string(id) + " is not running (unknown or reported)");
  start_now(it->second);
  KVO_EXPECTS(!it->second.status,
              "offloader: job " + std::to_string(id) + " failed when it was submitted (" +
                  it->second.status->error + "); poll() or wait() reports it");
  return engine_->completion_events(it->second.engine_job);
}

const storage::BlockStore* Offloader::block_store() const noexcept {
  return disk_ ? &disk_->store() : nullptr;
}

OffloaderStats Offloader::stats() const {
  OffloaderStats s;
  if (tiered_ != nullptr) {
    const TieredStats t = tiered_->tiered_stats();
    for (const TieredStats::Tier& tier : t.tiers)
      s.tiers.push_back({tier.medium, tier.capacity, tier.ready, tier.pending, tier.free_slots});
  } else {
    const ManagerStats m = manager_->stats();
    s.tiers.push_back({Medium::kCpu, m.capacity, m.ready, m.pending, m.free_slots});
  }
  if (disk_) disk_->add_to(s);
  s.bytes_stored      = bytes_stored_;
  s.bytes_loaded      = bytes_loaded_;
  s.lookups_deferred  = lookups_deferred_;
  s.lookups_disk_busy = lookups_disk_busy_;
  s.stores_deferred   = stores_deferred_;
  s.store_latency     = store_latency_;
  s.load_latency      = load_latency_;
  return s;
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
                  "' is tiered; without a disk tier an Offloader runs one host tier (use a "
                  "single-tier policy, or the make_offloader overload with DiskTierOptions)");
  return manager;
}

/// The tiered options of a host + disk spec: "tiered" with anything but sizes and media.
TieredOptions host_and_disk_options(std::string_view policy_spec) {
  const ManagerConfig config = parse_manager_spec(policy_spec);
  const std::string spec{policy_spec};
  KVO_EXPECTS(config.policy == "tiered",
              "offloader: policy '" + spec +
                  "' is single-tier; a host + disk Offloader needs "
                  "'tiered' (e.g. 'tiered' or 'tiered:promote=2')");
  KVO_EXPECTS(config.filter.store_threshold == 0 && config.concurrency.mode == Concurrency::kNone,
              "offloader: spec '" + spec +
                  "' has decorators; a host + disk Offloader takes the "
                  "tiered manager as it is");
  const TieredOptions& t = config.tiered;
  const TieredOptions defaults{};
  const bool sized = t.hot.fraction != defaults.hot.fraction || t.hot.blocks != 0 ||
                     t.warm.fraction != defaults.warm.fraction || t.warm.blocks != 0 ||
                     t.cold != defaults.cold || t.hot_medium != defaults.hot_medium ||
                     t.warm_medium != defaults.warm_medium || t.cold_medium != defaults.cold_medium;
  KVO_EXPECTS(!sized,
              "offloader: spec '" + spec +
                  "' sizes its tiers; a host + disk Offloader sizes the "
                  "host tier by host_slots and the disk tier by the store's capacity_bytes (drop "
                  "hot, warm, cold and the media)");
  KVO_EXPECTS(!t.instant_transfers,
              "offloader: spec '" + spec + "' has instant=1; the Offloader runs the plans");
  return t;
}

struct OwnedHost {
  std::shared_ptr<transfer::PinnedHostPool> pool;
  std::unique_ptr<transfer::TransferEngine> engine;
};

OwnedHost owned_host(const transfer::KvLayout& layout,
                     std::size_t host_slots,
                     const transfer::TransferEngineOptions& options) {
  const std::size_t slot_bytes = layout.host_slot_bytes();
  const bool cuda              = !options.force_host && transfer::cuda_device_available();
  auto pool                    = std::make_shared<transfer::PinnedHostPool>(
      transfer::PinnedHostPoolOptions{.bytes              = host_slots * slot_bytes,
                                                         .align_bytes        = slot_bytes,
                                                         .register_with_cuda = cuda,
                                                         .device             = options.device});
  const transfer::HostSlots host{pool->data(), slot_bytes, host_slots};
  auto engine = transfer::make_transfer_engine(layout, host, options);
  return {std::move(pool), std::move(engine)};
}

void check_host_slots(std::size_t host_slots, std::size_t slot_bytes) {
  KVO_EXPECTS(host_slots > 0, "offloader: host_slots is 0");
  KVO_EXPECTS(host_slots <= std::numeric_limits<std::size_t>::max() / slot_bytes,
              "offloader: " + std::to_string(host_slots) + " host slots of " +
                  std::to_string(slot_bytes) + " bytes overflow the address space");
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
  const std::size_t slot_bytes = layout.host_slot_bytes();
  check_host_slots(host_slots, slot_bytes);
  auto manager   = host_tier_manager(policy_spec, host_slots, slot_bytes);  // spec errors first
  OwnedHost host = owned_host(layout, host_slots, options);
  return std::make_unique<Offloader>(
      std::move(manager), std::move(host.engine), std::move(host.pool));
}

std::unique_ptr<Offloader> make_offloader(std::string_view policy_spec,
                                          const transfer::KvLayout& layout,
                                          std::size_t host_slots,
                                          const DiskTierOptions& disk,
                                          const transfer::TransferEngineOptions& options) {
  const std::size_t slot_bytes = layout.host_slot_bytes();
  check_host_slots(host_slots, slot_bytes);
  const TieredOptions tiered = host_and_disk_options(policy_spec);  // spec errors first
  storage::BlockStoreOptions store_options = disk.store;
  store_options.block_bytes                = slot_bytes;
  auto store                               = storage::make_block_store(store_options);
  auto manager                             = std::make_unique<TieredOffloadingManager>(
      TieredConfig{.tiers = {{Medium::kCpu, host_slots}, {Medium::kDisk, store->num_slots()}},
                                               .promote_after            = tiered.promote_after,
                                               .lookahead                = tiered.lookahead,
                                               .instant_transfers        = false,
                                               .stores_to_tier_zero_only = true,
                                               .block_size               = slot_bytes,
                                               .enable_events            = disk.enable_events});
  OwnedHost host = owned_host(layout, host_slots, options);
  return std::make_unique<Offloader>(std::move(manager),
                                     std::move(host.engine),
                                     std::move(store),
                                     disk.max_disk_jobs,
                                     std::move(host.pool));
}

}  // namespace kvoffload
