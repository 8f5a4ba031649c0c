/**
 * @file policies.hpp
 * @brief Factories of the built-in eviction policies (internal; the public factories wrap
 * them in a CoreManager).
 */
#pragma once

#include "eviction_policy.hpp"

#include <memory>
#include <optional>

namespace kvoffload::detail {

std::unique_ptr<EvictionPolicy> make_lru_policy(std::size_t num_blocks);
std::unique_ptr<EvictionPolicy> make_arc_policy(std::size_t num_blocks);

/// ARC's adaptive state, for tests and diagnostics.
struct ArcState {
  double p{0};  ///< target size of T1
  std::size_t t1{0}, t2{0}, b1{0}, b2{0};
};
/// The state of `policy` if it is ARC, else nullopt.
std::optional<ArcState> arc_state(const EvictionPolicy& policy);

}  // namespace kvoffload::detail
