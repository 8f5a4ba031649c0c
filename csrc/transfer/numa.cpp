#include "transfer/numa.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>
#include <vector>

namespace kvoffload::transfer::detail {

std::vector<int> parse_node_list(const std::string& text) {
  std::vector<int> nodes;
  std::stringstream ranges{text};
  std::string range;
  while (std::getline(ranges, range, ',')) {
    const auto dash = range.find('-');
    try {
      const int first = std::stoi(range.substr(0, dash));
      const int last  = dash == std::string::npos ? first : std::stoi(range.substr(dash + 1));
      for (int n = first; n <= last && n >= 0; ++n)
        nodes.push_back(n);
    } catch (const std::exception&) {
      return {};  // not a node list: say nothing rather than guess
    }
  }
  return nodes;
}

std::optional<int> numa_node_to_bind(int device_host_node, const std::vector<int>& online_nodes) {
  if (device_host_node < 0 || online_nodes.size() < 2) return std::nullopt;
  if (std::find(online_nodes.begin(), online_nodes.end(), device_host_node) == online_nodes.end())
    return std::nullopt;
  return device_host_node;
}

std::vector<int> online_numa_nodes() {
  std::ifstream file{"/sys/devices/system/node/online"};
  std::string text;
  if (!std::getline(file, text)) return {};
  return parse_node_list(text);
}

namespace {
constexpr int kMpolPreferred      = 1;  // <numaif.h>'s MPOL_PREFERRED, without needing libnuma
constexpr int kMpolFNode          = 1;  // MPOL_F_NODE
constexpr int kMpolFAddr          = 2;  // MPOL_F_ADDR
constexpr unsigned long kMaskBits = sizeof(unsigned long) * CHAR_BIT;
}  // namespace

bool prefer_numa_node(void* address, std::size_t bytes, int node) noexcept {
  if (node < 0 || node >= static_cast<int>(16 * kMaskBits)) return false;
  unsigned long mask[16]{};
  mask[static_cast<unsigned>(node) / kMaskBits] |= 1UL << (static_cast<unsigned>(node) % kMaskBits);
  return syscall(SYS_mbind, address, bytes, kMpolPreferred, mask, 16 * kMaskBits + 1, 0U) == 0;
}

int numa_node_of(const void* address) noexcept {
  int node = -1;
  if (syscall(SYS_get_mempolicy, &node, nullptr, 0UL, address, kMpolFNode | kMpolFAddr) != 0)
    return -1;
  return node;
}

}  // namespace kvoffload::transfer::detail
