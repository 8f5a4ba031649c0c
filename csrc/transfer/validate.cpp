#include "transfer/validate.hpp"

#include <kvoffload/error.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace kvoffload::transfer::detail {

void validate_host_slots(const KvLayout& layout, const HostSlots& host) {
  KVO_EXPECTS(host.base != nullptr, "host slots: base is null");
  KVO_EXPECTS(host.num_slots > 0, "host slots: num_slots is 0");
  KVO_EXPECTS(host.slot_bytes >= layout.host_slot_bytes(),
              "host slots: slot_bytes " + std::to_string(host.slot_bytes) +
                  " is too small for one slot of the layout (" +
                  std::to_string(layout.host_slot_bytes()) +
                  " bytes = " + std::to_string(layout.gpu_blocks_per_slot()) + " GPU blocks of " +
                  std::to_string(layout.gpu_block_bytes()) + ")");
}

namespace {

void expect_ids_in_range(const std::vector<BlockId>& ids, std::size_t limit, const char* what) {
  for (std::size_t i = 0; i < ids.size(); ++i) {
    KVO_EXPECTS(ids[i] >= 0 && static_cast<std::size_t>(ids[i]) < limit,
                std::string{what} + "[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                    " is out of range [0, " + std::to_string(limit) + ")");
  }
}

void expect_unique(const std::vector<BlockId>& ids, const char* what) {
  std::vector<BlockId> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  const auto duplicate = std::adjacent_find(sorted.begin(), sorted.end());
  KVO_EXPECTS(duplicate == sorted.end(),
              std::string{what} + " appears twice as a destination: " +
                  (duplicate == sorted.end() ? std::string{} : std::to_string(*duplicate)));
}

}  // namespace

void validate_request(const KvLayout& layout,
                      const HostSlots& host,
                      const TransferRequest& request) {
  const std::size_t k = layout.gpu_blocks_per_slot();
  KVO_EXPECTS(!request.host_slots.empty(), "request: host_slots is empty");
  KVO_EXPECTS(request.gpu_blocks.size() == request.host_slots.size() * k,
              "request: " + std::to_string(request.gpu_blocks.size()) + " gpu_blocks for " +
                  std::to_string(request.host_slots.size()) + " host_slots; expected " +
                  std::to_string(request.host_slots.size() * k) + " (" + std::to_string(k) +
                  " GPU blocks per host slot)");
  KVO_EXPECTS(request.sm_budget >= 0,
              "request: sm_budget " + std::to_string(request.sm_budget) + " is negative");
  KVO_EXPECTS(request.direction == Direction::kStore || request.direction == Direction::kLoad,
              "request: unknown direction " + std::to_string(static_cast<int>(request.direction)));
  KVO_EXPECTS(request.method >= Method::kAuto && request.method <= Method::kPerChunkMemcpy,
              "request: unknown method " + std::to_string(static_cast<int>(request.method)));
  KVO_EXPECTS(!request.per_layer_events || request.direction == Direction::kLoad,
              "request: per_layer_events is for loads only");
  expect_ids_in_range(request.gpu_blocks, layout.num_gpu_blocks(), "gpu_blocks");
  expect_ids_in_range(request.host_slots, host.num_slots, "host_slots");
  if (request.direction == Direction::kStore) {
    expect_unique(request.host_slots, "host slot");
  } else {
    expect_unique(request.gpu_blocks, "GPU block");
  }
}

}  // namespace kvoffload::transfer::detail
