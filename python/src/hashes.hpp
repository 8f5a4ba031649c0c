// Block hashes from Python: one int, a sequence or iterable of ints, or a buffer of 64-bit
// integers (array('Q'), memoryview, numpy uint64/int64) read in place without a copy.
#pragma once

#include <kvoffload/types.hpp>

#include <nanobind/nanobind.h>

#include <span>
#include <string>
#include <vector>

namespace kvoffload::python {

/**
 * @brief The hashes of one call, converted while the GIL is held.
 *
 * A contiguous 1-D buffer of 8-byte integers is viewed in place (the buffer stays exported,
 * so its owner cannot resize it, until the call returns); anything else is copied into
 * `owned`. A value that is no 64-bit unsigned int does not fail the conversion (which would
 * only say "incompatible arguments"): it is recorded in `error` and raised by `view()`.
 */
class HashArg {
 public:
  HashArg() = default;
  HashArg(HashArg&& other) noexcept;
  HashArg& operator=(HashArg&& other) noexcept;
  HashArg(const HashArg&)            = delete;
  HashArg& operator=(const HashArg&) = delete;
  ~HashArg();

  /// Reads `source`; false if it is neither an int, an iterable nor a buffer (a TypeError
  /// listing the signature follows). Never throws; call with the GIL held.
  bool load(nanobind::handle source) noexcept;

  /// The hashes. @throws nanobind::type_error / value_error recorded by load()
  [[nodiscard]] std::span<const BlockHash> view() const;

  /// True when the hashes are read in place from a buffer (no copy).
  [[nodiscard]] bool zero_copy() const noexcept { return has_buffer_; }

 private:
  enum class Error : unsigned char { kNone, kType, kValue };
  bool load_buffer(PyObject* source) noexcept;
  bool load_sequence(PyObject* source) noexcept;
  bool load_item(PyObject* item, std::size_t index) noexcept;
  void fail(Error kind, std::string message) noexcept;
  void release() noexcept;

  std::span<const BlockHash> view_;
  std::vector<BlockHash> owned_;
  Py_buffer buffer_{};
  bool has_buffer_{false};
  Error error_{Error::kNone};
  std::string message_;
};

}  // namespace kvoffload::python

namespace nanobind::detail {

template <>
struct type_caster<kvoffload::python::HashArg> {
  NB_TYPE_CASTER(kvoffload::python::HashArg,
                 const_name("int | collections.abc.Iterable[int] | typing_extensions.Buffer"))

  bool from_python(handle source, uint8_t, cleanup_list*) noexcept { return value.load(source); }
  static handle from_cpp(const kvoffload::python::HashArg&, rv_policy, cleanup_list*) noexcept {
    return none().release();  // never returned to Python
  }
};

}  // namespace nanobind::detail
