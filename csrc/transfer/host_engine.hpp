// The engine without a CUDA device: "GPU" tensors are host memory, copies are memcpy on
// worker threads. Same interface, same validation, same job API as the CUDA engine.
#pragma once

#include <kvoffload/transfer/transfer_engine.hpp>

#include <memory>

namespace kvoffload::transfer::detail {

std::unique_ptr<TransferEngine> make_host_engine(const KvLayout& layout,
                                                 const HostSlots& host,
                                                 const TransferEngineOptions& options,
                                                 std::string why_host);

}  // namespace kvoffload::transfer::detail
