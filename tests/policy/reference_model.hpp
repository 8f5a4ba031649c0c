/**
 * @file reference_model.hpp
 * @brief A small, obviously correct model of the manager contract for LRU and ARC, written
 * straight from the specification with linear scans, for differential testing.
 */
#pragma once

#include <kvoffload/error.hpp>
#include <kvoffload/offloading_manager.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <vector>

namespace kvoffload::testing {

class ReferenceModel final : public OffloadingManager {
 public:
  enum class Kind { kLru, kArc };

  ReferenceModel(Kind kind, std::size_t capacity, std::size_t block_size)
      : kind_{kind}, capacity_{capacity}, block_size_{block_size} {}

  std::optional<std::size_t> lookup(std::span<const BlockHash> hashes) override {
    std::size_t n = 0;
    while (n < hashes.size() && is_ready(hashes[n]))
      ++n;
    return n;
  }

  LoadStoreSpec prepare_load(std::span<const BlockHash> hashes) override {
    for (BlockHash h : hashes) {
      if (!is_ready(h)) throw logic_error("not ready");
    }
    LoadStoreSpec spec{Medium::kCpu, {}};
    for (BlockHash h : hashes) {
      ++blocks_[h].refs;
      spec.block_ids.push_back(blocks_[h].slot);
    }
    return spec;
  }

  void touch(std::span<const BlockHash> hashes) override {
    for (auto it = hashes.rbegin(); it != hashes.rend(); ++it) {
      const BlockHash h = *it;
      if (kind_ == Kind::kLru) {
        if (blocks_.count(h)) move_to_back(lru_, h);
        continue;
      }
      if (contains(t1_, h)) {
        if (blocks_[h].ready) {
          erase(t1_, h);
          t2_.push_back(h);
        } else {
          move_to_back(t1_, h);
        }
      } else if (contains(t2_, h)) {
        move_to_back(t2_, h);
      } else if (contains(b1_, h)) {
        const double delta = std::max(1.0, double(b2_.size()) / double(b1_.size()));
        p_                 = std::min(p_ + delta, double(capacity_));
        move_to_back(b1_, h);  // vLLM keeps a touched ghost fresh
      } else if (contains(b2_, h)) {
        const double delta = std::max(1.0, double(b1_.size()) / double(b2_.size()));
        p_                 = std::max(p_ - delta, 0.0);
        move_to_back(b2_, h);
      }
    }
  }

  void complete_load(std::span<const BlockHash> hashes) override {
    std::map<BlockHash, std::size_t> needed;
    for (BlockHash h : hashes)
      ++needed[h];
    for (auto [h, n] : needed) {
      if (!blocks_.count(h) || blocks_[h].refs < n) throw logic_error("no reference");
    }
    for (auto [h, n] : needed)
      blocks_[h].refs -= n;
  }

  std::optional<PrepareStoreOutput> prepare_store(std::span<const BlockHash> hashes) override {
    std::vector<BlockHash> fresh;
    std::set<BlockHash> in_call(hashes.begin(), hashes.end());
    for (BlockHash h : hashes) {
      if (!blocks_.count(h) && !contains(fresh, h)) fresh.push_back(h);
    }
    if (fresh.size() > capacity_) return std::nullopt;
    const std::size_t free     = capacity_ - blocks_.size();
    const std::size_t to_evict = fresh.size() > free ? fresh.size() - free : 0;
    auto eligible              = [&](BlockHash h) {
      const Block& b = blocks_.at(h);
      return b.ready && b.refs == 0 && !in_call.count(h);
    };
    std::vector<BlockHash> victims;
    if (kind_ == Kind::kLru) {
      for (BlockHash h : lru_) {
        if (victims.size() < to_evict && eligible(h)) victims.push_back(h);
      }
      if (victims.size() < to_evict) return std::nullopt;
    } else {
      std::size_t taken_t1 = 0;
      auto oldest          = [&](const std::vector<BlockHash>& list) -> std::optional<BlockHash> {
        for (BlockHash h : list) {
          if (eligible(h) && !contains(victims, h)) return h;
        }
        return std::nullopt;
      };
      for (std::size_t i = 0; i < to_evict; ++i) {
        std::optional<BlockHash> victim;
        if (t1_.size() - taken_t1 >= static_cast<std::size_t>(p_)) victim = oldest(t1_);
        bool from_t1 = victim.has_value();
        if (!victim) victim = oldest(t2_);
        if (!victim) {
          victim  = oldest(t1_);
          from_t1 = victim.has_value();
        }
        if (!victim) return std::nullopt;
        victims.push_back(*victim);
        taken_t1 += from_t1;
      }
    }
    PrepareStoreOutput out;
    out.store_spec.medium = Medium::kCpu;
    for (BlockHash h : victims) {
      if (kind_ == Kind::kLru) {
        erase(lru_, h);
      } else if (contains(t1_, h)) {
        erase(t1_, h);
        add_ghost(b1_, h);
      } else {
        erase(t2_, h);
        add_ghost(b2_, h);
      }
      free_stack_.push_back(blocks_[h].slot);
      blocks_.erase(h);
      out.block_hashes_evicted.push_back(h);
    }
    if (!victims.empty()) events_.push_back({victims, block_size_, Medium::kCpu, true});
    for (BlockHash h : fresh) {
      BlockId slot;
      if (next_unused_ < static_cast<BlockId>(capacity_)) {
        slot = next_unused_++;
      } else {
        slot = free_stack_.back();
        free_stack_.pop_back();
      }
      blocks_[h] = Block{slot, false, 0};
      if (kind_ == Kind::kLru) {
        lru_.push_back(h);
      } else {
        erase(b1_, h);
        erase(b2_, h);
        t1_.push_back(h);
      }
      out.block_hashes_to_store.push_back(h);
      out.store_spec.block_ids.push_back(slot);
    }
    return out;
  }

