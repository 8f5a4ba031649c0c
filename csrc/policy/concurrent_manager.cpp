// Thread-safe wrapper: one mutex around one manager, or shards by hash each with its mutex.
#include "flat_index.hpp"

#include <kvoffload/concurrent_manager.hpp>
#include <kvoffload/error.hpp>

#include <algorithm>
#include <string>

namespace kvoffload {

namespace {
constexpr std::size_t kMaxShards = 256;
}  // namespace

/// A call's hashes grouped by shard, input order kept inside each group.
struct ConcurrentManager::Split {
  std::vector<std::vector<BlockHash>> hashes;      // per shard
  std::vector<std::vector<std::size_t>> position;  // per shard: index in the input
  std::vector<std::size_t> used;                   // shards with hashes, ascending
};

ConcurrentManager::ConcurrentManager(std::unique_ptr<OffloadingManager> manager) {
  KVO_EXPECTS(manager != nullptr, "concurrent: a manager is required, got null");
  auto shard     = std::make_unique<Shard>();
  shard->manager = std::move(manager);
  shard->size    = shard->manager->stats().capacity;
  shards_.push_back(std::move(shard));
}

ConcurrentManager::ConcurrentManager(const Builder& build,
                                     std::size_t num_blocks,
                                     std::size_t shards) {
  KVO_EXPECTS(shards >= 1 && shards <= kMaxShards,
              "concurrent: shards must be 1.." + std::to_string(kMaxShards) + ", got " +
                  std::to_string(shards));
  KVO_EXPECTS(num_blocks >= shards,
              "concurrent: num_blocks " + std::to_string(num_blocks) +
                  " is smaller than the shard count " + std::to_string(shards));
  KVO_EXPECTS(static_cast<bool>(build), "concurrent: a builder is required");
  std::size_t offset = 0;
  for (std::size_t s = 0; s < shards; ++s) {
    auto shard     = std::make_unique<Shard>();
    shard->size    = num_blocks / shards + (s < num_blocks % shards ? 1 : 0);
    shard->offset  = offset;
    shard->manager = build(shard->size);
    KVO_EXPECTS(shard->manager != nullptr, "concurrent: the builder returned null");
    offset += shard->size;
    shards_.push_back(std::move(shard));
  }
}

ConcurrentManager::~ConcurrentManager() = default;

ConcurrentManager::Shard& ConcurrentManager::single_shard() {
  KVO_EXPECTS(shards_.size() == 1,
              "concurrent: with_lock needs the one-mutex mode, this wrapper has " +
                  std::to_string(shards_.size()) + " shards");
  return *shards_.front();
}

std::size_t ConcurrentManager::shard_of(BlockHash hash) const noexcept {
  const std::uint64_t mixed = detail::mix_hash(hash) >> 32;
  return static_cast<std::size_t>((mixed * shards_.size()) >> 32);
}

void ConcurrentManager::split(std::span<const BlockHash> hashes, Split& s) const {
  const std::size_t n = shards_.size();
  if (s.hashes.size() < n) {
    s.hashes.resize(n);
    s.position.resize(n);
  }
  for (std::size_t shard : s.used) {
    s.hashes[shard].clear();
    s.position[shard].clear();
  }
  s.used.clear();
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    const std::size_t shard = shard_of(hashes[i]);
    if (s.hashes[shard].empty()) s.used.push_back(shard);
    s.hashes[shard].push_back(hashes[i]);
    s.position[shard].push_back(i);
  }
  std::sort(s.used.begin(), s.used.end());  // ascending: the lock order
}

/// The split of one call. It borrows a per-thread scratch whose groups keep their capacity (a
/// warm thread does not allocate); a nested call (a shard that is itself a wrapper) gets its own.
class ConcurrentManager::SplitScope {
 public:
  SplitScope(const ConcurrentManager& manager, std::span<const BlockHash> hashes) {
    thread_local Split cached;
    thread_local bool busy = false;
    if (!busy) {
      busy       = true;
      busy_flag_ = &busy;
      split_     = &cached;
    } else {
      own_   = std::make_unique<Split>();
      split_ = own_.get();
    }
    manager.split(hashes, *split_);
  }
  ~SplitScope() {
    if (busy_flag_ != nullptr) *busy_flag_ = false;
  }
  SplitScope(const SplitScope&)            = delete;
  SplitScope& operator=(const SplitScope&) = delete;
  const Split& operator*() const noexcept { return *split_; }

 private:
  Split* split_{nullptr};
  bool* busy_flag_{nullptr};
  std::unique_ptr<Split> own_;
};

