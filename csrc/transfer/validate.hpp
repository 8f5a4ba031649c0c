// Argument checks shared by the engines: each throws logic_error naming the offending value
// and changes nothing.
#pragma once

#include <kvoffload/transfer/kv_layout.hpp>
#include <kvoffload/transfer/transfer_request.hpp>

namespace kvoffload::transfer::detail {

/// The host slots can hold the layout's slot image.
void validate_host_slots(const KvLayout& layout, const HostSlots& host);

/// Lengths, id ranges, duplicate destinations, SM budget.
void validate_request(const KvLayout& layout,
                      const HostSlots& host,
                      const TransferRequest& request);

}  // namespace kvoffload::transfer::detail
