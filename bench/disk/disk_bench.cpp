// kvoffload-bench disk [--dir DIR] [--quick] [--mib N] [--reps N]
// The block store's write and read GB/s by block size and queue depth, for each back end with
// CRC32C on and off, next to fio (O_DIRECT, io_uring engine, same file, block size and depth)
// run in the same process as the ceiling; host CPU per GB of the io_uring path; CRC32C speed
// per implementation; and the time to reopen a store of 100,000 blocks.
#include "disk/disk_bench.hpp"

#include "storage/crc32c.hpp"

#include <kvoffload/storage/block_store.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

namespace kvoffload::bench {

namespace {

namespace fs = std::filesystem;
using namespace kvoffload::storage;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0 : values[values.size() / 2];
}

double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

struct AlignedHost {
  explicit AlignedHost(std::size_t bytes)
      : data(static_cast<std::byte*>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096))) {
    if (data == nullptr) throw std::bad_alloc{};
    std::mt19937_64 rng{1};
    for (std::size_t i = 0; i + 8 <= bytes; i += 8) {
      const std::uint64_t word = rng();
      std::memcpy(data + i, &word, 8);
    }
  }
  ~AlignedHost() { std::free(data); }
  AlignedHost(const AlignedHost&)            = delete;
  AlignedHost& operator=(const AlignedHost&) = delete;
  std::byte* data;
};

/// One direction's bytes per second through the store, `depth` I/Os kept in flight: jobs of
/// `depth` blocks on shuffled slots (no two adjacent: no merging), two jobs queued at a time.
struct PassResult {
  double gbps{0};
  double cpu_seconds_per_gb{0};
};

PassResult store_pass(BlockStore& store,
                      bool write,
                      std::size_t depth,
                      std::byte* host,
                      const std::vector<BlockId>& order) {
  const std::size_t block = store.block_bytes();
  const std::size_t n     = order.size();
  std::vector<DiskJobId> in_flight;
  const double cpu_start = cpu_seconds();
  const double start     = now_seconds();
  std::size_t next       = 0;
  std::size_t host_half  = 0;
  auto submit_one        = [&] {
    const std::size_t count = std::min(depth, n - next);
    std::byte* base         = host + (host_half++ % 2) * depth * block;
    DiskJobId id;
    if (write) {
      std::vector<DiskWrite> blocks;
      for (std::size_t i = 0; i < count; ++i)
        blocks.push_back({order[next + i],
                          static_cast<BlockHash>(order[next + i]) + 1,
                          base + ((i * 7) % count) * block});  // never adjacent in memory
      id = store.submit_write(blocks);
    } else {
      std::vector<DiskRead> blocks;
      for (std::size_t i = 0; i < count; ++i)
        blocks.push_back({order[next + i],
                          static_cast<BlockHash>(order[next + i]) + 1,
                          base + ((i * 7) % count) * block});
      id = store.submit_read(blocks);
    }
    next += count;
    in_flight.push_back(id);
  };
  while (next < n || !in_flight.empty()) {
    while (next < n && in_flight.size() < 2)
      submit_one();
    const auto status = store.wait(in_flight.front());
    in_flight.erase(in_flight.begin());
    if (status.state != DiskJobState::kDone) throw std::runtime_error(status.error);
    if (!status.lost.empty())
      throw std::runtime_error(std::to_string(status.lost.size()) + " blocks lost in the bench");
  }
  const double seconds = now_seconds() - start;
  const double gb      = static_cast<double>(n * block) / 1e9;
  return {gb / seconds, (cpu_seconds() - cpu_start) / gb};
}

struct FioResult {
  double gbps{-1};  ///< -1: fio missing or failed
  double cpu_seconds_per_gb{0};
  std::string engine;
};

double json_number(const std::string& json, std::size_t from, const std::string& key) {
  const auto at = json.find("\"" + key + "\" : ", from);
  return at == std::string::npos ? -1 : std::strtod(json.c_str() + at + key.size() + 5, nullptr);
}