std::optional<std::size_t> ConcurrentManager::lookup(std::span<const BlockHash> hashes) {
  if (shards_.size() == 1) {
    std::lock_guard lock{shards_[0]->mutex};
    return shards_[0]->manager->lookup(hashes);
  }
  // Each shard answers the ready prefix of its own (ordered) hashes; the first hash of the
  // input that is past its shard's prefix ends the whole prefix.
  const SplitScope scope{*this, hashes};
  const Split& s     = *scope;
  std::size_t prefix = hashes.size();
  for (std::size_t shard : s.used) {
    std::optional<std::size_t> ready;
    {
      std::lock_guard lock{shards_[shard]->mutex};
      ready = shards_[shard]->manager->lookup(s.hashes[shard]);
    }
    if (!ready) return std::nullopt;
    if (*ready < s.hashes[shard].size()) prefix = std::min(prefix, s.position[shard][*ready]);
  }
  lookups_.fetch_add(1, std::memory_order_relaxed);
  lookup_blocks_.fetch_add(hashes.size(), std::memory_order_relaxed);
  hits_.fetch_add(prefix, std::memory_order_relaxed);
  return prefix;
}

LoadStoreSpec ConcurrentManager::prepare_load(std::span<const BlockHash> hashes) {
  if (shards_.size() == 1) {
    std::lock_guard lock{shards_[0]->mutex};
    return shards_[0]->manager->prepare_load(hashes);
  }
  const SplitScope scope{*this, hashes};
  const Split& s = *scope;
  LoadStoreSpec spec;
  spec.block_ids.resize(hashes.size());
  for (std::size_t k = 0; k < s.used.size(); ++k) {
    const std::size_t shard = s.used[k];
    Shard& sh               = *shards_[shard];
    try {
      std::lock_guard lock{sh.mutex};
      LoadStoreSpec part = sh.manager->prepare_load(s.hashes[shard]);
      spec.medium        = part.medium;
      for (std::size_t j = 0; j < part.block_ids.size(); ++j) {
        spec.block_ids[s.position[shard][j]] = part.block_ids[j] + static_cast<BlockId>(sh.offset);
      }
    } catch (...) {
      for (std::size_t done = 0; done < k; ++done) {
        Shard& undo = *shards_[s.used[done]];
        std::lock_guard lock{undo.mutex};
        undo.manager->complete_load(s.hashes[s.used[done]]);
      }
      throw;
    }
  }
  if (s.used.empty()) {
    std::lock_guard lock{shards_[0]->mutex};
    spec.medium = shards_[0]->manager->prepare_load({}).medium;
  }
  return spec;
}

void ConcurrentManager::touch(std::span<const BlockHash> hashes) {
  if (shards_.size() == 1) {
    std::lock_guard lock{shards_[0]->mutex};
    shards_[0]->manager->touch(hashes);
    return;
  }
  const SplitScope scope{*this, hashes};
  const Split& s = *scope;
  for (std::size_t shard : s.used) {
    std::lock_guard lock{shards_[shard]->mutex};
    shards_[shard]->manager->touch(s.hashes[shard]);
  }
}

void ConcurrentManager::complete_load(std::span<const BlockHash> hashes) {
  if (shards_.size() == 1) {
    std::lock_guard lock{shards_[0]->mutex};
    shards_[0]->manager->complete_load(hashes);
    return;
  }
  const SplitScope scope{*this, hashes};
  const Split& s = *scope;
  for (std::size_t k = 0; k < s.used.size(); ++k) {
    const std::size_t shard = s.used[k];
    try {
      std::lock_guard lock{shards_[shard]->mutex};
      shards_[shard]->manager->complete_load(s.hashes[shard]);
    } catch (...) {
      // The shards done so far released references that were held: take them again.
      for (std::size_t done = 0; done < k; ++done) {
        Shard& undo = *shards_[s.used[done]];
        std::lock_guard lock{undo.mutex};
        (void)undo.manager->prepare_load(s.hashes[s.used[done]]);
      }
      throw;
    }
  }
}

