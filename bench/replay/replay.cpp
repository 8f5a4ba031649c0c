#include "replay/replay.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/tiered_manager.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <queue>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kvoffload::replay {

ReplayResult replay(const Trace& trace, OffloadingManager& manager) {
  using clock = std::chrono::steady_clock;
  ReplayResult result;
  result.capacity   = manager.stats().capacity;
  result.requests   = trace.requests.size();
  result.references = trace.references;
  (void)manager.take_events();

  // A tiered manager's moves are plans a transfer engine would execute; no bytes move here, so
  // each plan is confirmed as soon as it is taken, before the store that needs its source slot.
  // (A wrapper, +filter or +mutex, hides the plans: such a tiered manager needs instant=1.)
  auto* const tiered = dynamic_cast<TieredOffloadingManager*>(&manager);
  auto execute_plans = [&]() -> std::uint64_t {
    if (tiered == nullptr) return 0;
    const std::vector<TransferPlan> plans = tiered->take_transfer_plans();
    for (const TransferPlan& plan : plans)
      tiered->complete_transfer(plan.id);
    return plans.size();
  };

  // What a KV-event consumer would know: the set of ready blocks, from stored/removed events.
  std::unordered_set<BlockHash> ready;
  ready.reserve(result.capacity * 2);
  clock::duration inside{};

  for (const Request& request : trace.requests) {
    const std::span<const BlockHash> hashes{request.hashes};
    for (BlockHash hash : hashes)
      result.hits += ready.count(hash);

    const auto start               = clock::now();
    const std::size_t ready_prefix = manager.lookup(hashes).value_or(0);
    manager.touch(hashes);
    std::uint64_t ops = 2 * hashes.size();
    if (ready_prefix > 0) {
      const auto prefix = hashes.first(ready_prefix);
      (void)manager.prepare_load(prefix);
      manager.complete_load(prefix);
      ops += 2 * ready_prefix;
    }
    const auto rest = hashes.subspan(ready_prefix);
    ops += rest.size();
    if (auto out = manager.prepare_store(rest)) {
      ops += execute_plans();  // demotions that made room: their source slots are the new ones
      manager.complete_store(out->block_hashes_to_store, true);
      ops += out->block_hashes_to_store.size();
    }
    ops += execute_plans();  // promotions of blocks this request touched
    inside += clock::now() - start;
    result.block_ops += ops;
    result.prefix_hits += ready_prefix;

    for (const OffloadingEvent& event : manager.take_events()) {
      for (BlockHash hash : event.block_hashes) {
        if (event.removed) {
          ready.erase(hash);
        } else {
          ready.insert(hash);
        }
      }
    }
  }
  result.manager_seconds   = std::chrono::duration<double>(inside).count();
  const ManagerStats stats = manager.stats();
  result.metadata_bytes    = stats.metadata_bytes;
  result.sketch_bytes      = stats.sketch_bytes;
  return result;
}

std::size_t belady_hits(const Trace& trace, std::size_t capacity) {
  // Flatten the references and link each to the next use of the same block.
  std::vector<BlockHash> refs;
  refs.reserve(trace.references);
  for (const Request& r : trace.requests)
    refs.insert(refs.end(), r.hashes.begin(), r.hashes.end());
  constexpr std::size_t kNever = std::numeric_limits<std::size_t>::max();
  std::vector<std::size_t> next_use(refs.size(), kNever);
  {
    std::unordered_map<BlockHash, std::size_t> last;
    last.reserve(trace.distinct_ids * 2);
    for (std::size_t t = refs.size(); t-- > 0;) {
      auto [it, inserted] = last.try_emplace(refs[t], kNever);
      next_use[t]         = it->second;
      it->second          = t;
    }
  }
  // Resident blocks keyed by their next use; a max-heap with lazy deletion of stale entries.
  std::unordered_map<BlockHash, std::size_t> resident;  // block -> its current next use
  resident.reserve(capacity * 2);
  std::priority_queue<std::pair<std::size_t, BlockHash>> farthest;
  std::size_t hits = 0;
  for (std::size_t t = 0; t < refs.size(); ++t) {
    const BlockHash block  = refs[t];
    const std::size_t next = next_use[t];
    if (auto it = resident.find(block); it != resident.end()) {
      ++hits;
      it->second = next;
      farthest.emplace(next, block);
      continue;
    }
    if (next == kNever) continue;  // never used again: admitting it cannot help
    if (resident.size() == capacity) {
      for (;;) {  // drop heap entries of evicted blocks and superseded next uses
        const auto& [use, candidate] = farthest.top();
        const auto it                = resident.find(candidate);
        if (it != resident.end() && it->second == use) break;
        farthest.pop();
      }
      if (farthest.top().first <= next) continue;  // everything resident is needed sooner
      resident.erase(farthest.top().second);
      farthest.pop();
    }
    resident.emplace(block, next);
    farthest.emplace(next, block);
  }
  return hits;
}

CapacitySpec parse_capacity_spec(const std::string& text) {
  const bool percent       = !text.empty() && text.back() == '%';
  const std::string number = percent ? text.substr(0, text.size() - 1) : text;
  std::size_t used         = 0;
  double value             = 0;
  try {
    value = std::stod(number, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  KVO_EXPECTS(used == number.size() && used > 0 && std::isfinite(value) && value > 0,
              "capacity '" + text + "' is not a positive number of blocks or a percentage");
  KVO_EXPECTS(percent || std::floor(value) == value,
              "capacity '" + text + "' must be a whole number of blocks");
  KVO_EXPECTS(!percent || value <= 100,
              "capacity '" + text + "' is above 100% of the trace's distinct blocks");
  return CapacitySpec{.text = text, .percent = percent, .value = value};
}

std::size_t CapacitySpec::blocks(std::size_t distinct_ids) const {
  const double count = percent ? std::round(value * double(distinct_ids) / 100.0) : value;
  KVO_EXPECTS(count >= 1,
              "capacity '" + text + "' gives 0 blocks of the trace's " +
                  std::to_string(distinct_ids) + " distinct ones");
  return static_cast<std::size_t>(count);
}

std::size_t parse_capacity(const std::string& text, std::size_t distinct_ids) {
  return parse_capacity_spec(text).blocks(distinct_ids);
}

}  // namespace kvoffload::replay
