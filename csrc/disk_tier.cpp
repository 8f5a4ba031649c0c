#include "disk_tier.hpp"

#include "transfer/nvtx.hpp"

#include <kvoffload/error.hpp>

#include <algorithm>
#include <string>
#include <unordered_set>
#include <utility>

namespace kvoffload::detail {

namespace {

constexpr std::uint32_t kHostTier = 0;
constexpr std::uint32_t kDiskTier = 1;

bool intersects(const std::vector<BlockId>& sorted, const std::vector<BlockId>& other) {
  return std::any_of(other.begin(), other.end(), [&](BlockId slot) {
    return std::binary_search(sorted.begin(), sorted.end(), slot);
  });
}

std::string plan_str(const TransferPlan& plan) {
  return "plan " + std::to_string(plan.id) + " (hash " + std::to_string(plan.hash) + ", tier " +
         std::to_string(plan.source_tier) + " slot " + std::to_string(plan.source_slot) +
         " -> tier " + std::to_string(plan.destination_tier) + " slot " +
         std::to_string(plan.destination_slot) + ")";
}

}  // namespace

DiskTier::DiskTier(TieredOffloadingManager& manager,
                   std::unique_ptr<storage::BlockStore> store,
                   const transfer::HostSlots& host,
                   std::size_t block_bytes,
                   std::size_t max_jobs)
    : manager_{manager},
      store_{std::move(store)},
      host_{host},
      block_bytes_{block_bytes},
      max_jobs_{max_jobs} {
  KVO_EXPECTS(store_ != nullptr, "offloader: the block store is null");
  KVO_EXPECTS(max_jobs_ > 0, "offloader: max_disk_jobs is 0 (at least one disk job is needed)");
  const TieredConfig& config = manager_.config();
  KVO_EXPECTS(config.tiers.size() == 2 && config.tiers[0].medium == Medium::kCpu &&
                  config.tiers[1].medium == Medium::kDisk,
              "offloader: a host + disk Offloader needs two tiers, cpu then disk; the manager "
              "has " +
                  std::to_string(config.tiers.size()));
  KVO_EXPECTS(config.stores_to_tier_zero_only,
              "offloader: the tiered manager must store to tier 0 only "
              "(stores_to_tier_zero_only): new blocks come from the GPU into host memory");
  KVO_EXPECTS(!config.instant_transfers,
              "offloader: the tiered manager confirms its own plans (instant_transfers); the "
              "Offloader runs them");
  KVO_EXPECTS(config.tiers[0].num_blocks <= host_.num_slots,
              "offloader: the host tier has " + std::to_string(config.tiers[0].num_blocks) +
                  " slots but the engine only " + std::to_string(host_.num_slots) + " host slots");
  KVO_EXPECTS(config.tiers[1].num_blocks <= store_->num_slots(),
              "offloader: the disk tier has " + std::to_string(config.tiers[1].num_blocks) +
                  " slots but the store only " + std::to_string(store_->num_slots()));
  KVO_EXPECTS(store_->block_bytes() == block_bytes_,
              "offloader: the store's blocks are " + std::to_string(store_->block_bytes()) +
                  " bytes but a host slot holds " + std::to_string(block_bytes_));
  store_->register_host_memory({host_.base, host_.slot_bytes * host_.num_slots});
  adopt_recovered();
}

DiskTier::~DiskTier() {
  for (const Job& job : jobs_) {
    if (!job.id) continue;
    try {
      (void)store_->wait(*job.id);
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor has nobody to tell
    }
  }
}

void DiskTier::adopt_recovered() {
  const std::size_t disk_slots = manager_.config().tiers[kDiskTier].num_blocks;
  std::vector<BlockHash> hashes;
  std::vector<BlockId> slots;
  std::unordered_set<BlockHash> seen;
  for (const storage::RecoveredBlock& block : store_->recovered()) {
    // A block promoted and demoted again has an older copy in another slot; a tier smaller
    // than the store leaves slots unused. Neither is the manager's: forget them.
    if (block.slot < 0 || static_cast<std::size_t>(block.slot) >= disk_slots ||
        !seen.insert(block.hash).second) {
      store_->discard(block.slot);
      continue;
    }
    hashes.push_back(block.hash);
    slots.push_back(block.slot);
  }
  manager_.adopt_ready(kDiskTier, hashes, slots);
  recovered_ = hashes.size();
}

std::byte* DiskTier::host_slot(BlockId slot) const noexcept {
  return host_.base + static_cast<std::size_t>(slot) * host_.slot_bytes;
}

void DiskTier::execute(std::span<const TransferPlan> plans) {
  if (plans.empty()) return;
  // The cap is judged once per call: the plans of one call are one unit of disk work.
  const bool accept = accepting();
  Job write;
  Job read;
  read.writes_disk = false;
  for (const TransferPlan& plan : plans) {
    const bool demotion = plan.kind == TransferKind::kDemotion;
    const bool shape    = demotion
                              ? plan.source_tier == kHostTier && plan.destination_tier == kDiskTier
                              : plan.source_tier == kDiskTier && plan.destination_tier == kHostTier;
    KVO_EXPECTS(shape,
                "offloader: the manager made " + plan_str(plan) +
                    ", which is not between the host and the disk tier");
    if (!accept) {
      manager_.complete_transfer(plan.id, /*success=*/false);
      ++(demotion ? demotions_dropped_ : reads_dropped_);
      continue;
    }
    Job& job = demotion ? write : read;
    job.plans.push_back(plan);
    if (demotion) {
      job.writes.push_back({plan.destination_slot, plan.hash, host_slot(plan.source_slot)});
      job.host_slots.push_back(plan.source_slot);
      job.disk_slots.push_back(plan.destination_slot);
    } else {
      job.reads.push_back({plan.source_slot, plan.hash, host_slot(plan.destination_slot)});
      job.host_slots.push_back(plan.destination_slot);
      job.disk_slots.push_back(plan.source_slot);
    }
  }
  for (Job* job : {&write, &read}) {
    if (job->plans.empty()) continue;
    std::sort(job->host_slots.begin(), job->host_slots.end());
    std::sort(job->disk_slots.begin(), job->disk_slots.end());
    jobs_.push_back(std::move(*job));
  }
  start_ready();
}

bool DiskTier::reads_host_slots(std::span<const BlockId> slots) const {
  const std::vector<BlockId> wanted(slots.begin(), slots.end());
  return std::any_of(jobs_.begin(), jobs_.end(), [&](const Job& job) {
    return job.writes_disk && intersects(job.host_slots, wanted);
  });
}

// A job waits while an earlier unfinished job reads a slot it writes: a read job writes host
// slots that demotions read, a write job disk slots that reads read.
bool DiskTier::blocked(std::list<Job>::const_iterator job) const {
  for (auto earlier = jobs_.begin(); earlier != job; ++earlier) {
    if (earlier->writes_disk == job->writes_disk) continue;  // same direction: no shared reads
    const bool conflict = job->writes_disk ? intersects(earlier->disk_slots, job->disk_slots)
                                           : intersects(earlier->host_slots, job->host_slots);
    if (conflict) return true;
  }
  return false;
}

void DiskTier::submit(Job& job) {
  KVO_SCOPED_RANGE(std::string{job.writes_disk ? "disk write " : "disk read "} +
                   std::to_string(job.plans.size()) + " blocks");
  try {
    job.id = job.writes_disk ? store_->submit_write(job.writes) : store_->submit_read(job.reads);
  } catch (...) {
    // Rejected (a bug of the plans or the store): abandon them, so nothing stays in flight.
    for (const TransferPlan& plan : job.plans)
      manager_.complete_transfer(plan.id, /*success=*/false);
    throw;
  }
}

void DiskTier::start_ready() {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (it->id || blocked(it)) {
      ++it;
      continue;
    }
    try {
      submit(*it);
      ++it;
    } catch (...) {
      jobs_.erase(it);
      throw;
    }
  }
}

