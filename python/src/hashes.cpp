#include "hashes.hpp"

#include <kvoffload/error.hpp>

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

namespace nb = nanobind;

namespace kvoffload::python {
namespace {

std::string type_name(PyObject* object) {
  return Py_TYPE(object)->tp_name;
}

std::string repr(PyObject* object) {
  PyObject* text = PyObject_Repr(object);
  if (text == nullptr) {
    PyErr_Clear();
    return "<" + type_name(object) + ">";
  }
  const char* utf8 = PyUnicode_AsUTF8(text);
  std::string result{utf8 != nullptr ? utf8 : "?"};
  if (utf8 == nullptr) PyErr_Clear();
  Py_DECREF(text);
  return result.size() > 60 ? result.substr(0, 57) + "..." : result;
}

/// The element kind of a buffer format ("Q", "<q", "=L", ...): unsigned or signed 64-bit
/// native integers only (a byte-order mark that names another order is refused).
enum class Elements { kUnsigned, kSigned, kOther };

Elements elements_of(const char* format, Py_ssize_t itemsize) {
  if (format == nullptr) return Elements::kOther;  // raw bytes
  std::string_view f{format};
  if (!f.empty() && (f[0] == '@' || f[0] == '=' || f[0] == '<' || f[0] == '>' || f[0] == '!')) {
    const bool little = f[0] != '>' && f[0] != '!';
    if (little != (std::endian::native == std::endian::little)) return Elements::kOther;
    f.remove_prefix(1);
  }
  if (itemsize != 8 || f.size() != 1) return Elements::kOther;
  switch (f[0]) {
    case 'Q':
    case 'L':
    case 'N':
      return Elements::kUnsigned;
    case 'q':
    case 'l':
    case 'n':
      return Elements::kSigned;
    default:
      return Elements::kOther;
  }
}

}  // namespace

HashArg::HashArg(HashArg&& other) noexcept {
  *this = std::move(other);
}

HashArg& HashArg::operator=(HashArg&& other) noexcept {
  if (this == &other) return *this;
  release();
  owned_      = std::move(other.owned_);
  buffer_     = other.buffer_;
  has_buffer_ = std::exchange(other.has_buffer_, false);
  view_       = has_buffer_ ? other.view_ : std::span<const BlockHash>{owned_};
  error_      = other.error_;
  message_    = std::move(other.message_);
  other.view_ = {};
  return *this;
}

HashArg::~HashArg() {
  release();
}

void HashArg::release() noexcept {
  if (has_buffer_) {
    PyBuffer_Release(&buffer_);  // destroyed by nanobind with the GIL held
    has_buffer_ = false;
  }
}

void HashArg::fail(Error kind, std::string message) noexcept {
  if (error_ != Error::kNone) return;  // the first error is the one reported
  error_   = kind;
  message_ = "kvoffload: " + std::move(message);
}

bool HashArg::load(nb::handle source) noexcept {
  PyObject* object = source.ptr();
  try {
    if (PyLong_Check(object)) {
      owned_.resize(1);
      if (!load_item(object, 0)) return true;
      view_ = owned_;
      return true;
    }
    if (PyBytes_Check(object) || PyByteArray_Check(object) || PyUnicode_Check(object)) {
      // bytes are a sequence of small ints: almost certainly a key, not a list of hashes.
      fail(Error::kType,
           "hashes must be ints, not " + type_name(object) +
               " (a vLLM byte key needs a 64-bit hash of it first)");
      return true;
    }
    if (PyObject_CheckBuffer(object) && load_buffer(object)) return true;
    return load_sequence(object);
  } catch (...) {  // std::bad_alloc from the copy
    fail(Error::kValue, "out of memory converting the hashes");
    return true;
  }
}

bool HashArg::load_buffer(PyObject* object) noexcept {
  if (PyObject_GetBuffer(object, &buffer_, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) != 0) {
    PyErr_Clear();  // e.g. a strided memoryview: read it element by element instead
    return false;
  }
  has_buffer_         = true;
  const Elements kind = elements_of(buffer_.format, buffer_.itemsize);
  if (buffer_.ndim != 1 || kind == Elements::kOther) {
    fail(Error::kType,
         "a buffer of hashes must be one-dimensional with 64-bit integer items (format 'Q' or "
         "'q'), got format '" +
             std::string{buffer_.format != nullptr ? buffer_.format : "B"} + "', item size " +
             std::to_string(buffer_.itemsize) + ", " + std::to_string(buffer_.ndim) +
             " dimension(s)");
    return true;
  }
  const auto count = static_cast<std::size_t>(buffer_.shape[0]);
  view_            = {static_cast<const BlockHash*>(buffer_.buf), count};
  if (kind == Elements::kSigned) {
    for (std::size_t i = 0; i < count; ++i) {
      std::int64_t value = 0;
      std::memcpy(&value, view_.data() + i, sizeof value);
      if (value < 0) {
        fail(Error::kValue,
             "hashes[" + std::to_string(i) + "] = " + std::to_string(value) +
                 " is negative; block hashes are 64-bit unsigned");
        return true;
      }
    }
  }
  return true;
}

bool HashArg::load_item(PyObject* item, std::size_t index) noexcept {
  PyObject* number = nullptr;
  if (PyLong_Check(item)) {
    number = item;
    Py_INCREF(number);
  } else {
    number = PyNumber_Index(item);  // numpy integers and other __index__ types
    if (number == nullptr) {
      PyErr_Clear();
      fail(Error::kType,
           "hashes[" + std::to_string(index) + "] is " + type_name(item) + " " + repr(item) +
               ", not an int");
      return false;
    }
  }
  const unsigned long long value = PyLong_AsUnsignedLongLong(number);
  if (value == static_cast<unsigned long long>(-1) && PyErr_Occurred() != nullptr) {
    PyErr_Clear();
    fail(Error::kValue,
         "hashes[" + std::to_string(index) + "] = " + repr(number) +
             " is not a 64-bit unsigned int (0 <= hash < 2**64)");
    Py_DECREF(number);
    return false;
  }
  Py_DECREF(number);
  owned_[index] = static_cast<BlockHash>(value);
  return true;
}

bool HashArg::load_sequence(PyObject* object) noexcept {
  if (PyList_Check(object) || PyTuple_Check(object)) {
    const Py_ssize_t size = PySequence_Fast_GET_SIZE(object);
    PyObject** items      = PySequence_Fast_ITEMS(object);
    owned_.resize(static_cast<std::size_t>(size));
    for (Py_ssize_t i = 0; i < size; ++i) {
      if (!load_item(items[i], static_cast<std::size_t>(i))) return true;
    }
    view_ = owned_;
    return true;
  }
  PyObject* iterator = PyObject_GetIter(object);
  if (iterator == nullptr) {
    PyErr_Clear();
    return false;  // not iterable: nanobind raises TypeError with the signature
  }
  const Py_ssize_t hint = PyObject_LengthHint(object, 0);
  if (hint > 0) owned_.reserve(static_cast<std::size_t>(hint));
  if (hint < 0) PyErr_Clear();
  bool ok = true;
  while (PyObject* item = PyIter_Next(iterator)) {
    owned_.emplace_back();
    ok = load_item(item, owned_.size() - 1);
    Py_DECREF(item);
    if (!ok) break;
  }
  Py_DECREF(iterator);
  if (PyErr_Occurred() != nullptr) {
    PyErr_Clear();
    fail(Error::kType, "iterating the hashes (" + type_name(object) + ") raised an exception");
  }
  view_ = owned_;
  return true;
}

std::span<const BlockHash> HashArg::view() const {
  switch (error_) {
    case Error::kNone:
      return view_;
    case Error::kType:
      throw nb::type_error(message_.c_str());
    case Error::kValue:
      break;
  }
  throw logic_error(message_);  // kvoffload.LogicError, a ValueError
}

}  // namespace kvoffload::python
