// kvoffload-replay: replays a KV-block request trace through the managers and prints hit rate,
// prefix hit rate, Belady's optimum, block operations per second and metadata bytes per slot.
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
               "  --trace     JSONL trace with hash_ids per request (default: the bundled\n"
               "              Mooncake conversation trace)\n"
               "  --policy    policies to replay (default: all): %s\n"
               "  --capacity  blocks, or percent of the distinct ids (default: 1%%,5%%,10%%,25%%)\n"
               "  --repeat    timed repetitions; the median speed is reported (default: 5)\n"
               "  --scramble-ids  map every id through a 64-bit mixer first, so the ids look\n"
               "              like real block hashes (random 64-bit) instead of dense integers\n"
               "  --json      also write the results as JSON\n",
               specs.c_str());
}

std::string default_trace() {
  for (const char* candidate :
       {KVOFFLOAD_SOURCE_DIR "/data/traces/mooncake/conversation_trace.jsonl",
        "data/traces/mooncake/conversation_trace.jsonl"}) {
    if (std::ifstream{candidate}.good()) return candidate;
  }
  return KVOFFLOAD_SOURCE_DIR "/data/traces/mooncake/conversation_trace.jsonl";
}

int run(int argc, char** argv) {
  std::string trace_path            = default_trace();
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
    } else if (arg == "--policy") {
      policies = split(value(), ';');
      if (policies.size() == 1 && policies[0].find(':') == std::string::npos) {
        policies = split(policies[0], ',');
      }
    } else if (arg == "--capacity") {
      capacities = split(value(), ',');
    } else if (arg == "--repeat") {
      const std::string text = value();
      repeat                 = std::atoi(text.c_str());
      KVO_EXPECTS(repeat >= 1 && repeat <= 1000, "--repeat must be 1..1000, got '" + text + "'");
    } else if (arg == "--scramble-ids") {
      scramble = true;
    } else if (arg == "--json") {
      json_path = value();
    } else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      KVO_EXPECTS(false, "unknown option '" + arg + "'");
    }
  }

  std::printf(
      "kvoffload-replay %s: host-side policy replay on the CPU (%s, one thread; no GPU "
      "is used by this tool)\n",
      version_string(),
      cpu_model().c_str());
  replay::Trace trace = replay::load_trace(trace_path);
  if (scramble) replay::scramble_ids(trace);
  std::printf("trace %s%s: %zu requests, %zu block references, %zu distinct ids\n\n",
              trace_path.c_str(),
              scramble ? " (ids scrambled to random 64-bit hashes)" : "",
              trace.requests.size(),
              trace.references,
              trace.distinct_ids);

  std::ostringstream json;
  json << "{\"trace\": \"" << trace_path
       << "\", \"scrambled_ids\": " << (scramble ? "true" : "false") << ", \"results\": [";
  bool first_json = true;
  std::printf("%-34s %9s %9s %9s %9s %9s %9s %9s\n",
              "policy",
              "capacity",
              "hit",
              "prefix",
              "belady",
              "Mops/s",
              "B/slot",
              "sketch");
  for (const std::string& capacity_text : capacities) {
    const std::size_t capacity = replay::parse_capacity(capacity_text, trace.distinct_ids);
    const double optimum       = double(replay::belady_hits(trace, capacity)) / trace.references;
    for (const std::string& policy : policies) {
      std::vector<double> speeds;
      replay::ReplayResult result;
      for (int r = 0; r < repeat; ++r) {
        auto manager = make_manager(policy, capacity, 1);
        result       = replay::replay(trace, *manager);
        speeds.push_back(result.ops_per_second());
      }
      std::sort(speeds.begin(), speeds.end());
      const double median = speeds[speeds.size() / 2];
      std::printf("%-34s %9zu %9.4f %9.4f %9.4f %9.1f %9.1f %9.1f\n",
                  policy.c_str(),
                  capacity,
                  result.hit_rate(),
                  result.prefix_hit_rate(),
                  optimum,
                  median / 1e6,
                  result.bytes_per_slot(),
                  result.sketch_bytes_per_slot());
      json << (first_json ? "" : ", ") << "{\"policy\": \"" << policy
           << "\", \"capacity\": " << capacity << ", \"capacity_spec\": \"" << capacity_text
           << "\", \"hit_rate\": " << result.hit_rate()
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
    KVO_EXPECTS(out.good(), "cannot write '" + json_path + "'");
    out << json.str();
  }
  std::printf(
      "\nhit = ready blocks / block references; prefix = ready leading prefix / "
      "references; belady = offline optimum at the same capacity; B/slot = metadata per slot "
      "without sketches, sketch = sketch and sampled-statistics bytes per slot\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvoffload-replay: error: %s\n", e.what());
    return 2;
  }
}