/// fio's figures for `rw` (randwrite or randread) on `file`: io_uring engine, else libaio.
FioResult run_fio(
    const fs::path& file, const char* rw, std::size_t block, std::size_t depth, std::size_t bytes) {
  for (const char* engine : {"io_uring", "libaio"}) {
    const std::string command =
        "fio --name=kvo --filename=" + file.string() + " --direct=1 --ioengine=" + engine +
        " --rw=" + rw + " --bs=" + std::to_string(block) + " --iodepth=" + std::to_string(depth) +
        " --size=" + std::to_string(bytes) + " --numjobs=1 --output-format=json 2>/dev/null";
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) return {};
    std::string out;
    char buffer[4096];
    while (std::size_t got = std::fread(buffer, 1, sizeof buffer, pipe))
      out.append(buffer, got);
    if (::pclose(pipe) != 0) continue;
    const std::string section = std::string{"\""} + (rw[4] == 'w' ? "write" : "read") + "\" : {";
    const auto at             = out.find(section);
    if (at == std::string::npos) continue;
    const double bw = json_number(out, at, "bw_bytes");
    if (bw <= 0) continue;
    // fio's CPU: its usr + sys percentages of the job's run time (fio is its own process).
    const double runtime_s = json_number(out, 0, "job_runtime") / 1e3;
    const double share = (json_number(out, 0, "usr_cpu") + json_number(out, 0, "sys_cpu")) / 100;
    return {bw / 1e9, runtime_s * share / (static_cast<double>(bytes) / 1e9), engine};
  }
  return {};
}

struct Table {
  void row(const std::string& what,
           std::size_t block,
           std::size_t depth,
           double value,
           const char* unit,
           double ceiling,
           const std::string& note = {}) {
    char ratio[16] = "-";
    if (ceiling > 0 && value > 0) std::snprintf(ratio, sizeof ratio, "%.2f", value / ceiling);
    std::printf("%-26s %8zu %5zu %9.3f %-6s %6s  %s\n",
                what.c_str(),
                block / 1024,
                depth,
                value,
                unit,
                ratio,
                note.c_str());
    std::fflush(stdout);
  }
  void header(const char* title) {
    std::printf("\n== %s\n%-26s %8s %5s %9s %-6s %6s  %s\n",
                title,
                "method",
                "KiB",
                "depth",
                "value",
                "unit",
                "ratio",
                "note");
  }
};

void crc_section(Table& table, bool quick) {
  table.header("crc32c (1 MiB buffer, one thread)");
  AlignedHost buffer(1 << 20);
  const int reps = quick ? 200 : 2000;
  struct Impl {
    const char* name;
    bool available;
    std::uint32_t (*fn)(const std::byte*, std::size_t, std::uint32_t) noexcept;
  };
  const Impl impls[] = {
      {"isa-l crc32_iscsi", detail::crc32c_isal_available(), detail::crc32c_isal},
      {"sse4.2 _mm_crc32_u64", detail::crc32c_sse42_supported(), detail::crc32c_sse42},
      {"table", true, detail::crc32c_table},
  };
  std::uint32_t sink = 0;
  for (const Impl& impl : impls) {
    if (!impl.available) {
      table.row(impl.name, 1024, 1, 0, "GB/s", 0, "not available here");
      continue;
    }
    const int n        = impl.fn == detail::crc32c_table ? reps / 20 : reps;
    const double start = now_seconds();
    for (int i = 0; i < n; ++i)
      sink += impl.fn(buffer.data, 1 << 20, sink);
    const double gbps = n * double(1 << 20) / 1e9 / (now_seconds() - start);
    table.row(impl.name,
              1024,
              1,
              gbps,
              "GB/s",
              0,
              impl.name == std::string{detail::crc32c_implementation()} ? "used by crc32c()" : "");
  }
  if (sink == 42) std::printf(" ");  // keep the loop
}

