// The rows kvoffload-bench transfer prints and writes as JSON.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace kvoffload::bench {

struct Row {
  std::string section;    ///< bandwidth, latency, bidirectional, sm_budget, interference, pinning
  std::string method;     ///< kernel, staged, batch, per-chunk, auto, ceiling, ...
  std::string direction;  ///< store (D2H), load (H2D), both, or "-"
  std::size_t chunk_bytes{0};
  std::size_t blocks{0};
  double value{0};   ///< in `unit`
  std::string unit;  ///< GB/s, us, %, s
  double ratio{0};   ///< value / ceiling measured in the same run (0: none)
  std::string note;
};

/// `text` inside a JSON string: quotes and backslashes escaped.
inline std::string json_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

struct Report {
  std::string device;  ///< what ran: GPU name, or the host engine's description
  bool host_fallback{false};
  std::vector<Row> rows;
};

struct Options {
  bool quick{false};   ///< smaller transfers and fewer repetitions
  double pin_gib{-1};  ///< size of the pinning comparison (-1: 16 GiB on a GPU, 1 on CPU)
  int device{0};
  bool force_host{false};  ///< --cpu: the host engine even with a device
};

/// Run every section on the GPU (defined in gpu_bench.cu).
Report run_gpu_bench(const Options& options);
/// Run the sections that make sense without a device, on the host engine.
Report run_host_bench(const Options& options);

}  // namespace kvoffload::bench