  void complete_store(std::span<const BlockHash> hashes, bool success) override {
    if (success) {
      for (BlockHash h : hashes) {
        if (!blocks_.count(h)) throw logic_error("absent");
      }
      std::vector<BlockHash> stored;
      for (BlockHash h : hashes) {
        if (!blocks_[h].ready) {
          blocks_[h].ready = true;
          stored.push_back(h);
        }
      }
      if (!stored.empty()) events_.push_back({stored, block_size_, Medium::kCpu, false});
      return;
    }
    for (BlockHash h : hashes) {
      if (blocks_.count(h) && !blocks_[h].ready) remove(h);
    }
  }

  std::vector<OffloadingEvent> take_events() override {
    auto e = events_;
    events_.clear();
    return e;
  }

  ManagerStats stats() const override {
    ManagerStats s;
    s.capacity = capacity_;
    for (const auto& [h, b] : blocks_) {
      s.pending += !b.ready;
      s.ready += b.ready;
      s.pinned += b.refs > 0;
    }
    s.evictable  = s.ready - s.pinned;
    s.free_slots = capacity_ - blocks_.size();
    return s;
  }

  void clear() override {
    std::vector<std::pair<BlockId, BlockHash>> idle;
    for (const auto& [h, b] : blocks_) {
      if (b.ready && b.refs == 0) idle.emplace_back(b.slot, h);
    }
    std::sort(idle.begin(), idle.end());  // the core walks slots in ascending order
    std::vector<BlockHash> removed;
    for (auto [slot, h] : idle) {
      remove(h);
      removed.push_back(h);
    }
    if (!removed.empty()) events_.push_back({removed, block_size_, Medium::kCpu, true});
  }

  [[nodiscard]] double arc_p() const { return p_; }

 private:
  struct Block {
    BlockId slot{0};
    bool ready{false};
    std::size_t refs{0};
  };

  static bool contains(const std::vector<BlockHash>& v, BlockHash h) {
    return std::find(v.begin(), v.end(), h) != v.end();
  }
  static void erase(std::vector<BlockHash>& v, BlockHash h) {
    if (auto it = std::find(v.begin(), v.end(), h); it != v.end()) v.erase(it);
  }
  static void move_to_back(std::vector<BlockHash>& v, BlockHash h) {
    erase(v, h);
    v.push_back(h);
  }
  void add_ghost(std::vector<BlockHash>& ghost, BlockHash h) {
    ghost.push_back(h);
    while (ghost.size() > capacity_)
      ghost.erase(ghost.begin());
  }
  bool is_ready(BlockHash h) const {
    auto it = blocks_.find(h);
    return it != blocks_.end() && it->second.ready;
  }
  void remove(BlockHash h) {
    erase(lru_, h);
    erase(t1_, h);
    erase(t2_, h);
    free_stack_.push_back(blocks_[h].slot);
    blocks_.erase(h);
  }

  Kind kind_;
  std::size_t capacity_;
  std::size_t block_size_;
  std::map<BlockHash, Block> blocks_;
  std::vector<BlockHash> lru_, t1_, t2_, b1_, b2_;  // front = oldest
  double p_{0.0};
  std::vector<BlockId> free_stack_;
  BlockId next_unused_{0};
  std::vector<OffloadingEvent> events_;
};

}  // namespace kvoffload::testing
