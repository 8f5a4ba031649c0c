// Prometheus text exposition of manager statistics (see include/kvoffload/metrics.hpp).
#include <kvoffload/concurrent_manager.hpp>
#include <kvoffload/error.hpp>
#include <kvoffload/filter_manager.hpp>
#include <kvoffload/metrics.hpp>

#include <cstdint>
#include <string>
#include <unordered_set>
#include <utility>

namespace kvoffload {
namespace {

/// A label value with backslash, double quote and newline escaped, as the format requires.
std::string escape_label(std::string_view value) {
  std::string escaped;
  escaped.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '"') {
      escaped += "\\\"";
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

enum class Kind { kCounter, kGauge };

/// One metric family: its name after the prefix, kind, help text and how to read one value.
template <class Stats>
struct Family {
  std::string_view name;
  Kind kind;
  std::string_view help;
  std::uint64_t (*read)(const Stats&);
};

#define KVO_FIELD(type, field) [](const type& s) -> std::uint64_t { return s.field; }

constexpr Family<ManagerStats> kManagerFamilies[] = {
    {"lookups_total", Kind::kCounter, "lookup() calls", KVO_FIELD(ManagerStats, lookups)},
    {"lookup_blocks_total",
     Kind::kCounter,
     "Block hashes passed to lookup()",
     KVO_FIELD(ManagerStats, lookup_blocks)},
    {"hits_total",
     Kind::kCounter,
     "Blocks inside the ready prefix lookup() reported",
     KVO_FIELD(ManagerStats, hits)},
    {"misses_total",
     Kind::kCounter,
     "Blocks past the ready prefix lookup() reported",
     KVO_FIELD(ManagerStats, misses)},
    {"stores_total",
     Kind::kCounter,
     "Blocks allocated by prepare_store()",
     KVO_FIELD(ManagerStats, stores)},
    {"stores_completed_total",
     Kind::kCounter,
     "Blocks made ready by complete_store(success)",
     KVO_FIELD(ManagerStats, stores_completed)},
    {"stores_failed_total",
     Kind::kCounter,
     "Pending blocks dropped by complete_store(failure)",
     KVO_FIELD(ManagerStats, stores_failed)},
    {"store_rejections_total",
     Kind::kCounter,
     "prepare_store() calls refused for lack of evictable room",
     KVO_FIELD(ManagerStats, store_rejections)},
    {"stores_declined_total",
     Kind::kCounter,
     "New blocks a policy's admission chose not to store",
     KVO_FIELD(ManagerStats, stores_declined)},
    {"evictions_total",
     Kind::kCounter,
     "Blocks evicted by prepare_store()",
     KVO_FIELD(ManagerStats, evictions)},
    {"loads_total",
     Kind::kCounter,
     "Block references taken by prepare_load()",
     KVO_FIELD(ManagerStats, loads)},
    {"capacity_blocks", Kind::kGauge, "Slots in total", KVO_FIELD(ManagerStats, capacity)},
    {"pending_blocks",
     Kind::kGauge,
     "Blocks allocated and not yet completed",
     KVO_FIELD(ManagerStats, pending)},
    {"ready_blocks", Kind::kGauge, "Ready blocks, pinned or idle", KVO_FIELD(ManagerStats, ready)},
    {"pinned_blocks",
     Kind::kGauge,
     "Ready blocks with at least one load reference",
     KVO_FIELD(ManagerStats, pinned)},
    {"evictable_blocks", Kind::kGauge, "Ready idle blocks", KVO_FIELD(ManagerStats, evictable)},
    {"free_slots", Kind::kGauge, "Slots never used or freed", KVO_FIELD(ManagerStats, free_slots)},
    {"metadata_bytes",
     Kind::kGauge,
     "Host memory of the manager's bookkeeping, sketches included",
     KVO_FIELD(ManagerStats, metadata_bytes)},
    {"sketch_bytes",
     Kind::kGauge,
     "Part of metadata_bytes in frequency sketches and sampled statistics",
     KVO_FIELD(ManagerStats, sketch_bytes)},
};

constexpr Family<TieredStats> kTieredFamilies[] = {
    {"demotions_total", Kind::kCounter, "Demotion plans made", KVO_FIELD(TieredStats, demotions)},
    {"promotions_total",
     Kind::kCounter,
     "Promotion plans made",
     KVO_FIELD(TieredStats, promotions)},
    {"prefetches_total", Kind::kCounter, "Prefetch plans made", KVO_FIELD(TieredStats, prefetches)},
    {"dropped_blocks_total",
     Kind::kCounter,
     "Blocks dropped by the last tier or by a failed demotion",
     KVO_FIELD(TieredStats, dropped)},
    {"lookups_deferred_total",
     Kind::kCounter,
     "lookup() calls answered retry-later (a block in flight)",
     KVO_FIELD(TieredStats, lookups_deferred)},
    {"prefetch_hints_total",
     Kind::kCounter,
     "Prefetch hints queued",
     KVO_FIELD(TieredStats, prefetch_hints)},
    {"prefetch_dropped_absent_total",
     Kind::kCounter,
     "Prefetch hints for absent or evicted blocks",
     KVO_FIELD(TieredStats, prefetch_dropped_absent)},
    {"prefetch_dropped_other_total",
     Kind::kCounter,
     "Prefetch hints for blocks already fast or not movable",
     KVO_FIELD(TieredStats, prefetch_dropped_other)},
    {"transfers_in_flight",
     Kind::kGauge,
     "Transfer plans not yet completed",
     KVO_FIELD(TieredStats, in_flight)},
};

constexpr Family<TieredStats::Tier> kTierFamilies[] = {
    {"tier_capacity_blocks",
     Kind::kGauge,
     "Slots of the tier",
     KVO_FIELD(TieredStats::Tier, capacity)},
    {"tier_ready_blocks",
     Kind::kGauge,
     "Ready blocks in the tier",
     KVO_FIELD(TieredStats::Tier, ready)},
    {"tier_pending_blocks",
     Kind::kGauge,
     "Pending blocks in the tier (stores and transfer destinations)",
     KVO_FIELD(TieredStats::Tier, pending)},
    {"tier_free_slots",
     Kind::kGauge,
     "Free slots of the tier",
     KVO_FIELD(TieredStats::Tier, free_slots)},
};

#undef KVO_FIELD

template <class Stats>
void header(std::ostream& out, const Family<Stats>& family) {
  out << "# HELP kvoffload_" << family.name << ' ' << family.help << ".\n"
      << "# TYPE kvoffload_" << family.name << ' '
      << (family.kind == Kind::kCounter ? "counter" : "gauge") << '\n';
}

}  // namespace

TieredOffloadingManager* find_tiered_manager(OffloadingManager& manager) {
  if (auto* tiered = dynamic_cast<TieredOffloadingManager*>(&manager)) return tiered;
  if (auto* filter = dynamic_cast<FilterReusedOffloadingManager*>(&manager)) {
    return find_tiered_manager(filter->backing());
  }
  if (auto* concurrent = dynamic_cast<ConcurrentManager*>(&manager);
      concurrent != nullptr && concurrent->shards() == 1) {
    return concurrent->with_lock(
        [](OffloadingManager& inner) { return find_tiered_manager(inner); });
  }
  return nullptr;
}

const TieredOffloadingManager* find_tiered_manager(const OffloadingManager& manager) {
  // Only reads: with_lock is the one way in to a mutex wrapper's manager.
  return find_tiered_manager(const_cast<OffloadingManager&>(manager));
}

ManagerMetrics collect_metrics(const OffloadingManager& manager, std::string name) {
  ManagerMetrics metrics{.name = std::move(name), .stats = manager.stats()};
  if (const TieredOffloadingManager* tiered = find_tiered_manager(manager)) {
    metrics.tiered = tiered->tiered_stats();
  }
  return metrics;
}

void write_prometheus(std::ostream& out, std::span<const ManagerMetrics> managers) {
  std::unordered_set<std::string_view> names;
  bool any_tiered = false;
  for (const ManagerMetrics& m : managers) {
    KVO_EXPECTS(!m.name.empty(), "write_prometheus: a manager has an empty name");
    KVO_EXPECTS(names.insert(m.name).second,
                "write_prometheus: two managers are named '" + m.name + "'");
    any_tiered = any_tiered || m.tiered.has_value();
  }
  for (const auto& family : kManagerFamilies) {
    header(out, family);
    for (const ManagerMetrics& m : managers) {
      out << "kvoffload_" << family.name << "{manager=\"" << escape_label(m.name) << "\"} "
          << family.read(m.stats) << '\n';
    }
  }
  if (!any_tiered) return;
  for (const auto& family : kTieredFamilies) {
    header(out, family);
    for (const ManagerMetrics& m : managers) {
      if (!m.tiered) continue;
      out << "kvoffload_" << family.name << "{manager=\"" << escape_label(m.name) << "\"} "
          << family.read(*m.tiered) << '\n';
    }
  }
  for (const auto& family : kTierFamilies) {
    header(out, family);
    for (const ManagerMetrics& m : managers) {
      if (!m.tiered) continue;
      for (std::size_t t = 0; t < m.tiered->tiers.size(); ++t) {
        const TieredStats::Tier& tier = m.tiered->tiers[t];
        out << "kvoffload_" << family.name << "{manager=\"" << escape_label(m.name) << "\",tier=\""
            << t << "\",medium=\"" << to_string(tier.medium) << "\"} " << family.read(tier) << '\n';
      }
    }
  }
}

void write_prometheus(std::ostream& out, const OffloadingManager& manager, std::string_view name) {
  const ManagerMetrics metrics = collect_metrics(manager, std::string{name});
  write_prometheus(out, std::span{&metrics, 1});
}

}  // namespace kvoffload