void DiskTier::finish(Job& job, const storage::DiskJobStatus& status) {
  KVO_SCOPED_RANGE(std::string{job.writes_disk ? "disk write done " : "disk read done "} +
                   std::to_string(job.plans.size()) + " blocks");
  const bool ok = status.state == storage::DiskJobState::kDone;
  (job.writes_disk ? write_latency_ : read_latency_)
      .record(std::chrono::steady_clock::now() - job.created);
  if (job.writes_disk) {
    for (const TransferPlan& plan : job.plans)
      manager_.complete_transfer(plan.id, ok);
    if (ok) {
      demotions_ += job.plans.size();
      bytes_written_ += job.plans.size() * block_bytes_;
    } else {
      demotions_failed_ += job.plans.size();
    }
    return;
  }
  const std::vector<BlockId>& lost = status.lost;
  for (const TransferPlan& plan : job.plans) {
    const bool corrupt = std::find(lost.begin(), lost.end(), plan.source_slot) != lost.end();
    const bool success = ok && !corrupt;
    // Failure frees the host slot the bytes went to (never loaded) and leaves the block on disk.
    manager_.complete_transfer(plan.id, success);
    if (success) {
      ++promotions_;
      bytes_read_ += block_bytes_;
      continue;
    }
    ++reads_failed_;
    if (!corrupt) continue;
    // Its disk bytes are wrong: nobody may read them again, here or after a restart.
    const BlockHash hash = plan.hash;
    manager_.discard(std::span{&hash, 1});
    store_->discard(plan.source_slot);
    ++lost_;
  }
}

bool DiskTier::progress(bool wait_for_one) {
  bool finished = false;
  if (wait_for_one) {
    const auto oldest =
        std::find_if(jobs_.begin(), jobs_.end(), [](const Job& job) { return job.id.has_value(); });
    if (oldest != jobs_.end()) {
      const storage::DiskJobStatus status = store_->wait(*oldest->id);
      finish(*oldest, status);
      jobs_.erase(oldest);
      finished = true;
    }
  }
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (!it->id) {
      ++it;
      continue;
    }
    const storage::DiskJobStatus status = store_->poll(*it->id);
    if (status.state == storage::DiskJobState::kPending) {
      ++it;
      continue;
    }
    finish(*it, status);
    it       = jobs_.erase(it);
    finished = true;
  }
  start_ready();
  return finished;
}

void DiskTier::add_to(OffloaderStats& stats) const {
  stats.bytes_written_disk  = bytes_written_;
  stats.bytes_read_disk     = bytes_read_;
  stats.demotions           = demotions_;
  stats.demotions_dropped   = demotions_dropped_;
  stats.demotions_failed    = demotions_failed_;
  stats.promotions          = promotions_;
  stats.reads_dropped       = reads_dropped_;
  stats.reads_failed        = reads_failed_;
  stats.blocks_lost         = lost_;
  stats.blocks_recovered    = recovered_;
  stats.disk_jobs_in_flight = jobs_.size();
  stats.disk_write_latency  = write_latency_;
  stats.disk_read_latency   = read_latency_;
}

}  // namespace kvoffload::detail
