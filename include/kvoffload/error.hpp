/**
 * @file error.hpp
 * @brief The library's exceptions and its precondition macros.
 *
 * Every misuse (a bad argument, an illegal state transition) throws `kvoffload::logic_error`
 * (a `std::invalid_argument`) with the offending value in its message, and leaves the object's
 * state as it was before the call. Failures of the environment (CUDA, the OS) throw
 * `kvoffload::runtime_error`.
 */
#pragma once

#include <stdexcept>
#include <string>

namespace kvoffload {

/// Misuse of the API: a bad argument or a call the object's state does not allow.
class logic_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A failure outside the caller's control (CUDA runtime, OS call, I/O).
class runtime_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
[[noreturn]] void throw_logic_error(const char* file, int line, const std::string& message);
[[noreturn]] void throw_runtime_error(const char* file, int line, const std::string& message);
}  // namespace detail

}  // namespace kvoffload

/// Throw kvoffload::logic_error with `message` (a std::string expression) unless `condition`.
#define KVO_EXPECTS(condition, message)                                    \
  do {                                                                     \
    if (!(condition)) [[unlikely]] {                                       \
      ::kvoffload::detail::throw_logic_error(__FILE__, __LINE__, message); \
    }                                                                      \
  } while (0)

/// Throw kvoffload::runtime_error with `message` (a std::string expression).
#define KVO_FAIL(message) ::kvoffload::detail::throw_runtime_error(__FILE__, __LINE__, message)
