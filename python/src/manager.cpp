// Managers and their value types for Python.
#include "bindings.hpp"
#include "hashes.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/metrics.hpp>

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <sstream>

namespace nb = nanobind;
using namespace nb::literals;

namespace kvoffload::python {

Manager::Manager(std::unique_ptr<OffloadingManager> manager,
                 std::string spec,
                 std::size_t block_size)
    : manager_{std::move(manager)},
      tiered_{find_tiered_manager(*manager_)},
      spec_{std::move(spec)},
      block_size_{block_size} {}

void Manager::require_tiered(const char* what) const {
  KVO_EXPECTS(tiered_ != nullptr,
              std::string{what} + " needs a tiered manager (or one under +filter or +mutex); '" +
                  spec_ + "' is not");
}

namespace {

std::string stats_repr(const ManagerStats& s) {
  std::ostringstream out;
  out << "ManagerStats(lookups=" << s.lookups << ", lookup_blocks=" << s.lookup_blocks
      << ", hits=" << s.hits << ", misses=" << s.misses << ", stores=" << s.stores
      << ", stores_completed=" << s.stores_completed << ", stores_failed=" << s.stores_failed
      << ", store_rejections=" << s.store_rejections << ", stores_declined=" << s.stores_declined
      << ", evictions=" << s.evictions << ", loads=" << s.loads << ", capacity=" << s.capacity
      << ", pending=" << s.pending << ", ready=" << s.ready << ", pinned=" << s.pinned
      << ", evictable=" << s.evictable << ", free_slots=" << s.free_slots
      << ", metadata_bytes=" << s.metadata_bytes << ", sketch_bytes=" << s.sketch_bytes << ")";
  return out.str();
}

nb::dict stats_dict(const ManagerStats& s) {
  nb::dict d;
  d["lookups"]          = s.lookups;
  d["lookup_blocks"]    = s.lookup_blocks;
  d["hits"]             = s.hits;
  d["misses"]           = s.misses;
  d["stores"]           = s.stores;
  d["stores_completed"] = s.stores_completed;
  d["stores_failed"]    = s.stores_failed;
  d["store_rejections"] = s.store_rejections;
  d["stores_declined"]  = s.stores_declined;
  d["evictions"]        = s.evictions;
  d["loads"]            = s.loads;
  d["capacity"]         = s.capacity;
  d["pending"]          = s.pending;
  d["ready"]            = s.ready;
  d["pinned"]           = s.pinned;
  d["evictable"]        = s.evictable;
  d["free_slots"]       = s.free_slots;
  d["metadata_bytes"]   = s.metadata_bytes;
  d["sketch_bytes"]     = s.sketch_bytes;
  return d;
}

}  // namespace

void bind_types(nb::module_& m) {
  nb::enum_<Medium>(m, "Medium", "Where a block's bytes live.")
      .value("GPU", Medium::kGpu)
      .value("CPU", Medium::kCpu)
      .value("DISK", Medium::kDisk)
      .def("__str__", [](Medium medium) { return std::string{to_string(medium)}; });

  nb::class_<LoadStoreSpec>(m,
                            "LoadStoreSpec",
                            "Where to load from or store to: one slot id per block hash, in the "
                            "caller's order.")
      .def_ro("medium", &LoadStoreSpec::medium)
      .def_ro("block_ids", &LoadStoreSpec::block_ids, "Slot ids, index for index with the hashes.")
      .def("__repr__", [](const LoadStoreSpec& s) {
        return "LoadStoreSpec(medium=" + std::string{to_string(s.medium)} +
               ", block_ids=" + std::to_string(s.block_ids.size()) + " slots)";
      });

  nb::class_<PrepareStoreOutput>(
      m, "PrepareStoreOutput", "What a successful prepare_store decided.")
      .def_ro("block_hashes_to_store",
              &PrepareStoreOutput::block_hashes_to_store,
              "Hashes the caller must now write (input order; present and declined hashes "
              "skipped).")
      .def_ro("store_spec",
              &PrepareStoreOutput::store_spec,
              "Slots for block_hashes_to_store, index for index.")
      .def_ro("block_hashes_evicted",
              &PrepareStoreOutput::block_hashes_evicted,
              "Hashes evicted to make room, in eviction order.")
      .def("__repr__", [](const PrepareStoreOutput& o) {
        return "PrepareStoreOutput(to_store=" + std::to_string(o.block_hashes_to_store.size()) +
               ", evicted=" + std::to_string(o.block_hashes_evicted.size()) + ")";
      });

  nb::class_<OffloadingEvent>(
      m, "OffloadingEvent", "One change of the set of ready blocks (for a KV-event consumer).")
      .def_ro("block_hashes", &OffloadingEvent::block_hashes)
      .def_ro("block_size", &OffloadingEvent::block_size)
      .def_ro("medium", &OffloadingEvent::medium)
      .def_ro("removed",
              &OffloadingEvent::removed,
              "True: removed or evicted; False: stored (now ready).")
      .def("__repr__", [](const OffloadingEvent& e) {
        return std::string{"OffloadingEvent("} + (e.removed ? "removed " : "stored ") +
               std::to_string(e.block_hashes.size()) + " blocks, " + to_string(e.medium) + ")";
      });

  nb::class_<ManagerStats> stats(
      m,
      "ManagerStats",
      "Counters (cumulative, in blocks unless named otherwise) and gauges (current counts) of "
      "a manager, read together.");
#define KVO_STAT(field, doc) stats.def_ro(#field, &ManagerStats::field, doc)
  KVO_STAT(lookups, "lookup() calls");
  KVO_STAT(lookup_blocks, "hashes passed to lookup()");
  KVO_STAT(hits, "hashes inside the ready prefix lookup() reported");
  KVO_STAT(misses, "hashes past that prefix");
  KVO_STAT(stores, "blocks allocated by prepare_store()");
  KVO_STAT(stores_completed, "blocks made ready by complete_store(..., True)");
  KVO_STAT(stores_failed, "pending blocks dropped by complete_store(..., False)");
  KVO_STAT(store_rejections, "prepare_store() calls answered None");
  KVO_STAT(stores_declined, "new blocks a policy's admission chose not to store");
  KVO_STAT(evictions, "blocks evicted by prepare_store()");
  KVO_STAT(loads, "blocks referenced by prepare_load()");
  KVO_STAT(capacity, "slots in total");
  KVO_STAT(pending, "allocated, not yet completed");
  KVO_STAT(ready, "ready, pinned or idle");
  KVO_STAT(pinned, "ready with at least one load reference");
  KVO_STAT(evictable, "ready and idle");
  KVO_STAT(free_slots, "never used or freed");
  KVO_STAT(metadata_bytes, "host memory the manager's bookkeeping holds");
  KVO_STAT(sketch_bytes, "part of metadata_bytes in sketches / sampled statistics");
#undef KVO_STAT
  stats.def("as_dict", &stats_dict, "Every field by name.").def("__repr__", &stats_repr);

  nb::enum_<TransferKind>(m, "TransferKind")
      .value("DEMOTION", TransferKind::kDemotion)
      .value("PROMOTION", TransferKind::kPromotion)
      .value("PREFETCH", TransferKind::kPrefetch);

  nb::class_<TransferPlan>(m,
                           "TransferPlan",
                           "One move of a tiered manager: copy `hash`'s block from the source "
                           "tier's slot to the destination tier's slot, then complete_transfer.")
      .def_ro("id", &TransferPlan::id)
      .def_ro("kind", &TransferPlan::kind)
      .def_ro("hash", &TransferPlan::hash)
      .def_ro("source_tier", &TransferPlan::source_tier)
      .def_ro("source_medium", &TransferPlan::source_medium)
      .def_ro("source_slot", &TransferPlan::source_slot)
      .def_ro("destination_tier", &TransferPlan::destination_tier)
      .def_ro("destination_medium", &TransferPlan::destination_medium)
      .def_ro("destination_slot", &TransferPlan::destination_slot);

  nb::class_<TierLocation>(m, "TierLocation", "A block's tier, that tier's medium and slot.")
      .def_ro("tier", &TierLocation::tier)
      .def_ro("medium", &TierLocation::medium)
      .def_ro("slot", &TierLocation::slot);

  nb::class_<TieredStats> tiered(m, "TieredStats", "Per-tier gauges and the tiered counters.");
  nb::class_<TieredStats::Tier>(tiered, "Tier")
      .def_ro("medium", &TieredStats::Tier::medium)
      .def_ro("capacity", &TieredStats::Tier::capacity)
      .def_ro("ready", &TieredStats::Tier::ready)
      .def_ro("pending", &TieredStats::Tier::pending)
      .def_ro("free_slots", &TieredStats::Tier::free_slots);
  tiered.def_ro("tiers", &TieredStats::tiers)
      .def_ro("demotions", &TieredStats::demotions)
      .def_ro("promotions", &TieredStats::promotions)
      .def_ro("prefetches", &TieredStats::prefetches)
      .def_ro("dropped", &TieredStats::dropped)
      .def_ro("in_flight", &TieredStats::in_flight)
      .def_ro("lookups_deferred", &TieredStats::lookups_deferred)
      .def_ro("prefetch_hints", &TieredStats::prefetch_hints)
      .def_ro("prefetch_dropped_absent", &TieredStats::prefetch_dropped_absent)
      .def_ro("prefetch_dropped_other", &TieredStats::prefetch_dropped_other);
}

void bind_manager(nb::module_& m) {
  nb::class_<Manager>(
      m,
      "Manager",
      "An offloading manager (vLLM v1's OffloadingManager contract): decides which KV blocks\n"
      "live in its slots and which to evict; it never moves bytes.\n\n"
      "A block is *pending* after prepare_store (not a hit, not loadable, not evictable), "
      "*ready*\nafter complete_store(..., True), and *pinned* while prepare_load references "
      "outnumber\ncomplete_load calls. Misuse raises kvoffload.LogicError (a ValueError) with "
      "the C++\nmessage naming the hash, and changes nothing.\n\n"
      "`hashes` is an int, any iterable of ints, or a buffer of 64-bit integers (array('Q'),\n"
      "memoryview, numpy uint64), which is read in place. Every call releases the GIL while "
      "the\nmanager works; calls on one manager from several threads are serialised.")
      .def(
          "lookup",
          [](Manager& self, const HashArg& hashes) {
            const auto view = hashes.view();
            return self.run([&](OffloadingManager& m) { return m.lookup(view); });
          },
          "hashes"_a,
          "Number of leading hashes that are ready (stops at the first absent or pending one);\n"
          "None means retry later (a tiered block in flight). Changes no recency.")
      .def(
          "touch",
          [](Manager& self, const HashArg& hashes) {
            const auto view = hashes.view();
            self.run([&](OffloadingManager& m) { m.touch(view); });
          },
          "hashes"_a,
          "Mark blocks recently used, last hash first, so the first ends most recent. Absent\n"
          "hashes are ignored (density learns from them: touch each request's hashes).")
      .def(
          "prepare_load",
          [](Manager& self, const HashArg& hashes) {
            const auto view = hashes.view();
            return self.run([&](OffloadingManager& m) { return m.prepare_load(view); });
          },
          "hashes"_a,
          "Pin ready blocks for reading (one reference each); slot ids in input order.\n"
          "Raises LogicError naming a hash that is absent or pending; nothing changes then.")
      .def(
          "complete_load",
          [](Manager& self, const HashArg& hashes) {
            const auto view = hashes.view();
            self.run([&](OffloadingManager& m) { m.complete_load(view); });
          },
          "hashes"_a,
          "Drop one reference per hash. Raises LogicError if a hash holds none.")
      .def(
          "prepare_store",
          [](Manager& self, const HashArg& hashes) {
            const auto view = hashes.view();
            return self.run([&](OffloadingManager& m) { return m.prepare_store(view); });
          },
          "hashes"_a,
          "Allocate slots for the hashes not yet present, evicting idle blocks as needed. All\n"
          "or nothing: None (and no change) when not enough blocks can be evicted. Copy exactly\n"
          "the blocks of block_hashes_to_store (an admitting policy may leave some out).")
      .def(
          "complete_store",
          [](Manager& self, const HashArg& hashes, bool success) {
            const auto view = hashes.view();
            self.run([&](OffloadingManager& m) { m.complete_store(view, success); });
          },
          "hashes"_a,
          "success"_a = true,
          "Confirm (success) or abandon stores. On success every hash must be present (else\n"
          "LogicError) and pending ones become ready; on failure pending ones are removed.")
      .def(
          "take_events",
          [](Manager& self) {
            return self.run([](OffloadingManager& m) { return m.take_events(); });
          },
          "Events queued since the last call, oldest first; clears the queue.")
      .def(
          "stats",
          [](Manager& self) { return self.run([](OffloadingManager& m) { return m.stats(); }); },
          "Counters and current gauges.")
      .def(
          "clear",
          [](Manager& self) { self.run([](OffloadingManager& m) { m.clear(); }); },
          "Remove every ready and idle block (one removed event); pinned and pending stay.")
      .def(
          "metrics_text",
          [](Manager& self, const std::string& name) {
            const ManagerMetrics metrics =
                self.run([&](const OffloadingManager& m) { return collect_metrics(m, name); });
            std::ostringstream out;
            write_prometheus(out, std::span{&metrics, 1});
            return out.str();
          },
          "name"_a = "default",
          "Every counter and gauge in the Prometheus text format, labelled manager=name.")
      .def_prop_ro("spec", &Manager::spec, "The spec the manager was built from.")
      .def_prop_ro("block_size", &Manager::block_size, "Carried into events unchanged.")
      .def_prop_ro("tiered", &Manager::tiered, "True for a tiered manager (tiered_* calls work).")
      .def_prop_ro(
          "plans_transfers",
          [](Manager& self) {
            return self.run([](OffloadingManager& m) { return m.plans_transfers(); });
          },
          "True when the manager moves blocks between tiers of its own (tiered without instant).")
      // Tiered managers.
      .def(
          "tiered_stats",
          [](Manager& self) {
            return self.run_tiered("tiered_stats()",
                                   [](TieredOffloadingManager& t) { return t.tiered_stats(); });
          },
          "Per-tier gauges and tiered counters. Raises LogicError if the manager is not tiered.")
      .def(
          "take_transfer_plans",
          [](Manager& self) {
            return self.run_tiered("take_transfer_plans()", [](TieredOffloadingManager& t) {
              return t.take_transfer_plans();
            });
          },
          "Plans queued since the last call (demotions of stores) plus promotions, in a safe\n"
          "execution order.")
      .def(
          "complete_transfer",
          [](Manager& self, std::uint64_t plan_id, bool success) {
            self.run_tiered("complete_transfer()", [&](TieredOffloadingManager& t) {
              t.complete_transfer(plan_id, success);
            });
          },
          "plan_id"_a,
          "success"_a = true,
          "Confirm (success) or abandon one plan.")
      .def(
          "lookup_tiers",
          [](Manager& self, const HashArg& hashes) {
            const auto view = hashes.view();
            return self.run_tiered(
                "lookup_tiers()", [&](TieredOffloadingManager& t) { return t.lookup_tiers(view); });
          },
          "hashes"_a,
          "The tier of each hash that is ready and not in flight; None otherwise.")
      .def(
          "prepare_load_tiers",
          [](Manager& self, const HashArg& hashes) {
            const auto view = hashes.view();
            return self.run_tiered("prepare_load_tiers()", [&](TieredOffloadingManager& t) {
              return t.prepare_load_tiers(view);
            });
          },
          "hashes"_a,
          "prepare_load, answering each block's tier, medium and slot inside its tier.")
      .def(
          "hint_prefetch",
          [](Manager& self, const HashArg& hashes) {
            const auto view = hashes.view();
            self.run_tiered("hint_prefetch()",
                            [&](TieredOffloadingManager& t) { t.hint_prefetch(view); });
          },
          "hashes"_a,
          "Queue prefetch hints (judged when processed).")
      .def(
          "process_prefetch",
          [](Manager& self) {
            return self.run_tiered("process_prefetch()",
                                   [](TieredOffloadingManager& t) { return t.process_prefetch(); });
          },
          "Up to `lookahead` prefetch plans, each after the demotions that make its room.")
      .def(
          "complete_prefetch",
          [](Manager& self, const HashArg& hashes, bool success) {
            const auto view = hashes.view();
            self.run_tiered("complete_prefetch()", [&](TieredOffloadingManager& t) {
              t.complete_prefetch(view, success);
            });
          },
          "hashes"_a,
          "success"_a = true,
          "Complete the prefetch of each hash.")
      .def("__repr__",
           [](const Manager& self) { return "<kvoffload.Manager '" + self.spec() + "'>"; });

  m.def(
      "make_manager",
      [](const std::string& spec,
         std::size_t num_blocks,
         std::size_t block_size,
         bool enable_events) {
        auto manager = make_manager(spec, num_blocks, block_size, enable_events);
        return new Manager(std::move(manager), spec, block_size);
      },
      "spec"_a,
      "num_blocks"_a,
      "block_size"_a    = 0,
      "enable_events"_a = true,
      nb::rv_policy::take_ownership,
      "A manager from a spec such as 'lru', 'arc', 'density', 'weighted:frequency_weight=0.5',\n"
      "'tiered:hot=0.2,warm=0.3' or 'lru+filter:threshold=2+mutex' (policy_specs() lists the\n"
      "policies, spec_help() every option). A bad spec raises LogicError naming the offending\n"
      "part.");
  m.def("policy_specs",
        &policy_specs,
        "Every policy make_manager accepts, as a valid spec with default options.");
  m.def("spec_help", &spec_help, "Every policy and decorator with its options and defaults.");
}

}  // namespace kvoffload::python
