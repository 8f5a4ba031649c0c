// kvoffload-bench transfer [--json FILE] [--quick] [--pin-gib N] [--device N] [--cpu]
// One table of the transfer engine's figures, each next to the ceiling measured in the same
// run. Without a CUDA device (or with --cpu) it runs the host engine and says so.
// kvoffload-bench offload [...]: a request trace end to end through an Offloader (see usage).
#include "cli_message.hpp"
#include "disk/disk_bench.hpp"
#include "offload_bench.hpp"
#include "replay/trace.hpp"
#include "report.hpp"

#include <kvoffload/transfer/transfer.hpp>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <string>

namespace {

using kvoffload::bench::json_escape;
using kvoffload::bench::Report;
using kvoffload::bench::Row;

void write_json(const Report& report, const std::string& path) {
  std::ofstream out{path};
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  out << "{\n  \"date\": \"" << date << "\",\n  \"device\": \"" << json_escape(report.device)
      << "\",\n  \"host_fallback\": " << (report.host_fallback ? "true" : "false")
      << ",\n  \"rows\": [\n";
  for (std::size_t i = 0; i < report.rows.size(); ++i) {
    const Row& r = report.rows[i];
    out << "    {\"section\": \"" << r.section << "\", \"method\": \"" << r.method
        << "\", \"direction\": \"" << r.direction << "\", \"chunk_bytes\": " << r.chunk_bytes
        << ", \"blocks\": " << r.blocks << ", \"value\": " << r.value << ", \"unit\": \"" << r.unit
        << "\", \"ratio\": " << r.ratio << ", \"note\": \"" << json_escape(r.note) << "\"}"
        << (i + 1 < report.rows.size() ? ",\n" : "\n");
  }
  out << "  ]\n}\n";
  if (!out) throw std::runtime_error("cannot write " + path);
}

void print(const Report& report) {
  std::printf("kvoffload-bench transfer on: %s\n", report.device.c_str());
  if (report.host_fallback) {
    std::printf(
        "NOTE: no CUDA device used: these are host-engine (memcpy) figures, not GPU "
        "figures.\n");
  }
  std::string section;
  for (const Row& r : report.rows) {
    if (r.section != section) {
      section = r.section;
      std::printf("\n== %s\n%-12s %-6s %10s %7s %12s %8s  %s\n",
                  section.c_str(),
                  "method",
                  "dir",
                  "chunk",
                  "blocks",
                  "value",
                  "ratio",
                  "note");
    }
    char ratio[16] = "-";
    if (r.ratio > 0) std::snprintf(ratio, sizeof ratio, "%.3f", r.ratio);
    std::printf("%-12s %-6s %10zu %7zu %8.2f %-4s %7s  %s\n",
                r.method.c_str(),
                r.direction.c_str(),
                r.chunk_bytes,
                r.blocks,
                r.value,
                r.unit.c_str(),
                ratio,
                r.note.c_str());
  }
}

}  // namespace

const char* const kUsage =
    "usage: %s transfer [--json FILE] [--quick] [--pin-gib N] [--device N] [--cpu]\n"
    "       %s offload [--trace FILE] [--policy SPEC] [--capacity N|P%%] [--layers L]\n"
    "                  [--page BYTES] [--requests N] [--json FILE] [--quick] [--device N] [--cpu]\n"
    "                  [--disk DIR [--disk-capacity N|P%%] [--max-disk-jobs N]\n"
    "                   [--disk-delay-us N] [--disk-buffered] [--restart]]\n"
    "       %s disk [--dir DIR] [--quick] [--mib N] [--reps N]\n"
    "  transfer: the engine's bandwidth, latency, SM budget, interference and pinning figures\n"
    "  offload:  a request trace end to end through an Offloader (default: the bundled\n"
    "            Mooncake trace, density, 5%% of its blocks as host slots, 32 layers x K/V x 2 "
    "KiB)\n"
    "  disk:     the disk block store's GB/s beside fio, CPU per GB, CRC32C, restart time\n";

