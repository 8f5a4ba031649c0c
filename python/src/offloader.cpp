// The Offloader for Python: GPU pointers, CUDA events and job ids as ints.
#include "bindings.hpp"
#include "hashes.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/metrics.hpp>
#include <kvoffload/offloader.hpp>

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <mutex>
#include <sstream>
#include <tuple>

namespace nb = nanobind;
using namespace nb::literals;

namespace kvoffload::python {
namespace {

/// An Offloader behind a mutex of its own; calls run without the GIL, like Manager's.
class PyOffloader {
 public:
  explicit PyOffloader(std::unique_ptr<Offloader> offloader) : offloader_{std::move(offloader)} {}

  template <class Work>
  decltype(auto) run(Work&& work) {
    nb::gil_scoped_release unlocked;
    std::lock_guard lock{mutex_};
    return std::forward<Work>(work)(*offloader_);
  }

 private:
  std::unique_ptr<Offloader> offloader_;
  std::mutex mutex_;
};

std::vector<BlockId> block_ids(const std::vector<std::int64_t>& ids) {
  return {ids.begin(), ids.end()};
}

nb::dict histogram_dict(const LatencyHistogram& h) {
  nb::dict d;
  d["count"]          = h.count;
  d["sum_seconds"]    = h.sum_seconds;
  d["buckets"]        = std::vector<std::uint64_t>(h.buckets.begin(), h.buckets.end());
  d["bounds_seconds"] = std::vector<double>(LatencyHistogram::kBoundsSeconds.begin(),
                                            LatencyHistogram::kBoundsSeconds.end());
  return d;
}

nb::dict offloader_stats_dict(const OffloaderStats& s) {
  nb::dict d;
  d["bytes_stored"]        = s.bytes_stored;
  d["bytes_loaded"]        = s.bytes_loaded;
  d["bytes_written_disk"]  = s.bytes_written_disk;
  d["bytes_read_disk"]     = s.bytes_read_disk;
  d["demotions"]           = s.demotions;
  d["demotions_dropped"]   = s.demotions_dropped;
  d["demotions_failed"]    = s.demotions_failed;
  d["promotions"]          = s.promotions;
  d["reads_dropped"]       = s.reads_dropped;
  d["reads_failed"]        = s.reads_failed;
  d["blocks_lost"]         = s.blocks_lost;
  d["blocks_recovered"]    = s.blocks_recovered;
  d["lookups_deferred"]    = s.lookups_deferred;
  d["lookups_disk_busy"]   = s.lookups_disk_busy;
  d["stores_deferred"]     = s.stores_deferred;
  d["disk_jobs_in_flight"] = s.disk_jobs_in_flight;
  d["store_latency"]       = histogram_dict(s.store_latency);
  d["load_latency"]        = histogram_dict(s.load_latency);
  d["disk_write_latency"]  = histogram_dict(s.disk_write_latency);
  d["disk_read_latency"]   = histogram_dict(s.disk_read_latency);
  return d;
}

TransferOptions options_of(std::uintptr_t wait_event, bool per_layer_events, bool gpu_busy) {
  return TransferOptions{.gpu_busy         = gpu_busy,
                         .wait_event       = reinterpret_cast<cudaEvent_t>(wait_event),
                         .per_layer_events = per_layer_events};
}

}  // namespace

transfer::KvLayout kv_layout_of(const std::vector<TensorTuple>& tensors,
                                std::size_t num_gpu_blocks,
                                std::size_t gpu_blocks_per_slot) {
  std::vector<transfer::KvTensor> kv;
  for (const auto& [base, stride, chunk, layer] : tensors) {
    kv.push_back({.base               = reinterpret_cast<std::byte*>(base),
                  .block_stride_bytes = stride,
                  .chunk_bytes        = chunk,
                  .layer              = layer});
  }
  return {std::move(kv), num_gpu_blocks, gpu_blocks_per_slot};
}

void bind_offloader(nb::module_& m) {
  nb::enum_<StoreTicket::Outcome>(m, "StoreOutcome")
      .value("SUBMITTED", StoreTicket::Outcome::kSubmitted)
      .value("NOTHING_TO_STORE", StoreTicket::Outcome::kNothingToStore)
      .value("NO_ROOM", StoreTicket::Outcome::kNoRoom);

  nb::class_<StoreTicket>(m, "StoreTicket", "What Offloader.store did.")
      .def_ro("outcome", &StoreTicket::outcome)
      .def_ro("job", &StoreTicket::job, "The job's id (SUBMITTED only).")
      .def_ro("stored", &StoreTicket::stored, "Hashes the job writes, in call order.")
      .def_ro("evicted", &StoreTicket::evicted, "Hashes evicted to make room.");

  nb::class_<FinishedJob>(m, "FinishedJob", "A finished job, already confirmed to the manager.")
      .def_ro("job", &FinishedJob::job)
      .def_prop_ro("is_store",
                   [](const FinishedJob& j) { return j.direction == transfer::Direction::kStore; })
      .def_ro("ok", &FinishedJob::ok)
      .def_ro("error", &FinishedJob::error, "Why it failed (ok is False).")
      .def_ro("hashes",
              &FinishedJob::hashes,
              "Stores: the blocks written, now ready (ok) or dropped. Loads: the blocks read.")
      .def_ro("gpu_blocks",
              &FinishedJob::gpu_blocks,
              "The GPU blocks the job read or wrote; only now may the caller reuse them.");

  nb::class_<PyOffloader>(
      m,
      "Offloader",
      "A manager and a transfer engine kept in step: offload and bring back KV blocks by hash.\n\n"
      "Stored blocks stay pending (no hit) until their copy has landed and are dropped if it\n"
      "failed; loaded blocks stay pinned until their copy has finished. GPU addresses, CUDA\n"
      "events and job ids are ints. The memory behind every address must outlive the\n"
      "Offloader. Calls release the GIL (wait blocks without it) and are serialised.")
      .def(
          "lookup",
          [](PyOffloader& self, const HashArg& hashes) {
            const auto view = hashes.view();
            return self.run([&](Offloader& o) { return o.lookup(view); });
          },
          "hashes"_a,
          "Leading hashes ready on the host (None: retry later).")
      .def(
          "touch",
          [](PyOffloader& self, const HashArg& hashes) {
            const auto view = hashes.view();
            self.run([&](Offloader& o) { o.touch(view); });
          },
          "hashes"_a,
          "Mark a request's blocks recently used.")
      .def(
          "load",
          [](PyOffloader& self,
             const HashArg& hashes,
             const std::vector<std::int64_t>& gpu_blocks,
             std::uintptr_t wait_event,
             bool per_layer_events) {
            const auto view  = hashes.view();
            const auto ids   = block_ids(gpu_blocks);
            const auto extra = options_of(wait_event, per_layer_events, false);
            return self.run([&](Offloader& o) { return o.load(view, ids, extra); });
          },
          "hashes"_a,
          "gpu_blocks"_a,
          "wait_event"_a       = 0,
          "per_layer_events"_a = false,
          "Load ready blocks into GPU blocks (k per hash, k = gpu_blocks_per_slot); returns the\n"
          "job id, None for no hashes. Raises LogicError naming a hash that is not ready.")
      .def(
          "store",
          [](PyOffloader& self,
             const HashArg& hashes,
             const std::vector<std::int64_t>& gpu_blocks,
             std::uintptr_t wait_event,
             bool gpu_busy) {
            const auto view  = hashes.view();
            const auto ids   = block_ids(gpu_blocks);
            const auto extra = options_of(wait_event, false, gpu_busy);
            return self.run([&](Offloader& o) { return o.store(view, ids, extra); });
          },
          "hashes"_a,
          "gpu_blocks"_a,
          "wait_event"_a = 0,
          "gpu_busy"_a   = false,
          "Offload the GPU blocks of the hashes not yet present (all or nothing). The job reads\n"
          "the GPU blocks of `stored` until poll() or wait() reports it.")
      .def(
          "poll",
          [](PyOffloader& self) { return self.run([](Offloader& o) { return o.poll(); }); },
          "Jobs finished since the last report, oldest first; never blocks.")
      .def(
          "wait",
          [](PyOffloader& self, std::uint64_t job) {
            return self.run([&](Offloader& o) { return o.wait(job); });
          },
          "job"_a,
          "Block (without the GIL) until `job` finishes; report it.")
      .def(
          "wait_all",
          [](PyOffloader& self) { return self.run([](Offloader& o) { return o.wait_all(); }); },
          "Block until every running job finishes; report them, oldest first.")
      .def_prop_ro(
          "jobs_in_flight",
          [](PyOffloader& self) {
            return self.run([](Offloader& o) { return o.jobs_in_flight(); });
          },
          "Jobs submitted and not yet reported.")
      .def(
          "take_events",
          [](PyOffloader& self) { return self.run([](Offloader& o) { return o.take_events(); }); },
          "The manager's events (stored / removed hashes).")
      .def(
          "stats",
          [](PyOffloader& self) {
            return self.run([](Offloader& o) { return o.manager().stats(); });
          },
          "The manager's counters and gauges.")
      .def(
          "offloader_stats",
          [](PyOffloader& self) {
            return offloader_stats_dict(self.run([](Offloader& o) { return o.stats(); }));
          },
          "The Offloader's own figures as a dict: bytes per medium, disk counters, and the job\n"
          "latency histograms (store, load, disk_write, disk_read: count, sum_seconds, buckets\n"
          "per upper bound in bounds_seconds, the last bucket above the last bound).")
      .def(
          "metrics_text",
          [](PyOffloader& self, const std::string& name) {
            const ManagerMetrics metrics =
                self.run([&](const Offloader& o) { return collect_metrics(o, name); });
            std::ostringstream out;
            write_prometheus(out, std::span{&metrics, 1});
            return out.str();
          },
          "name"_a = "default",
          "The manager's and the Offloader's counters, gauges and job latency histograms in the\n"
          "Prometheus text format.")
      .def_prop_ro(
          "description",
          [](PyOffloader& self) {
            return self.run([](Offloader& o) { return o.engine().description(); });
          },
          "The engine: the GPU, or 'host engine (...)' without a CUDA device.");

  m.def(
      "metrics_text",
      [](nb::dict sources) {
        std::vector<ManagerMetrics> metrics;
        for (auto [key, value] : sources) {
          std::string name = nb::cast<std::string>(key);
          if (PyOffloader* offloader = nullptr; nb::try_cast(value, offloader) && offloader) {
            metrics.push_back(
                offloader->run([&](const Offloader& o) { return collect_metrics(o, name); }));
          } else if (Manager* manager = nullptr; nb::try_cast(value, manager) && manager) {
            metrics.push_back(
                manager->run([&](const OffloadingManager& m) { return collect_metrics(m, name); }));
          } else {
            throw nb::type_error(("metrics_text: '" + name + "' is a " +
                                  nb::cast<std::string>(nb::str(value.type())) +
                                  ", neither a Manager nor an Offloader")
                                     .c_str());
          }
        }
        std::ostringstream out;
        write_prometheus(out, metrics);
        return out.str();
      },
      "sources"_a,
      "The figures of several managers and Offloaders ({name: manager or offloader}) in the\n"
      "Prometheus text format, family by family, each sample labelled manager=name.");

  m.def(
      "make_offloader",
      [](const std::string& spec,
         const std::vector<TensorTuple>& tensors,
         std::size_t num_gpu_blocks,
         std::size_t host_slots,
         std::size_t gpu_blocks_per_slot,
         bool force_host,
         int device) {
        const transfer::KvLayout layout =
            kv_layout_of(tensors, num_gpu_blocks, gpu_blocks_per_slot);
        const transfer::TransferEngineOptions options{.device = device, .force_host = force_host};
        nb::gil_scoped_release unlocked;  // pinning the host slots takes a while
        return new PyOffloader(make_offloader(spec, layout, host_slots, options));
      },
      "spec"_a,
      "tensors"_a,
      "num_gpu_blocks"_a,
      "host_slots"_a,
      "gpu_blocks_per_slot"_a = 1,
      "force_host"_a          = false,
      "device"_a              = 0,
      nb::rv_policy::take_ownership,
      "An Offloader with `host_slots` pinned host slots of its own and a manager from `spec`.\n"
      "`tensors` lists the GPU KV tensors as (base address, block stride bytes, chunk bytes,\n"
      "layer) tuples of ints (vLLM FlashAttention: K and V per layer). The CUDA engine when a\n"
      "device is usable, else (or with force_host) the host engine, which treats the addresses\n"
      "as host memory. Raises LogicError for a bad spec, a tiered spec or a bad layout.");
}

}  // namespace kvoffload::python
