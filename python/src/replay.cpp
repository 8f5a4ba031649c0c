// The trace reader and the reference replay of bench/replay, so a Python caller can drive a
// manager through a trace and compare its figures with the C++ replay (kvoffload-replay).
#include "bindings.hpp"

#include "replay/replay.hpp"
#include "replay/trace.hpp"

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <sstream>

namespace nb = nanobind;
using namespace nb::literals;

namespace kvoffload::python {

void bind_replay(nb::module_& m) {
  using replay::ReplayResult;
  using replay::Trace;

  nb::class_<Trace>(m,
                    "Trace",
                    "A KV-block request trace (Mooncake JSONL: one object per line with "
                    "`hash_ids`).")
      .def_prop_ro(
          "requests",
          [](const Trace& trace) {
            nb::list requests;
            for (const replay::Request& request : trace.requests)
              requests.append(nb::cast(request.hashes));
            return requests;
          },
          "Each request's block hashes, in prefix order (a new list of lists on each access).")
      .def_ro("references", &Trace::references, "Block references (hashes over all requests).")
      .def_ro("distinct_ids", &Trace::distinct_ids, "Distinct block hashes.")
      .def("__len__", [](const Trace& trace) { return trace.requests.size(); });

  nb::class_<ReplayResult>(m, "ReplayResult", "What the C++ reference replay measured.")
      .def_ro("capacity", &ReplayResult::capacity)
      .def_ro("requests", &ReplayResult::requests)
      .def_ro("references", &ReplayResult::references)
      .def_ro("hits", &ReplayResult::hits, "Referenced blocks ready when their request came.")
      .def_ro("prefix_hits", &ReplayResult::prefix_hits, "Sum of lookup()'s ready prefixes.")
      .def_ro("block_ops", &ReplayResult::block_ops)
      .def_ro("manager_seconds", &ReplayResult::manager_seconds)
      .def_ro("metadata_bytes", &ReplayResult::metadata_bytes)
      .def_ro("sketch_bytes", &ReplayResult::sketch_bytes)
      .def_prop_ro("hit_rate", &ReplayResult::hit_rate)
      .def_prop_ro("prefix_hit_rate", &ReplayResult::prefix_hit_rate)
      .def_prop_ro("ops_per_second", &ReplayResult::ops_per_second);

  m.def("load_trace",
        &replay::load_trace,
        "path"_a,
        "Read a JSONL trace file (the C++ reader of kvoffload-replay). Raises LogicError naming\n"
        "the first malformed line, or a file that cannot be opened.");
  m.def(
      "parse_trace",
      [](const std::string& text) {
        std::istringstream in{text};
        return replay::parse_trace(in);
      },
      "text"_a,
      "Parse a JSONL trace held in a string.");
  m.def("scramble_ids",
        &replay::scramble_ids,
        "trace"_a,
        "Replace every id by a 64-bit mix of it (a bijection), as --scramble-ids does.");
  m.def(
      "replay_reference",
      [](const Trace& trace, Manager& manager) {
        return manager.run([&](OffloadingManager& m) { return replay::replay(trace, m); });
      },
      "trace"_a,
      "manager"_a,
      "The C++ replay loop of kvoffload-replay over `manager` (built with events on): the\n"
      "reference a Python-driven replay is compared with.");
  m.def("belady_hits",
        &replay::belady_hits,
        "trace"_a,
        "capacity"_a,
        "Hits of Belady's offline optimum at `capacity` blocks, per block reference.");
  m.def("parse_capacity",
        &replay::parse_capacity,
        "text"_a,
        "distinct_ids"_a,
        "Capacity in blocks from 'N' (blocks) or 'P%' (percent of the distinct ids, rounded).");
}

}  // namespace kvoffload::python
