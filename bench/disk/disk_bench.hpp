// kvoffload-bench disk: the block store's bandwidth next to fio, CPU per GB, CRC32C speed and
// restart time (disk_bench.cpp).
#pragma once

namespace kvoffload::bench {

/// argv[1] is "disk"; returns the process exit code.
int disk_main(int argc, char** argv);

}  // namespace kvoffload::bench
