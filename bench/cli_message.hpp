/**
 * @file cli_message.hpp
 * @brief What the command-line tools print for an exception: the library's message without its
 * internal source locations ("(csrc/policy/factory.cpp:251)"), which are for the API's users
 * and bug reports, not for someone typing a command. `--debug` (or KVOFFLOAD_DEBUG=1 in the
 * environment) keeps them.
 */
#pragma once

#include <cctype>
#include <cstdlib>
#include <string>
#include <string_view>

namespace kvoffload::cli {

/// True when KVOFFLOAD_DEBUG is set to anything but "" or "0".
inline bool debug_from_environment() {
  const char* value = std::getenv("KVOFFLOAD_DEBUG");
  return value != nullptr && *value != '\0' && std::string_view{value} != "0";
}

/**
 * @brief `message` without the " (dir/file.ext:LINE)" locations the library's KVO_EXPECTS and
 * KVO_FAIL append (one per nested message), and without the leading "kvoffload: " the tool's own
 * prefix replaces.
 */
inline std::string without_source_locations(std::string_view message) {
  if (message.starts_with("kvoffload: ")) message.remove_prefix(11);
  std::string out;
  out.reserve(message.size());
  std::size_t i = 0;
  while (i < message.size()) {
    // A location: " (" path-without-spaces ":" digits ")" where the path has a '/' and a '.'.
    if (message.compare(i, 2, " (") == 0) {
      const std::size_t close = message.find(')', i + 2);
      if (close != std::string_view::npos) {
        const std::string_view inside = message.substr(i + 2, close - i - 2);
        const std::size_t colon       = inside.rfind(':');
        const std::string_view path = inside.substr(0, colon == std::string_view::npos ? 0 : colon);
        const std::string_view line =
            colon == std::string_view::npos ? std::string_view{} : inside.substr(colon + 1);
        bool digits = !line.empty();
        for (char c : line)
          digits = digits && std::isdigit(static_cast<unsigned char>(c));
        if (digits && path.find('/') != std::string_view::npos &&
            path.find('.') != std::string_view::npos && path.find(' ') == std::string_view::npos) {
          i = close + 1;
          continue;
        }
      }
    }
    out += message[i++];
  }
  return out;
}

/// @brief The text a tool prints for `what`: without source locations unless `debug`.
inline std::string error_text(std::string_view what, bool debug) {
  return debug ? std::string{what} : without_source_locations(what);
}

}  // namespace kvoffload::cli
