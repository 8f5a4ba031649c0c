// Argument checks shared by the engines: each throws logic_error naming the offending value
// and changes nothing.
#pragma once

#include <kvoffload/transfer/kv_layout.hpp>
#include <kvoffload/transfer/transfer_request.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

namespace kvoffload::transfer::detail {

/// The host slots can hold the layout's slot image.
void validate_host_slots(const KvLayout& layout, const HostSlots& host);

/// Lengths, id ranges, duplicate destinations, SM budget.
void validate_request(const KvLayout& layout,
                      const HostSlots& host,
                      const TransferRequest& request);

/// Where cudaPointerGetAttributes says a KV tensor lives.
struct TensorMemory {
  int type{0};     ///< cudaMemoryType
  int device{-1};  ///< the device owning it
};

/// Every tensor is device (or managed) memory of `device`: a tensor of another GPU would make
/// the kernel and staged methods fault and the copy-engine methods silently peer copies.
void validate_tensor_memory(const std::vector<TensorMemory>& tensors, int device);

/// What the device sees of one host address: pinned or not, and its device address if mapped.
struct HostMapping {
  bool pinned{false};
  std::byte* device_address{nullptr};
};

/// How the CUDA engine sees its host slots.
struct HostSlotsMapping {
  std::optional<std::size_t> unpinned_slot;  ///< first slot with an unpinned first / last byte
  bool contiguous{false};  ///< every slot maps at base_device + (address - base): the kernel
  std::byte* device_base{nullptr};  ///< device address of slot 0 when contiguous
};

/**
 * Probe the first and last byte of every slot (not only of the whole range: a middle
 * registration can be missing or map elsewhere). `mapping(address)` answers for one address.
 */
HostSlotsMapping map_host_slots(const HostSlots& host,
                                const std::function<HostMapping(const std::byte*)>& mapping);

}  // namespace kvoffload::transfer::detail
