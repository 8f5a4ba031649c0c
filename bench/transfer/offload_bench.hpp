// kvoffload-bench offload: a request trace end to end through an Offloader (offload_bench.cpp).
#pragma once

#include <cstddef>
#include <string>

namespace kvoffload::bench {

struct OffloadOptions {
  std::string trace;              ///< JSONL trace (Mooncake format)
  std::string policy{"density"};  ///< make_manager spec
  std::string capacity{"5%"};     ///< host slots: blocks, or percent of the distinct ids
  std::size_t layers{32};         ///< K and V tensor per layer
  std::size_t page{2048};         ///< bytes of one block in one tensor
  std::size_t requests{0};        ///< first N requests (0: all; 3,000 with quick)
  bool quick{false};              ///< fewer requests and ceiling repetitions
  bool cpu{false};                ///< the host engine even with a device
  int device{0};
  std::string json;  ///< also write the figures here
  /// Host + disk: a disk tier in a fresh directory under this one (removed afterwards);
  /// empty: host only. The policy must then be tiered ("tiered" when left at the default).
  std::string disk_dir;
  std::string disk_capacity{"25%"};  ///< disk slots: blocks, or percent of the distinct ids
  std::size_t max_disk_jobs{8};      ///< DiskTierOptions::max_disk_jobs
  unsigned disk_delay_us{0};         ///< BlockStoreOptions::completion_delay (a slow disk)
  bool disk_buffered{false};         ///< BlockStoreOptions::direct_io off (the page cache)
  bool restart{false};  ///< host + disk: also the second half after a restart vs a cold start
};

/// Run it, print the table; returns the process exit code. Throws on failure.
int run_offload_bench(const OffloadOptions& options);

}  // namespace kvoffload::bench
