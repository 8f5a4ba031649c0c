#include "transfer/validate.hpp"

#include <kvoffload/error.hpp>

#include <cuda_runtime_api.h>

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

void validate_tensor_memory(const std::vector<TensorMemory>& tensors, int device) {
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    KVO_EXPECTS(tensors[t].type == cudaMemoryTypeDevice || tensors[t].type == cudaMemoryTypeManaged,
                "KV tensor " + std::to_string(t) + " is not device memory");
    KVO_EXPECTS(tensors[t].type == cudaMemoryTypeManaged || tensors[t].device == device,
                "KV tensor " + std::to_string(t) + " is memory of device " +
                    std::to_string(tensors[t].device) + ", but the engine runs on device " +
                    std::to_string(device) +
                    " (set TransferEngineOptions::device to the KV cache's device)");
  }
}

HostSlotsMapping map_host_slots(const HostSlots& host,
                                const std::function<HostMapping(const std::byte*)>& mapping) {
  HostSlotsMapping result;
  const HostMapping first = mapping(host.base);
  result.contiguous       = first.pinned && first.device_address != nullptr;
  result.device_base      = first.device_address;
  for (std::size_t s = 0; s < host.num_slots; ++s) {
    for (const std::size_t offset : {std::size_t{0}, host.slot_bytes - 1}) {
      const std::byte* address = host.base + s * host.slot_bytes + offset;
      const HostMapping m      = s == 0 && offset == 0 ? first : mapping(address);
      if (!m.pinned) {
        result.unpinned_slot = s;
        result.contiguous    = false;
        return result;
      }
      result.contiguous = result.contiguous && m.device_address != nullptr &&
                          m.device_address - result.device_base == address - host.base;
    }
  }
  if (!result.contiguous) result.device_base = nullptr;
  return result;
}

}  // namespace kvoffload::transfer::detail
