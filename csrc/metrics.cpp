// Prometheus text exposition of manager statistics (see include/kvoffload/metrics.hpp).
#include <kvoffload/concurrent_manager.hpp>
#include <kvoffload/error.hpp>
#include <kvoffload/filter_manager.hpp>
#include <kvoffload/metrics.hpp>
#include <kvoffload/offloader.hpp>

#include <charconv>
#include <cstdint>
#include <iterator>
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
    {"adopted_blocks_total",
     Kind::kCounter,
     "Blocks taken in ready by adopt_ready (a restart's recovery)",
     KVO_FIELD(TieredStats, adopted)},
    {"discarded_blocks_total",
     Kind::kCounter,
     "Ready blocks dropped by discard (found corrupt)",
     KVO_FIELD(TieredStats, discarded)},
    {"transfers_in_flight",
     Kind::kGauge,
     "Transfer plans not yet completed",
     KVO_FIELD(TieredStats, in_flight)},
};

constexpr Family<OffloaderStats> kOffloaderFamilies[] = {
    {"offloader_bytes_stored_total",
     Kind::kCounter,
     "Bytes stored GPU to host by jobs that succeeded",
     KVO_FIELD(OffloaderStats, bytes_stored)},
    {"offloader_bytes_loaded_total",
     Kind::kCounter,
     "Bytes loaded host to GPU by jobs that succeeded",
     KVO_FIELD(OffloaderStats, bytes_loaded)},
    {"offloader_disk_bytes_written_total",
     Kind::kCounter,
     "Bytes written host to disk by demotions that succeeded",
     KVO_FIELD(OffloaderStats, bytes_written_disk)},
    {"offloader_disk_bytes_read_total",
     Kind::kCounter,
     "Bytes read disk to host by promotions and prefetches that succeeded",
     KVO_FIELD(OffloaderStats, bytes_read_disk)},
    {"offloader_disk_writes_total",
     Kind::kCounter,
     "Blocks written to disk",
     KVO_FIELD(OffloaderStats, demotions)},
    {"offloader_disk_writes_dropped_total",
     Kind::kCounter,
     "Demotions not attempted because too many disk jobs were in flight",
     KVO_FIELD(OffloaderStats, demotions_dropped)},
    {"offloader_disk_writes_failed_total",
     Kind::kCounter,
     "Demotions whose write failed (the block is dropped)",
     KVO_FIELD(OffloaderStats, demotions_failed)},
    {"offloader_disk_reads_total",
     Kind::kCounter,
     "Blocks read up to the host (promotions and prefetches)",
     KVO_FIELD(OffloaderStats, promotions)},
    {"offloader_disk_reads_dropped_total",
     Kind::kCounter,
     "Promotions and prefetches not attempted because the disk was busy",
     KVO_FIELD(OffloaderStats, reads_dropped)},
    {"offloader_disk_reads_failed_total",
     Kind::kCounter,
     "Disk reads that failed, lost blocks included",
     KVO_FIELD(OffloaderStats, reads_failed)},
    {"offloader_disk_blocks_lost_total",
     Kind::kCounter,
     "Disk blocks that failed the hash or CRC check",
     KVO_FIELD(OffloaderStats, blocks_lost)},
    {"offloader_disk_blocks_recovered_total",
     Kind::kCounter,
     "Blocks adopted from a persistent store at construction",
     KVO_FIELD(OffloaderStats, blocks_recovered)},
    {"offloader_lookups_deferred_total",
     Kind::kCounter,
     "Lookups answered retry-later while a block came up from disk",
     KVO_FIELD(OffloaderStats, lookups_deferred)},
    {"offloader_lookups_disk_busy_total",
     Kind::kCounter,
     "Lookups answered the host part only because disk jobs were at the cap",
     KVO_FIELD(OffloaderStats, lookups_disk_busy)},
    {"offloader_stores_deferred_total",
     Kind::kCounter,
     "Stores that waited for a demotion to read their host slots",
     KVO_FIELD(OffloaderStats, stores_deferred)},
    {"offloader_disk_jobs_in_flight",
     Kind::kGauge,
     "Disk jobs submitted or waiting to be",
     KVO_FIELD(OffloaderStats, disk_jobs_in_flight)},
};

