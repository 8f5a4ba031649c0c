/**
 * @file contract_specs.hpp
 * @brief The policy specs the shared contract suite runs against. A new policy that keeps
 * the contract adds its spec here.
 */
#pragma once

#include <string>
#include <vector>

namespace kvoffload::testing {

inline const std::vector<std::string> kContractSpecs{"lru",
                                                     "arc",
                                                     "weighted",
                                                     "weighted:frequency_weight=0",
                                                     "density",
                                                     "density:admission=0",
                                                     "lru+mutex",
                                                     "arc+sharded:shards=1"};

}  // namespace kvoffload::testing
