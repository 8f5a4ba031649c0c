// An in-memory BlockStore for the host + disk Offloader's tests. Bytes move only when a job
// completes (poll() after release, or wait()), so a host slot overwritten before a demotion
// read it shows up as wrong bytes on disk. It checks the store's ordering contract (no read of a
// slot whose write is pending, no write of a slot a pending job uses, no host memory written by
// one pending job and used by another) and records each breach in `violations`. It can hold
// jobs until released, fail jobs, and corrupt blocks (reads report them lost). Its disk
// (FakeDisk) outlives it, so a second store on the same FakeDisk "recovers" the blocks.
#pragma once

#include <kvoffload/error.hpp>
#include <kvoffload/storage/block_store.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kvoffload::testing {

/// The "files": each slot's bytes and the hash of its completed write.
struct FakeDisk {
  FakeDisk(std::size_t slots, std::size_t block_bytes)
      : bytes(slots, std::vector<std::byte>(block_bytes)), record(slots) {}
  std::vector<std::vector<std::byte>> bytes;
  std::vector<std::optional<BlockHash>> record;
};

class FakeBlockStore final : public storage::BlockStore {
 public:
  /// `recover`: report disk's completed records in recovered(), like a persistent store.
  FakeBlockStore(std::shared_ptr<FakeDisk> disk, bool recover) : disk_{std::move(disk)} {
    if (!recover) disk_->record.assign(disk_->record.size(), std::nullopt);
    for (std::size_t s = 0; s < disk_->record.size(); ++s) {
      if (disk_->record[s]) recovered_.push_back({static_cast<BlockId>(s), *disk_->record[s]});
    }
  }

  storage::DiskJobId submit_write(std::span<const storage::DiskWrite> blocks) override {
    Job job{.write = true};
    for (const auto& b : blocks) {
      check_slot(b.slot, b.bytes != nullptr);
      job.slots.push_back(b.slot);
      job.host.push_back(const_cast<std::byte*>(b.bytes));  // a write only reads it
      job.hashes.push_back(b.hash);
    }
    check_order(job);
    ++writes_submitted;
    jobs_.emplace(next_, std::move(job));
    return next_++;
  }
  storage::DiskJobId submit_read(std::span<const storage::DiskRead> blocks) override {
    Job job{.write = false};
    for (const auto& b : blocks) {
      check_slot(b.slot, b.bytes != nullptr);
      job.slots.push_back(b.slot);
      job.host.push_back(b.bytes);
      job.hashes.push_back(b.hash);
    }
    check_order(job);
    ++reads_submitted;
    jobs_.emplace(next_, std::move(job));
    return next_++;
  }
  storage::DiskJobStatus poll(storage::DiskJobId id) override {
    Job& job = find(id);
    if (hold && !job.released) return {};
    return run(id);
  }
  storage::DiskJobStatus wait(storage::DiskJobId id) override {
    (void)find(id);
    ++waits;
    return run(id);
  }
  void discard(BlockId slot) override {
    disk_->record.at(static_cast<std::size_t>(slot)).reset();
    ++discards;
  }
  void flush() override {}
  const std::vector<storage::RecoveredBlock>& recovered() const noexcept override {
    return recovered_;
  }
  std::size_t num_slots() const noexcept override { return disk_->bytes.size(); }
  std::size_t block_bytes() const noexcept override { return disk_->bytes.front().size(); }
  std::size_t slot_bytes() const noexcept override { return block_bytes(); }
  storage::BlockStoreStats stats() const override { return {}; }
  std::string description() const override { return "fake in-memory store"; }
  void register_host_memory(std::span<std::byte>) override {}

  /// Let held jobs complete at their next poll().
  void release_all() {
    for (auto& [id, job] : jobs_)
      job.released = true;
  }
  [[nodiscard]] std::size_t pending() const noexcept { return jobs_.size(); }

  bool hold{false};           ///< poll() reports pending until release_all() (wait() completes)
  bool fail_writes{false};    ///< write jobs fail (nothing written)
  std::set<BlockId> corrupt;  ///< disk slots whose reads fail the integrity check
  std::vector<std::string> violations;
  int writes_submitted{0}, reads_submitted{0}, waits{0}, discards{0};

 private:
  struct Job {
    bool write{true};
    std::vector<BlockId> slots;
    std::vector<std::byte*> host;  // writes read these; reads fill them
    std::vector<BlockHash> hashes;
    bool released{false};
  };

  void check_slot(BlockId slot, bool buffer) const {
    KVO_EXPECTS(slot >= 0 && static_cast<std::size_t>(slot) < num_slots(),
                "fake store: slot " + std::to_string(slot) + " is out of range");
    KVO_EXPECTS(buffer, "fake store: a null buffer for slot " + std::to_string(slot));
  }
  // The store's ordering contract, against every pending job.
  void check_order(const Job& job) {
    const std::size_t n = block_bytes();
    for (const auto& [id, other] : jobs_) {
      for (std::size_t i = 0; i < job.slots.size(); ++i) {
        for (std::size_t j = 0; j < other.slots.size(); ++j) {
          if (job.slots[i] == other.slots[j] && (job.write || other.write)) {
            violations.push_back("disk slot " + std::to_string(job.slots[i]) +
                                 " used by a new job while pending job " + std::to_string(id) +
                                 " uses it");
          }
          const bool overlap = job.host[i] < other.host[j] + n && other.host[j] < job.host[i] + n;
          // A read job writes host memory: nothing else may use that memory meanwhile.
          if (overlap && (!job.write || !other.write)) {
            violations.push_back("host bytes of a new job overlap pending job " +
                                 std::to_string(id) + "'s, and one of them writes them");
          }
        }
      }
    }
  }
  Job& find(storage::DiskJobId id) {
    const auto it = jobs_.find(id);
    KVO_EXPECTS(it != jobs_.end(), "fake store: job " + std::to_string(id) + " is unknown");
    return it->second;
  }
  storage::DiskJobStatus run(storage::DiskJobId id) {
    const auto it = jobs_.find(id);
    const Job job = std::move(it->second);
    jobs_.erase(it);
    const std::size_t n = block_bytes();
    storage::DiskJobStatus status{storage::DiskJobState::kDone, {}, {}};
    if (job.write) {
      if (fail_writes) return {storage::DiskJobState::kFailed, "injected write failure", {}};
      for (std::size_t i = 0; i < job.slots.size(); ++i) {
        const auto slot = static_cast<std::size_t>(job.slots[i]);
        std::memcpy(disk_->bytes[slot].data(), job.host[i], n);
        disk_->record[slot] = job.hashes[i];
      }
      return status;
    }
    for (std::size_t i = 0; i < job.slots.size(); ++i) {
      const auto slot = static_cast<std::size_t>(job.slots[i]);
      if (corrupt.contains(job.slots[i]) || disk_->record[slot] != job.hashes[i]) {
        std::memset(job.host[i], 0xEE, n);  // undefined bytes: make them visibly wrong
        status.lost.push_back(job.slots[i]);
        continue;
      }
      std::memcpy(job.host[i], disk_->bytes[slot].data(), n);
    }
    return status;  // like the real store: the job is done, its lost blocks listed
  }

  std::shared_ptr<FakeDisk> disk_;
  std::vector<storage::RecoveredBlock> recovered_;
  std::map<storage::DiskJobId, Job> jobs_;
  storage::DiskJobId next_{1};
};

}  // namespace kvoffload::testing
