/**
 * @file factory.hpp
 * @brief Building a manager from a ManagerConfig or from a spec string (command lines,
 * config files).
 *
 * Spec grammar (docs/managers.md has the full list of options):
 *
 *     spec      := policy [':' options] ('+' decorator [':' options])*
 *     options   := key '=' value (',' key '=' value)*
 *     policy    := lru | arc | weighted | density | tiered
 *     decorator := filter | mutex | sharded
 *
 * e.g. `lru`, `arc`, `weighted:frequency_weight=0.5`, `tiered:hot=0.2,warm=0.3`,
 * `lru+filter:threshold=2`, `arc+filter:threshold=2+sharded:shards=8`. Whatever order the
 * decorators are written in, the filter sits inside the thread-safety wrapper (and inside
 * each shard). A bad spec throws logic_error naming the offending part.
 *
 * A host + disk Offloader (make_offloader with DiskTierOptions) takes `tiered` with only its
 * non-size options (`tiered:promote=2,lookahead=64`): its tiers are sized by the host slots and
 * the disk capacity.
 */
#pragma once

#include <kvoffload/density_manager.hpp>
#include <kvoffload/filter_manager.hpp>
#include <kvoffload/offloading_manager.hpp>
#include <kvoffload/tiered_manager.hpp>
#include <kvoffload/weighted_lru.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvoffload {

/// The admission filter's settings (0 = no filter).
struct FilterConfig {
  std::size_t store_threshold{0};
  std::size_t max_tracker_size{kDefaultMaxTrackerSize};
};

/// How calls from several threads are serialised.
enum class Concurrency : std::uint8_t {
  kNone,     ///< not thread-safe (the plain manager)
  kMutex,    ///< one mutex around the manager
  kSharded,  ///< `shards` managers by hash, one mutex each
};

struct ConcurrencyConfig {
  Concurrency mode{Concurrency::kNone};
  std::size_t shards{4};  ///< kSharded only
};

/**
 * @brief Everything make_manager needs, as a plain aggregate:
 * `make_manager({.policy = "weighted", .num_blocks = 1000, .weighted = {.frequency_weight = 1}})`.
 */
struct ManagerConfig {
  std::string policy{"lru"};  ///< a registered policy name (policy_specs())
  std::size_t num_blocks{0};  ///< slots in total (over all tiers / shards)
  std::size_t block_size{0};  ///< carried into events unchanged
  bool enable_events{true};
  WeightedLruConfig weighted{};  ///< policy "weighted"
  DensityConfig density{};       ///< policy "density"
  TieredOptions tiered{};        ///< policy "tiered"
  FilterConfig filter{};
  ConcurrencyConfig concurrency{};
};

/**
 * @brief The manager `config` describes.
 * @throws logic_error naming the offending field or value
 */
std::unique_ptr<OffloadingManager> make_manager(const ManagerConfig& config);

/**
 * @brief The configuration a spec describes; num_blocks, block_size and enable_events keep
 * their defaults.
 * @throws logic_error naming the offending part of the spec
 */
ManagerConfig parse_manager_spec(std::string_view spec);

/**
 * @brief A manager from a spec such as "lru", "arc" or "lru+filter:threshold=2".
 * @param spec policy spec (see the file comment)
 * @throws logic_error naming the offending part of the spec
 */
std::unique_ptr<OffloadingManager> make_manager(std::string_view spec,
                                                std::size_t num_blocks,
                                                std::size_t block_size,
                                                bool enable_events = true);

/// The policies make_manager accepts, each as a valid spec with default options, for help texts
/// and the replay's default set. The tiered one is "tiered:instant=1": with no transfer engine
/// to run its plans, it confirms them itself.
std::vector<std::string> policy_specs();

/// Help text: every policy and decorator with its options and defaults, one per line.
std::string spec_help();

}  // namespace kvoffload
