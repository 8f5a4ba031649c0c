/**
 * @file version.hpp
 * @brief Library version.
 */
#pragma once

#define KVOFFLOAD_VERSION_MAJOR 0
#define KVOFFLOAD_VERSION_MINOR 1
#define KVOFFLOAD_VERSION_PATCH 0

namespace kvoffload {
/// "major.minor.patch"
constexpr const char* version_string() noexcept {
  return "0.1.0";
}
}  // namespace kvoffload
