// Uses the installed headers and library the way an inference runtime would.
#include <kvoffload/kvoffload.hpp>

#include <cstdio>
#include <vector>

int main() {
  auto manager = kvoffload::make_lru_manager(4, 4096);
  std::vector<kvoffload::BlockHash> hashes{11, 22, 33};
  auto out = manager->prepare_store(hashes);
  if (!out || out->store_spec.block_ids.size() != 3) return 1;
  manager->complete_store(hashes);
  if (manager->lookup(hashes).value_or(0) != 3) return 2;
  std::printf("consumer: kvoffload %s linked, %zu blocks ready\n",
              kvoffload::version_string(),
              manager->stats().ready);
  return 0;
}
