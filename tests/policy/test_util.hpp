/**
 * @file test_util.hpp
 * @brief Helpers shared by the policy tests.
 */
#pragma once

#include "policy/manager_core.hpp"

#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/offloading_manager.hpp>

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <string_view>
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

/// The message make_manager(spec) throws; a test failure if it accepts the spec.
inline std::string spec_error(std::string_view spec, std::size_t num_blocks = 16) {
  try {
    (void)make_manager(spec, num_blocks, 64);
  } catch (const logic_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "spec '" << spec << "' was accepted";
  return {};
}

inline void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

}  // namespace kvoffload::testing
