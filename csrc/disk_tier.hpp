// The disk side of a host + disk Offloader: runs the tiered manager's demotions (host -> disk)
// and promotions and prefetches (disk -> host) as BlockStore jobs, never writing a slot that an
// earlier unfinished job still reads, bounded in the jobs it keeps in flight, and confirms each
// plan to the manager when its job is done. Rules in include/kvoffload/offloader.hpp.
#pragma once

#include <kvoffload/offloader.hpp>
#include <kvoffload/storage/block_store.hpp>
#include <kvoffload/tiered_manager.hpp>
#include <kvoffload/transfer/kv_layout.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace kvoffload::detail {

class DiskTier {
 public:
  /// Adopts the store's recovered blocks into the manager's disk tier (tier 1).
  /// @throws logic_error if the manager's tiers do not fit `host` and the store
  DiskTier(TieredOffloadingManager& manager,
           std::unique_ptr<storage::BlockStore> store,
           const transfer::HostSlots& host,
           std::size_t block_bytes,
           std::size_t max_jobs);
  /// Waits for the jobs the store runs (they use host memory); tells the manager nothing.
  ~DiskTier();
  DiskTier(const DiskTier&)            = delete;
  DiskTier& operator=(const DiskTier&) = delete;

  /// Turn the plans (in the manager's order) into at most one write and one read job; while
  /// `max_jobs` jobs are in flight they are abandoned instead (complete_transfer(id, false)).
  void execute(std::span<const TransferPlan> plans);
  /// Whether an unfinished disk job reads one of these host slots (a store into them waits).
  [[nodiscard]] bool reads_host_slots(std::span<const BlockId> slots) const;
  /// Confirm the jobs that finished and start the waiting ones whose slots are free. With
  /// `wait_for_one`, first block until the oldest running job finishes.
  /// @return whether a job finished
  bool progress(bool wait_for_one);
  [[nodiscard]] std::size_t jobs_in_flight() const noexcept { return jobs_.size(); }
  /// Whether execute() would run new plans now (fewer than `max_jobs` jobs in flight).
  [[nodiscard]] bool accepting() const noexcept { return jobs_.size() < max_jobs_; }
  [[nodiscard]] const storage::BlockStore& store() const noexcept { return *store_; }
  /// Adds the disk counters to `stats`.
  void add_to(OffloaderStats& stats) const;

 private:
  struct Job {
    bool writes_disk{true};  // demotions; else promotions and prefetches
    std::vector<TransferPlan> plans;
    std::vector<storage::DiskWrite> writes;
    std::vector<storage::DiskRead> reads;
    std::vector<BlockId> host_slots, disk_slots;  // sorted: the slots it reads or writes
    std::optional<storage::DiskJobId> id;         // once submitted
    std::chrono::steady_clock::time_point created{std::chrono::steady_clock::now()};
  };
  [[nodiscard]] std::byte* host_slot(BlockId slot) const noexcept;
  [[nodiscard]] bool blocked(std::list<Job>::const_iterator job) const;
  void submit(Job& job);
  void start_ready();
  void finish(Job& job, const storage::DiskJobStatus& status);
  void adopt_recovered();

  TieredOffloadingManager& manager_;
  std::unique_ptr<storage::BlockStore> store_;
  transfer::HostSlots host_;
  std::size_t block_bytes_;
  std::size_t max_jobs_;
  std::list<Job> jobs_;  // unfinished, oldest first

  std::uint64_t bytes_written_{0}, bytes_read_{0};
  std::uint64_t demotions_{0}, demotions_dropped_{0}, demotions_failed_{0};
  std::uint64_t promotions_{0}, reads_dropped_{0}, reads_failed_{0};
  std::uint64_t lost_{0}, recovered_{0};
  LatencyHistogram write_latency_, read_latency_;  // from the plans' arrival to finish()
};

}  // namespace kvoffload::detail