void bandwidth_section(Table& table, const fs::path& dir, bool quick, std::size_t mib, int reps) {
  const std::vector<std::size_t> blocks =
      quick ? std::vector<std::size_t>{64 << 10, 1 << 20}
            : std::vector<std::size_t>{64 << 10, 256 << 10, 1 << 20, 4 << 20};
  const std::vector<std::size_t> depths =
      quick ? std::vector<std::size_t>{32} : std::vector<std::size_t>{4, 32};
  const std::size_t bytes = mib << 20;
  const fs::path fio_file = dir / "kvoffload-bench-fio.bin";
  for (std::size_t block : blocks) {
    for (std::size_t depth : depths) {
      char title[128];
      std::snprintf(title,
                    sizeof title,
                    "%zu KiB blocks, queue depth %zu, %zu MiB per pass",
                    block >> 10,
                    depth,
                    mib);
      table.header(title);
      std::vector<double> fw, fr, fwc, frc;
      std::string engine;
      for (int rep = 0; rep < reps; ++rep) {
        const FioResult w = run_fio(fio_file, "randwrite", block, depth, bytes);
        const FioResult r = run_fio(fio_file, "randread", block, depth, bytes);
        std::error_code ignored;
        fs::remove(fio_file, ignored);
        fw.push_back(w.gbps);
        fr.push_back(r.gbps);
        fwc.push_back(w.cpu_seconds_per_gb);
        frc.push_back(r.cpu_seconds_per_gb);
        engine = w.engine;
      }
      const double fio_write = median(fw), fio_read = median(fr);
      const std::string fio_note =
          fio_write < 0 ? "fio not found or failed" : "O_DIRECT, " + engine + " engine";
      char note[128];
      std::snprintf(note, sizeof note, "; fio CPU %.3f s/GB", median(fwc));
      table.row("fio write", block, depth, fio_write, "GB/s", 0, fio_note + note);
      std::snprintf(note, sizeof note, "; fio CPU %.3f s/GB", median(frc));
      table.row("fio read", block, depth, fio_read, "GB/s", 0, fio_note + note);
      double nocrc_write = 0, nocrc_read = 0;
      for (IoBackend backend : {IoBackend::kIoUring, IoBackend::kThreadPool}) {
        for (bool crc : {false, true}) {
          BlockStoreOptions options;
          options.directories      = {dir};
          options.block_bytes      = block;
          options.capacity_bytes   = bytes + bytes / block * 32 + 3 * 4096;
          options.backend          = backend;
          options.queue_depth      = static_cast<unsigned>(depth);
          options.io_threads       = static_cast<unsigned>(std::min<std::size_t>(depth, 32));
          options.verify_checksums = crc;
          auto store               = make_block_store(options);
          std::vector<BlockId> order(store->num_slots());
          std::iota(order.begin(), order.end(), BlockId{0});
          std::shuffle(order.begin(), order.end(), std::mt19937_64{block + depth});
          AlignedHost host(2 * depth * block);
          std::vector<double> wg, rg, wc, rc;
          for (int rep = 0; rep < reps; ++rep) {
            const PassResult w = store_pass(*store, true, depth, host.data, order);
            const PassResult r = store_pass(*store, false, depth, host.data, order);
            wg.push_back(w.gbps);
            rg.push_back(r.gbps);
            wc.push_back(w.cpu_seconds_per_gb);
            rc.push_back(r.cpu_seconds_per_gb);
          }
          const double write_gbps = median(wg), read_gbps = median(rg);
          const std::string name =
              std::string{backend == IoBackend::kIoUring ? "io_uring" : "pool"} +
              (crc ? " crc" : " nocrc");
          // CRC off: the host CPU per GB beside it; CRC on: the share of CRC off it keeps.
          auto print =
              [&](const char* direction, double gbps, double& nocrc, double cpu, double ceiling) {
                if (crc) {
                  std::snprintf(note, sizeof note, "%.2f of CRC off", gbps / nocrc);
                } else {
                  nocrc = gbps;
                  std::snprintf(note, sizeof note, "host CPU %.3f s/GB", cpu);
                }
                table.row(name + direction, block, depth, gbps, "GB/s", ceiling, note);
              };
          print(" write", write_gbps, nocrc_write, median(wc), fio_write);
          print(" read", read_gbps, nocrc_read, median(rc), fio_read);
        }
      }
    }
  }
}

