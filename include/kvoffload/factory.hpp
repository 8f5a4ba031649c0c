/**
 * @file factory.hpp
 * @brief Building a manager from a policy spec string (command lines, config files).
 */
#pragma once

#include <kvoffload/offloading_manager.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvoffload {

/**
 * @brief A manager from a spec such as "lru" or "arc".
 * @param spec policy spec; see policy_specs() for the accepted names
 * @throws logic_error naming the offending part of the spec
 */
std::unique_ptr<OffloadingManager> make_manager(std::string_view spec,
                                                std::size_t num_blocks,
                                                std::size_t block_size,
                                                bool enable_events = true);

/// The policy names make_manager accepts, for help texts.
std::vector<std::string> policy_specs();

}  // namespace kvoffload
