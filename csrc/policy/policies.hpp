/**
 * @file policies.hpp
 * @brief Factories of the built-in eviction policies (internal; the public factories wrap
 * them in a CoreManager).
 */
#pragma once

#include "eviction_policy.hpp"

#include <kvoffload/density_manager.hpp>

#include <array>
#include <cstdint>
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

/// The density policy. Exposed for tests: `sample_shift` (follow 1 in 2^shift hashes),
/// `rebase_period` (of the 32-bit stamps), `update_interval` (references between re-estimates;
/// 0 = max(1024, num_blocks / 4)) and `min_horizon` (floor of the horizon in references;
/// 0 = 4096).
std::unique_ptr<EvictionPolicy> make_density_policy(std::size_t num_blocks,
                                                    const DensityConfig& config,
                                                    int sample_shift              = 4,
                                                    std::uint32_t rebase_period   = 1U << 30,
                                                    std::uint64_t update_interval = 0,
                                                    std::uint64_t min_horizon     = 0);

/// The density policy's learned state, for tests and diagnostics (indexes: RefClass).
struct DensityState {
  std::uint64_t references{0};  ///< touches seen
  std::uint64_t horizon{0};     ///< references
  std::uint64_t updates{0};     ///< re-estimates so far
  std::size_t samples{0};       ///< hashes followed now
  std::uint64_t dropped{0};     ///< references not followed: the sample table was full
  std::array<std::size_t, 8> resident{};
  std::array<float, 8> density_at_0{};  ///< learned density of a fresh reference per class
};
/// The state of `policy` if it is the density policy, else nullopt.
std::optional<DensityState> density_state(const EvictionPolicy& policy);

}  // namespace kvoffload::detail
