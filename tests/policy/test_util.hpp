/**
 * @file test_util.hpp
 * @brief Helpers shared by the policy tests.
 */
#pragma once

#include "policy/manager_core.hpp"

#include <kvoffload/offloading_manager.hpp>

#include <gtest/gtest.h>

#include <initializer_list>
#include <vector>

namespace kvoffload::testing {

using Hashes = std::vector<BlockHash>;
using Ids    = std::vector<BlockId>;

/// Throws if `manager` is a CoreManager whose invariants are broken (no-op otherwise).
inline void check_core(const OffloadingManager& manager) {
  if (auto* core = dynamic_cast<const detail::CoreManager*>(&manager)) core->check_invariants();
}

/// Checks the core's invariants when the manager is a CoreManager (no-op otherwise).
inline void expect_invariants(const OffloadingManager& manager) {
  EXPECT_NO_THROW(check_core(manager));
}

/// prepare_store + complete_store(success): store `hashes` and return the slots.
inline Ids store(OffloadingManager& manager, const Hashes& hashes) {
  auto out = manager.prepare_store(hashes);
  EXPECT_TRUE(out.has_value());
  if (!out) return {};
  manager.complete_store(out->block_hashes_to_store, true);
  return out->store_spec.block_ids;
}

/// The comparable part of ManagerStats (gauges and the counters every manager keeps).
inline std::vector<std::size_t> gauges(const ManagerStats& s) {
  return {s.capacity, s.pending, s.ready, s.pinned, s.evictable, s.free_slots};
}

}  // namespace kvoffload::testing
