#include <kvoffload/error.hpp>
#include <kvoffload/types.hpp>

#include <string>

namespace kvoffload {

namespace detail {

namespace {
std::string where(const char* file, int line) {
  std::string path{file};
  // Keep the project-relative part of the path: messages should not leak build directories.
  for (const char* root : {"/include/", "/csrc/", "/kernels/", "/bench/"}) {
    if (auto pos = path.rfind(root); pos != std::string::npos) {
      path = path.substr(pos + 1);
      break;
    }
  }
  return " (" + path + ":" + std::to_string(line) + ")";
}
}  // namespace

void throw_logic_error(const char* file, int line, const std::string& message) {
  throw logic_error("kvoffload: " + message + where(file, line));
}

void throw_runtime_error(const char* file, int line, const std::string& message) {
  throw runtime_error("kvoffload: " + message + where(file, line));
}

}  // namespace detail

const char* to_string(Medium medium) noexcept {
  switch (medium) {
    case Medium::kGpu:
      return "gpu";
    case Medium::kCpu:
      return "cpu";
    case Medium::kDisk:
      return "disk";
  }
  return "unknown";
}

}  // namespace kvoffload
