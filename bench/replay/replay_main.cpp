// kvoffload-replay: replays a KV-block request trace through the managers and prints hit rate,
// prefix hit rate, Belady's optimum, block operations per second and metadata bytes per slot.
#include "cli_message.hpp"
#include "replay/replay.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/version.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace kvoffload;

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream in{text};
  for (std::string part; std::getline(in, part, separator);) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

std::string cpu_model() {
  std::ifstream in{"/proc/cpuinfo"};
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

void usage(std::FILE* out) {
  std::string specs;
  for (const auto& s : policy_specs())
    specs += (specs.empty() ? "" : ", ") + s;
  std::fprintf(out,
               "usage: kvoffload-replay [--trace FILE] [--policy SPEC[,SPEC...]]\n"
               "                        [--capacity N|P%%[,...]] [--repeat R] [--json FILE]\n"
               "                        [--scramble-ids] [--debug]\n"
               "  --trace     JSONL trace with hash_ids per request (default: the bundled\n"
               "              Mooncake conversation trace, installed beside the tool)\n"
               "  --policy    policies to replay (default: all): %s\n"
               "              several: SPEC,SPEC or, when a spec has options, SPEC;SPEC\n"
               "  --capacity  blocks, or percent (at most 100) of the distinct ids\n"
               "              (default: 1%%,5%%,10%%,25%%)\n"
               "  --repeat    timed repetitions; the median speed is reported (default: 5)\n"
               "  --scramble-ids  map every id through a 64-bit mixer first, so the ids look\n"
               "              like real block hashes (random 64-bit) instead of dense integers\n"
               "  --json      also write the results as JSON\n"
               "  --debug     error messages keep the library's source locations\n",
               specs.c_str());
}

/// A spec the replay can drive: a tiered policy under a wrapper (+filter, +mutex, +sharded)
/// hides its transfer plans, so the replay gives it instant=1 itself (and says so).
struct PolicyRun {
  std::string spec;  ///< as given
  ManagerConfig config;
  bool instant_added{false};
};

PolicyRun check_policy(const std::string& spec) {
  PolicyRun run{.spec = spec, .config = parse_manager_spec(spec)};
  const bool wrapped =
      run.config.filter.store_threshold > 0 || run.config.concurrency.mode != Concurrency::kNone;
  if (run.config.policy == "tiered" && wrapped && !run.config.tiered.instant_transfers) {
    run.config.tiered.instant_transfers = true;
    run.instant_added                   = true;
  }
  return run;
}

std::unique_ptr<OffloadingManager> build(const PolicyRun& run, std::size_t capacity) {
  ManagerConfig config = run.config;
  config.num_blocks    = capacity;
  config.block_size    = 1;
  return make_manager(config);
}

/// "9140 (5%)": the block count and the capacity as asked (or its share of the trace).
std::string capacity_label(const replay::CapacitySpec& spec,
                           std::size_t blocks,
                           std::size_t distinct_ids) {
  char share[32];
  if (spec.percent) {
    std::snprintf(share, sizeof share, "%s", spec.text.c_str());
  } else {
    std::snprintf(share, sizeof share, "%.2f%%", 100.0 * double(blocks) / double(distinct_ids));
  }
  return std::to_string(blocks) + " (" + share + ")";
}

int run(int argc, char** argv, bool& debug) {
  std::string trace_path;
  std::vector<std::string> policies = policy_specs();
  std::vector<std::string> capacities{"1%", "5%", "10%", "25%"};
  int repeat = 5;
  std::string json_path;
  bool scramble = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value            = [&]() -> std::string {
      KVO_EXPECTS(i + 1 < argc, "option " + arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--trace") {
      trace_path = value();
      KVO_EXPECTS(!trace_path.empty(), "--trace needs a file name, got ''");
    } else if (arg == "--policy") {
      const std::string text = value();
      policies               = split(text, ';');
      if (policies.size() == 1 && policies[0].find(':') == std::string::npos) {
        policies = split(policies[0], ',');
      }
      KVO_EXPECTS(!policies.empty(), "--policy '" + text + "' names no policy");
    } else if (arg == "--capacity") {
      const std::string text = value();
      capacities             = split(text, ',');
      KVO_EXPECTS(!capacities.empty(), "--capacity '" + text + "' names no capacity");
    } else if (arg == "--repeat") {
      const std::string text = value();
      repeat                 = std::atoi(text.c_str());
      KVO_EXPECTS(repeat >= 1 && repeat <= 1000, "--repeat must be 1..1000, got '" + text + "'");
    } else if (arg == "--scramble-ids") {
      scramble = true;
    } else if (arg == "--json") {
      json_path = value();
      KVO_EXPECTS(!json_path.empty(), "--json needs a file name, got ''");
    } else if (arg == "--debug") {
      debug = true;
    } else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      KVO_EXPECTS(false, "unknown option '" + arg + "'");
    }
  }

  // Everything that can be checked is checked before the trace is read and before anything is
  // printed: an error never follows a table header.
  std::vector<PolicyRun> runs;
  for (const std::string& policy : policies)
    runs.push_back(check_policy(policy));
  std::vector<replay::CapacitySpec> capacity_specs;
  for (const std::string& text : capacities)
    capacity_specs.push_back(replay::parse_capacity_spec(text));
  if (trace_path.empty()) {
    std::string looked;
    trace_path = replay::find_bundled_trace(&looked);
    KVO_EXPECTS(!trace_path.empty(),
                "the bundled trace is not installed beside this tool (looked in " + looked +
                    "): pass --trace FILE");
  }
  replay::Trace trace = replay::load_trace(trace_path);
  if (scramble) replay::scramble_ids(trace);
  std::vector<std::size_t> blocks;
  for (const replay::CapacitySpec& spec : capacity_specs) {
    blocks.push_back(spec.blocks(trace.distinct_ids));
    for (const PolicyRun& run : runs)
      (void)build(run, blocks.back());  // a size the spec cannot take fails here, not mid-table
  }
  if (!json_path.empty()) {
    std::ofstream probe{json_path, std::ios::app};
    KVO_EXPECTS(probe.good(), "cannot write --json '" + json_path + "'");
  }

  std::printf(
      "kvoffload-replay %s: host-side policy replay on the CPU (%s, one thread; no GPU "
      "is used by this tool)\n",
      version_string(),
      cpu_model().c_str());
  std::printf("trace %s%s: %zu requests, %zu block references, %zu distinct ids\n",
              trace_path.c_str(),
              scramble ? " (ids scrambled to random 64-bit hashes)" : "",
              trace.requests.size(),
              trace.references,
              trace.distinct_ids);
  for (const PolicyRun& run : runs) {
    if (run.instant_added) {
      std::printf(
          "note: %s: the wrapper hides the tiered manager's transfer plans, so this replay sets "
          "instant=1 (the manager confirms its own plans)\n",
          run.spec.c_str());
    } else if (run.config.policy == "tiered" && !run.config.tiered.instant_transfers) {
      std::printf(
          "note: %s: this replay confirms each transfer plan as soon as it is made (no bytes "
          "move)\n",
          run.spec.c_str());
    }
  }
  std::printf("\n");

  std::ostringstream json;
  json << "{\"trace\": \"" << trace_path
       << "\", \"scrambled_ids\": " << (scramble ? "true" : "false")
       << ", \"requests\": " << trace.requests.size() << ", \"references\": " << trace.references
       << ", \"distinct_ids\": " << trace.distinct_ids << ", \"results\": [";
  bool first_json = true;
  std::printf("%-34s %16s %9s %9s %9s %9s %9s %9s\n",
              "policy",
              "capacity",
              "hit",
              "prefix",
              "belady",
              "Mops/s",
              "B/slot",
              "sketch");
  for (std::size_t c = 0; c < capacity_specs.size(); ++c) {
    const replay::CapacitySpec& spec = capacity_specs[c];
    const std::size_t capacity       = blocks[c];
    const std::string label          = capacity_label(spec, capacity, trace.distinct_ids);
    const double optimum = double(replay::belady_hits(trace, capacity)) / trace.references;
    if (c > 0) std::printf("\n");
    for (const PolicyRun& run : runs) {
      std::vector<double> speeds;
      replay::ReplayResult result;
      for (int r = 0; r < repeat; ++r) {
        auto manager = build(run, capacity);
        result       = replay::replay(trace, *manager);
        speeds.push_back(result.ops_per_second());
      }
      std::sort(speeds.begin(), speeds.end());
      const double median = speeds[speeds.size() / 2];
      std::printf("%-34s %16s %9.4f %9.4f %9.4f %9.1f %9.1f %9.1f\n",
                  run.spec.c_str(),
                  label.c_str(),
                  result.hit_rate(),
                  result.prefix_hit_rate(),
                  optimum,
                  median / 1e6,
                  result.bytes_per_slot(),
                  result.sketch_bytes_per_slot());
      std::fflush(stdout);
      json << (first_json ? "" : ", ") << "{\"policy\": \"" << run.spec
           << "\", \"capacity\": " << capacity << ", \"capacity_spec\": \"" << spec.text
           << "\", \"instant_added\": " << (run.instant_added ? "true" : "false")
           << ", \"hit_rate\": " << result.hit_rate()
           << ", \"prefix_hit_rate\": " << result.prefix_hit_rate()
           << ", \"belady_hit_rate\": " << optimum << ", \"block_ops_per_second\": " << median
           << ", \"bytes_per_slot\": " << result.bytes_per_slot()
           << ", \"sketch_bytes_per_slot\": " << result.sketch_bytes_per_slot() << "}";
      first_json = false;
    }
  }
  json << "]}\n";
  if (!json_path.empty()) {
    std::ofstream out{json_path};
    out << json.str();
    KVO_EXPECTS(out.good(), "cannot write --json '" + json_path + "'");
  }
  std::printf(
      "\nhit = ready blocks / block references; prefix = ready leading prefix / "
      "references; belady = offline optimum at the same capacity; capacity = host slots "
      "(share of the trace's distinct ids); B/slot = metadata per slot without sketches; "
      "sketch = frequency sketch, sampled statistics and the +filter decorator's lookup tracker, "
      "per slot\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool debug = kvoffload::cli::debug_from_environment();
  try {
    return run(argc, argv, debug);
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "kvoffload-replay: error: %s\n",
                 kvoffload::cli::error_text(e.what(), debug).c_str());
    return 2;
  }
}