/// The histograms of an Offloader, by the `job` label they carry.
constexpr std::pair<std::string_view, LatencyHistogram OffloaderStats::*> kLatencies[] = {
    {"store", &OffloaderStats::store_latency},
    {"load", &OffloaderStats::load_latency},
    {"disk_write", &OffloaderStats::disk_write_latency},
    {"disk_read", &OffloaderStats::disk_read_latency},
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

/// A bucket bound or a sum in the shortest text that reads back as the same double.
std::string number(double value) {
  char text[64];  // fixed notation ("0.0005", not "5e-04"), as Prometheus clients write bounds
  auto result = std::to_chars(std::begin(text), std::end(text), value, std::chars_format::fixed);
  if (result.ec != std::errc{}) result = std::to_chars(std::begin(text), std::end(text), value);
  return {std::begin(text), result.ptr};
}

void write_histogram(std::ostream& out,
                     std::string_view manager,
                     std::string_view job,
                     const LatencyHistogram& h) {
  const std::string labels =
      "manager=\"" + escape_label(manager) + "\",job=\"" + std::string{job} + "\"";
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < LatencyHistogram::kBoundsSeconds.size(); ++b) {
    cumulative += h.buckets[b];
    out << "kvoffload_offloader_job_latency_seconds_bucket{" << labels << ",le=\""
        << number(LatencyHistogram::kBoundsSeconds[b]) << "\"} " << cumulative << '\n';
  }
  out << "kvoffload_offloader_job_latency_seconds_bucket{" << labels << ",le=\"+Inf\"} " << h.count
      << '\n'
      << "kvoffload_offloader_job_latency_seconds_sum{" << labels << "} " << number(h.sum_seconds)
      << '\n'
      << "kvoffload_offloader_job_latency_seconds_count{" << labels << "} " << h.count << '\n';
}

/// `into` += `shard`, tier by tier (the shards of a +sharded manager are built alike).
void add_tiered(TieredStats& into, const TieredStats& shard) {
  if (into.tiers.empty()) into.tiers.resize(shard.tiers.size());
  for (std::size_t t = 0; t < shard.tiers.size() && t < into.tiers.size(); ++t) {
    into.tiers[t].medium = shard.tiers[t].medium;
    into.tiers[t].capacity += shard.tiers[t].capacity;
    into.tiers[t].ready += shard.tiers[t].ready;
    into.tiers[t].pending += shard.tiers[t].pending;
    into.tiers[t].free_slots += shard.tiers[t].free_slots;
  }
  into.demotions += shard.demotions;
  into.promotions += shard.promotions;
  into.prefetches += shard.prefetches;
  into.dropped += shard.dropped;
  into.in_flight += shard.in_flight;
  into.lookups_deferred += shard.lookups_deferred;
  into.prefetch_hints += shard.prefetch_hints;
  into.prefetch_dropped_absent += shard.prefetch_dropped_absent;
  into.prefetch_dropped_other += shard.prefetch_dropped_other;
  into.adopted += shard.adopted;
  into.discarded += shard.discarded;
}

/// The tier statistics of a +sharded manager of tiered shards, summed; nullopt otherwise.
std::optional<TieredStats> sharded_tiered_stats(const OffloadingManager& manager) {
  const auto* concurrent = dynamic_cast<const ConcurrentManager*>(&manager);
  if (concurrent == nullptr || concurrent->shards() < 2) return std::nullopt;
  std::optional<TieredStats> sum;
  concurrent->for_each_shard([&](const OffloadingManager& shard) {
    if (const TieredOffloadingManager* tiered = find_tiered_manager(shard)) {
      if (!sum) sum.emplace();
      add_tiered(*sum, tiered->tiered_stats());
    }
  });
  return sum;
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
  } else {
    metrics.tiered = sharded_tiered_stats(manager);
  }
  return metrics;
}

ManagerMetrics collect_metrics(const Offloader& offloader, std::string name) {
  ManagerMetrics metrics = collect_metrics(offloader.manager(), std::move(name));
  metrics.offloader      = offloader.stats();
  return metrics;
}

void write_prometheus(std::ostream& out, std::span<const ManagerMetrics> managers) {
  std::unordered_set<std::string_view> names;
  bool any_tiered = false, any_offloader = false;
  for (const ManagerMetrics& m : managers) {
    any_offloader = any_offloader || m.offloader.has_value();
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
  if (any_offloader) {
    for (const auto& family : kOffloaderFamilies) {
      header(out, family);
      for (const ManagerMetrics& m : managers) {
        if (!m.offloader) continue;
        out << "kvoffload_" << family.name << "{manager=\"" << escape_label(m.name) << "\"} "
            << family.read(*m.offloader) << '\n';
      }
    }
    out << "# HELP kvoffload_offloader_job_latency_seconds Seconds from a job's submission until "
           "the Offloader saw it finish, by job kind.\n"
        << "# TYPE kvoffload_offloader_job_latency_seconds histogram\n";
    for (const ManagerMetrics& m : managers) {
      if (!m.offloader) continue;
      for (const auto& [job, field] : kLatencies)
        write_histogram(out, m.name, job, (*m.offloader).*field);
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