int offload_main(int argc, char** argv) {
  kvoffload::bench::OffloadOptions options;
  options.trace = kvoffload::replay::find_bundled_trace();  // installed beside, or the source's
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value  = i + 1 < argc;
    if (arg == "--trace" && has_value) {
      options.trace = argv[++i];
    } else if (arg == "--policy" && has_value) {
      options.policy = argv[++i];
    } else if (arg == "--capacity" && has_value) {
      options.capacity = argv[++i];
    } else if (arg == "--layers" && has_value) {
      options.layers = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--page" && has_value) {
      options.page = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--requests" && has_value) {
      options.requests = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--json" && has_value) {
      options.json = argv[++i];
    } else if (arg == "--device" && has_value) {
      options.device = std::atoi(argv[++i]);
    } else if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--cpu") {
      options.cpu = true;
    } else if (arg == "--disk" && has_value) {
      options.disk_dir = argv[++i];
    } else if (arg == "--disk-capacity" && has_value) {
      options.disk_capacity = argv[++i];
    } else if (arg == "--max-disk-jobs" && has_value) {
      options.max_disk_jobs = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--disk-delay-us" && has_value) {
      options.disk_delay_us = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    } else if (arg == "--restart") {
      options.restart = true;
    } else if (arg == "--disk-buffered") {
      options.disk_buffered = true;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      std::fprintf(stderr, kUsage, argv[0], argv[0], argv[0]);
      return 2;
    }
  }
  if (options.trace.empty()) {
    std::fprintf(stderr, "the bundled trace is not installed beside this tool: pass --trace\n");
    return 2;
  }
  if (options.layers == 0 || options.page == 0) {
    std::fprintf(stderr, "--layers and --page must be positive\n");
    return 2;
  }
  if (options.restart && options.disk_dir.empty()) {
    std::fprintf(stderr, "--restart needs --disk DIR\n");
    return 2;
  }
  try {
    return kvoffload::bench::run_offload_bench(options);
  } catch (const std::exception& e) {
    std::fprintf(
        stderr,
        "kvoffload-bench offload: %s\n",
        kvoffload::cli::error_text(e.what(), kvoffload::cli::debug_from_environment()).c_str());
    return 1;
  }
}

int main(int argc, char** argv) {
  if (argc >= 2 && (std::string{argv[1]} == "--help" || std::string{argv[1]} == "-h" ||
                    std::string{argv[1]} == "help")) {
    std::printf(kUsage, argv[0], argv[0], argv[0]);
    return 0;
  }
  if (argc >= 2 && std::string{argv[1]} == "offload") return offload_main(argc, argv);
  if (argc >= 2 && std::string{argv[1]} == "disk") return kvoffload::bench::disk_main(argc, argv);
  if (argc < 2 || std::string{argv[1]} != "transfer") {
    std::fprintf(stderr, kUsage, argv[0], argv[0], argv[0]);
    return 2;
  }
  kvoffload::bench::Options options;
  std::string json;
  bool cpu = false;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json" && i + 1 < argc) {
      json = argv[++i];
    } else if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--pin-gib" && i + 1 < argc) {
      options.pin_gib = std::atof(argv[++i]);
    } else if (arg == "--device" && i + 1 < argc) {
      options.device = std::atoi(argv[++i]);
    } else if (arg == "--cpu") {
      cpu                = true;
      options.force_host = true;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  try {
    // No driver or no GPU: the host engine, said once. A driver that is there but unusable
    // (too old for our CUDA runtime): an error, not host-engine figures passed off as a result.
    using kvoffload::transfer::CudaAvailability;
    const kvoffload::transfer::CudaEnvironment cuda = kvoffload::transfer::cuda_environment();
    if (!cpu && cuda.availability == CudaAvailability::kUnusable) {
      std::fprintf(stderr, "kvoffload-bench: %s\n", cuda.message.c_str());
      return 1;
    }
    const bool gpu = !cpu && cuda.availability == CudaAvailability::kUsable;
    if (!gpu) {
      std::printf("kvoffload-bench: %s: using the host engine\n",
                  cpu ? "--cpu was given" : cuda.message.c_str());
    }
    Report report =
        gpu ? kvoffload::bench::run_gpu_bench(options) : kvoffload::bench::run_host_bench(options);
    print(report);
    if (!json.empty()) {
      write_json(report, json);
      std::printf("\nwrote %s\n", json.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(
        stderr,
        "kvoffload-bench: %s\n",
        kvoffload::cli::error_text(e.what(), kvoffload::cli::debug_from_environment()).c_str());
    return 1;
  }
  return 0;
}
