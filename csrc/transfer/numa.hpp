// NUMA placement of pinned host memory: the node to place a pool on (the device's host node,
// when there are several), and the Linux calls that place and locate pages. Plain C++: the
// choice is a pure function of the values CUDA and sysfs give, so tests feed it every case.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace kvoffload::transfer::detail {

/// Nodes of a sysfs node list such as "0-1,3" (as in /sys/devices/system/node/online).
std::vector<int> parse_node_list(const std::string& text);

/// The node to bind a pool to: the device's host node (cudaDevAttrHostNumaId, -1 when the
/// system has no NUMA) when more than one node is online and it is one of them; none otherwise
/// (one node: first touch already lands there, today's behaviour).
std::optional<int> numa_node_to_bind(int device_host_node, const std::vector<int>& online_nodes);

/// Nodes online now (empty when sysfs does not say).
std::vector<int> online_numa_nodes();

/// Prefer `node` for the pages of [address, address + bytes) not yet touched (mbind,
/// MPOL_PREFERRED: other nodes when it is full). False when the kernel refused.
bool prefer_numa_node(void* address, std::size_t bytes, int node) noexcept;

/// The node holding the page at `address` (touched), or -1 when the kernel does not say.
int numa_node_of(const void* address) noexcept;

}  // namespace kvoffload::transfer::detail
