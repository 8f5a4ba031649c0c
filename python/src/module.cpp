// kvoffload._kvoffload: the C++ library for Python (the package kvoffload re-exports it).
#include "bindings.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/version.hpp>

namespace nb = nanobind;

NB_MODULE(_kvoffload, m) {
  m.doc() = "kvoffload's C++ core: managers, metrics and the trace replay (see kvoffload).";
  m.attr("__version__") = kvoffload::version_string();
  // Registered before anything can throw them; nanobind tries the latest translator first,
  // so these win over its std::invalid_argument -> ValueError default.
  nb::exception<kvoffload::logic_error> logic(m, "LogicError", PyExc_ValueError);
  logic.attr("__doc__") =
      "Misuse of the API (kvoffload::logic_error): a bad argument or a call the manager's state\n"
      "does not allow. The message is the C++ one and names the offending value; the manager\n"
      "is left as it was.";
  nb::exception<kvoffload::runtime_error> failure(m, "RuntimeFailure", PyExc_RuntimeError);
  failure.attr("__doc__") =
      "A failure outside the caller's control (kvoffload::runtime_error: CUDA, the OS, I/O).";
  kvoffload::python::bind_types(m);
  kvoffload::python::bind_manager(m);
  kvoffload::python::bind_replay(m);
  kvoffload::python::bind_offloader(m);
  kvoffload::python::bind_storage(m);
  kvoffload::python::bind_transfer(m);
}
