// kvoffload-footprint: builds a manager of N slots, fills it (for ARC until both ghost lists are
// full), and reports the metadata bytes per slot the manager accounts for next to the growth of
// the process's resident memory, against the per-slot limits. "sketch" is the part of the
// accounted bytes in frequency sketches and sampled statistics (sized by a policy's own
// settings, counted apart from the 64 B/slot limit); "per-slot" is the rest.
#include "cli_message.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace {

using namespace kvoffload;

std::size_t resident_bytes() {
  std::ifstream statm{"/proc/self/statm"};
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

void store_batch(OffloadingManager& m, std::vector<BlockHash>& batch, BlockHash first, bool touch) {
  for (std::size_t i = 0; i < batch.size(); ++i)
    batch[i] = first + i;
  auto out = m.prepare_store(batch);
  KVO_EXPECTS(out.has_value(), "footprint: a store was refused");
  m.complete_store(out->block_hashes_to_store, true);
  if (touch) m.touch(batch);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::size_t slots = 10'000'000;
    std::vector<std::string> policies{"lru", "arc"};
    constexpr const char* kUsage = "usage: kvoffload-footprint [--slots N] [--policy a,b]";
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::printf("%s\n", kUsage);
        return 0;
      }
      KVO_EXPECTS(i + 1 < argc, std::string{kUsage});
      if (arg == "--slots") {
        const std::string text = argv[++i];
        std::size_t used       = 0;
        try {
          slots = std::stoull(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        KVO_EXPECTS(used == text.size() && used > 0 && slots > 0,
                    "--slots must be a positive whole number, got '" + text + "'");
      } else if (arg == "--policy") {
        policies.clear();
        std::string list = argv[++i];
        for (std::size_t p = 0; p != std::string::npos;) {
          const std::size_t comma = list.find(',', p);
          policies.push_back(list.substr(p, comma == std::string::npos ? comma : comma - p));
          p = comma == std::string::npos ? comma : comma + 1;
        }
      } else {
        KVO_EXPECTS(false, "unknown option '" + arg + "'");
      }
    }
    for (const std::string& spec : policies)
      (void)parse_manager_spec(spec);  // a bad spec fails before the header is printed
    std::printf("kvoffload-footprint: %zu slots per manager, host memory only (no GPU used)\n",
                slots);
    std::printf("%-10s %16s %14s %14s %14s %10s %8s\n",
                "policy",
                "accounted B/slot",
                "per-slot B/slot",
                "sketch B/slot",
                "RSS B/slot",
                "fill s",
                "stores");
    for (const std::string& spec : policies) {
      const std::size_t before = resident_bytes();
      const auto start         = std::chrono::steady_clock::now();
      auto m                   = make_manager(spec, slots, 1, /*enable_events=*/false);
      std::vector<BlockHash> batch(1024);
      BlockHash next = 1;
      // Fill; then churn twice the capacity so that history structures (ghost lists) fill up:
      // first with touched blocks (they leave through T2 into B2), then untouched (T1 into B1).
      for (int round = 0; round < 3; ++round) {
        for (std::size_t n = 0; n + batch.size() <= slots; n += batch.size()) {
          store_batch(*m, batch, next, round == 1);
          next += batch.size();
        }
      }
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const ManagerStats s = m->stats();
      const double rss     = double(resident_bytes() - before) / double(slots);
      std::printf("%-10s %16.1f %14.1f %14.1f %14.1f %10.2f %8llu\n",
                  spec.c_str(),
                  double(s.metadata_bytes) / double(slots),
                  double(s.metadata_bytes - s.sketch_bytes) / double(slots),
                  double(s.sketch_bytes) / double(slots),
                  rss,
                  seconds,
                  static_cast<unsigned long long>(s.stores));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(
        stderr,
        "kvoffload-footprint: error: %s\n",
        kvoffload::cli::error_text(e.what(), kvoffload::cli::debug_from_environment()).c_str());
    return 2;
  }
}
