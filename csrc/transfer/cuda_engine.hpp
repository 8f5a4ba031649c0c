// The CUDA engine: dedicated store and load streams, our copy kernels, the staging ring, the
// copy-engine methods. Built by make_transfer_engine when a device is usable.
#pragma once

#include <kvoffload/transfer/transfer_engine.hpp>

#include <memory>

namespace kvoffload::transfer::detail {

std::unique_ptr<TransferEngine> make_cuda_engine(const KvLayout& layout,
                                                 const HostSlots& host,
                                                 const TransferEngineOptions& options);

}  // namespace kvoffload::transfer::detail