std::optional<PrepareStoreOutput> ConcurrentManager::prepare_store(
    std::span<const BlockHash> hashes) {
  if (shards_.size() == 1) {
    std::lock_guard lock{shards_[0]->mutex};
    return shards_[0]->manager->prepare_store(hashes);
  }
  const SplitScope scope{*this, hashes};
  const Split& s = *scope;
  // Hold every named shard (ascending order: no deadlock) so the call is atomic.
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(s.used.size());
  for (std::size_t shard : s.used)
    locks.emplace_back(shards_[shard]->mutex);

  std::vector<std::optional<PrepareStoreOutput>> parts(shards_.size());
  for (std::size_t k = 0; k < s.used.size(); ++k) {
    const std::size_t shard = s.used[k];
    parts[shard]            = shards_[shard]->manager->prepare_store(s.hashes[shard]);
    if (!parts[shard]) {
      for (std::size_t done = 0; done < k; ++done) {
        const std::size_t undo = s.used[done];
        shards_[undo]->manager->complete_store(parts[undo]->block_hashes_to_store, false);
      }
      return std::nullopt;
    }
  }
  PrepareStoreOutput out;
  if (s.used.empty()) {
    auto empty = shards_[0]->manager->prepare_store({});  // an empty store: medium only
    if (!empty) return std::nullopt;
    out.store_spec.medium = empty->store_spec.medium;
    return out;
  }
  out.store_spec.medium = parts[s.used.front()]->store_spec.medium;
  // Merge the hashes to store back into input order: each shard's list is the subsequence of
  // its input hashes it stores (first occurrences), so it is consumed front to back.
  std::vector<std::size_t> next(shards_.size(), 0);
  for (BlockHash hash : hashes) {
    const std::size_t shard        = shard_of(hash);
    const PrepareStoreOutput& part = *parts[shard];
    std::size_t& i                 = next[shard];
    if (i < part.block_hashes_to_store.size() && part.block_hashes_to_store[i] == hash) {
      out.block_hashes_to_store.push_back(hash);
      out.store_spec.block_ids.push_back(part.store_spec.block_ids[i] +
                                         static_cast<BlockId>(shards_[shard]->offset));
      ++i;
    }
  }
  for (std::size_t shard : s.used) {
    const auto& evicted = parts[shard]->block_hashes_evicted;
    out.block_hashes_evicted.insert(out.block_hashes_evicted.end(), evicted.begin(), evicted.end());
  }
  return out;
}

void ConcurrentManager::complete_store(std::span<const BlockHash> hashes, bool success) {
  if (shards_.size() == 1) {
    std::lock_guard lock{shards_[0]->mutex};
    shards_[0]->manager->complete_store(hashes, success);
    return;
  }
  const SplitScope scope{*this, hashes};
  const Split& s = *scope;
  for (std::size_t shard : s.used) {
    std::lock_guard lock{shards_[shard]->mutex};
    shards_[shard]->manager->complete_store(s.hashes[shard], success);
  }
}

std::vector<OffloadingEvent> ConcurrentManager::take_events() {
  std::vector<OffloadingEvent> events;
  for (auto& shard : shards_) {
    std::lock_guard lock{shard->mutex};
    auto part = shard->manager->take_events();
    if (events.empty()) {
      events = std::move(part);
    } else {
      events.insert(
          events.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
    }
  }
  return events;
}

ManagerStats ConcurrentManager::stats() const {
  ManagerStats total;
  for (const auto& shard : shards_) {
    ManagerStats s;
    {
      std::lock_guard lock{shard->mutex};
      s = shard->manager->stats();
    }
    total.lookups += s.lookups;
    total.lookup_blocks += s.lookup_blocks;
    total.hits += s.hits;
    total.misses += s.misses;
    total.stores += s.stores;
    total.stores_completed += s.stores_completed;
    total.stores_failed += s.stores_failed;
    total.store_rejections += s.store_rejections;
    total.stores_declined += s.stores_declined;
    total.evictions += s.evictions;
    total.loads += s.loads;
    total.capacity += s.capacity;
    total.pending += s.pending;
    total.ready += s.ready;
    total.pinned += s.pinned;
    total.evictable += s.evictable;
    total.free_slots += s.free_slots;
    total.metadata_bytes += s.metadata_bytes + sizeof(Shard);
    total.sketch_bytes += s.sketch_bytes;
  }
  if (shards_.size() > 1) {
    total.lookups       = lookups_.load(std::memory_order_relaxed);
    total.lookup_blocks = lookup_blocks_.load(std::memory_order_relaxed);
    total.hits          = hits_.load(std::memory_order_relaxed);
    total.misses        = total.lookup_blocks - total.hits;
  }
  total.metadata_bytes += sizeof(*this);
  return total;
}

void ConcurrentManager::clear() {
  for (auto& shard : shards_) {
    std::lock_guard lock{shard->mutex};
    shard->manager->clear();
  }
}

bool ConcurrentManager::plans_transfers() const noexcept {
  return shards_.front()->manager->plans_transfers();
}

}  // namespace kvoffload