void recovery_section(Table& table, const fs::path& dir) {
  table.header("restart: reopen a persistent store of 100,000 blocks (4 KiB)");
  constexpr std::size_t kBlocks = 100'000, kBlock = 4096, kBatch = 1024;
  BlockStoreOptions options;
  options.directories    = {dir};
  options.block_bytes    = kBlock;
  options.capacity_bytes = kBlocks * (kBlock + 32) + 3 * 4096;
  options.persistent     = true;
  {
    auto store = make_block_store(options);
    if (store->num_slots() < kBlocks) throw std::runtime_error("recovery bench: too few slots");
    AlignedHost host(kBatch * kBlock);
    for (std::size_t first = 0; first < kBlocks; first += kBatch) {
      std::vector<DiskWrite> writes;
      for (std::size_t i = first; i < std::min(kBlocks, first + kBatch); ++i)
        writes.push_back(
            {static_cast<BlockId>(i), i * 2654435761u + 1, host.data + (i - first) * kBlock});
      const auto status = store->wait(store->submit_write(writes));
      if (status.state != DiskJobState::kDone) throw std::runtime_error(status.error);
    }
    store->flush();
  }
  bool cold = false;
  if (FILE* drop = std::fopen("/proc/sys/vm/drop_caches", "w")) {
    ::sync();
    cold = std::fputs("3", drop) >= 0;
    cold = (std::fclose(drop) == 0) && cold;
  }
  const double start      = now_seconds();
  auto store              = make_block_store(options);
  const double took       = now_seconds() - start;
  const std::size_t found = store->recovered().size();
  table.row("open + recover",
            kBlock,
            1,
            took,
            "s",
            0,
            std::to_string(found) + " blocks recovered; " +
                (cold ? "page cache dropped first" : "page cache warm (drop_caches not writable)") +
                "; target <= 1 s");
  const double start2 = now_seconds();
  store.reset();
  store = make_block_store(options);
  table.row("reopen (warm cache)",
            kBlock,
            1,
            now_seconds() - start2,
            "s",
            0,
            "includes closing the first");
  if (store->recovered().size() != kBlocks)
    throw std::runtime_error("recovery bench: recovered " + std::to_string(found));
  options.persistent = false;  // the next open removes the files
  store.reset();
  store = make_block_store(options);
}

}  // namespace

int disk_main(int argc, char** argv) {
  fs::path dir    = fs::temp_directory_path();
  bool quick      = false;
  std::size_t mib = 0;
  int reps        = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (arg == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (arg == "--quick") {
      quick = true;
    } else if (arg == "--mib" && i + 1 < argc) {
      mib = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s disk [--dir DIR] [--quick] [--mib N] [--reps N]\n", argv[0]);
      return 2;
    }
  }
  if (mib == 0) mib = quick ? 64 : 256;
  try {
    const fs::path work = dir / ("kvoffload-bench-disk-" + std::to_string(::getpid()));
    fs::create_directories(work);
    struct Cleanup {
      fs::path path;
      ~Cleanup() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
      }
    } cleanup{work};
    std::printf("kvoffload-bench disk in %s (%s)\n", work.c_str(), quick ? "quick" : "full");
    {
      BlockStoreOptions probe;
      probe.directories    = {work};
      probe.block_bytes    = 65536;
      probe.capacity_bytes = 1 << 20;
      std::printf("%s\n", make_block_store(probe)->description().c_str());
    }
    Table table;
    crc_section(table, quick);
    bandwidth_section(table, work, quick, mib, reps > 0 ? reps : (quick ? 1 : 3));
    recovery_section(table, work);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvoffload-bench disk: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace kvoffload::bench
