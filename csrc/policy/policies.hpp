/**
 * @file policies.hpp
 * @brief Factories of the built-in eviction policies (internal; the public factories wrap
 * them in a CoreManager).
 */
#pragma once

#include "eviction_policy.hpp"

#include <memory>

namespace kvoffload::detail {

std::unique_ptr<EvictionPolicy> make_lru_policy(std::size_t num_blocks);
std::unique_ptr<EvictionPolicy> make_arc_policy(std::size_t num_blocks);

}  // namespace kvoffload::detail
