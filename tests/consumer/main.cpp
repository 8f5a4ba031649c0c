// Uses the installed headers and library the way an inference runtime would: a manager alone,
// then an Offloader moving bytes (on the host engine, so this runs without a GPU too).
#include <kvoffload/kvoffload.hpp>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <vector>

int main() {
  auto manager = kvoffload::make_lru_manager(4, 4096);
  std::vector<kvoffload::BlockHash> hashes{11, 22, 33};
  auto out = manager->prepare_store(hashes);
  if (!out || out->store_spec.block_ids.size() != 3) return 1;
  manager->complete_store(hashes);
  if (manager->lookup(hashes).value_or(0) != 3) return 2;

  // A one-tensor "KV cache" of 8 blocks of 64 bytes in host memory; block b holds byte b.
  namespace kt = kvoffload::transfer;
  std::vector<std::byte> kv(8 * 64);
  for (std::size_t b = 0; b < 8; ++b)
    std::memset(kv.data() + b * 64, static_cast<int>(b), 64);
  const kt::KvLayout layout{{kt::KvTensor{kv.data(), 64, 64, 0}}, 8};
  auto offloader = kvoffload::make_offloader("lru", layout, std::size_t{4}, {.force_host = true});
  const std::vector<kvoffload::BlockId> from{1, 2, 3}, to{5, 6, 7};
  if (offloader->store(hashes, from).outcome != kvoffload::StoreTicket::Outcome::kSubmitted) {
    return 3;
  }
  (void)offloader->wait_all();
  (void)offloader->wait(offloader->load(hashes, to).value());
  for (std::size_t i = 0; i < to.size(); ++i) {
    if (std::memcmp(kv.data() + to[i] * 64, kv.data() + from[i] * 64, 64) != 0) return 4;
  }
  std::printf("consumer: kvoffload %s linked, %zu blocks ready; Offloader round trip exact on %s\n",
              kvoffload::version_string(),
              manager->stats().ready,
              offloader->engine().is_host_fallback() ? "the host engine" : "a GPU");
  return 0;
}
