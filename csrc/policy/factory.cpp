// Manager factory: a registry of policies and decorators, and the spec-string parser.
#include <kvoffload/concurrent_manager.hpp>
#include <kvoffload/density_manager.hpp>
#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>
#include <kvoffload/filter_manager.hpp>
#include <kvoffload/tiered_manager.hpp>
#include <kvoffload/weighted_lru.hpp>

#include <charconv>
#include <cmath>
#include <string>
#include <utility>

namespace kvoffload {
namespace {

/// Concatenation by append: GCC 12 warns falsely (-Wrestrict) on some operator+ chains.
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string text;
  (text.append(std::string_view{parts}), ...);
  return text;
}

/// A bad option value; the parser adds the spec and the part to the message.
struct BadOption {
  std::string message;
};

double parse_double(std::string_view key, std::string_view value) {
  double number           = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (error != std::errc{} || end != value.data() + value.size() || !std::isfinite(number)) {
    throw BadOption{"option '" + std::string{key} + "' needs a number, got '" + std::string{value} +
                    "'"};
  }
  return number;
}

std::size_t parse_count(std::string_view key, std::string_view value) {
  std::size_t number      = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (error != std::errc{} || end != value.data() + value.size()) {
    throw BadOption{"option '" + std::string{key} + "' needs a non-negative integer, got '" +
                    std::string{value} + "'"};
  }
  return number;
}

// ---- Policies ------------------------------------------------------------------------------

/// One registered policy: its name, its options (help text), how it reads an option from a
/// spec (false: unknown key) and how it builds a manager of `num_blocks` slots.
struct PolicyEntry {
  std::string_view name;
  std::string_view options;
  bool (*set_option)(ManagerConfig&, std::string_view key, std::string_view value);
  std::unique_ptr<OffloadingManager> (*make)(const ManagerConfig&, std::size_t num_blocks);
};

bool no_options(ManagerConfig&, std::string_view, std::string_view) {
  return false;
}

bool weighted_option(ManagerConfig& config, std::string_view key, std::string_view value) {
  if (key != "frequency_weight") return false;
  config.weighted.frequency_weight = parse_double(key, value);
  return true;
}

TierSize parse_tier_size(std::string_view key, std::string_view value) {
  // "0.25" is a fraction of all blocks, "1000" a count.
  if (value.find('.') != std::string_view::npos) {
    const double fraction = parse_double(key, value);
    if (!(fraction > 0.0 && fraction < 1.0)) {
      throw BadOption{cat("option '", key, "' as a fraction must be in (0, 1), got '", value, "'")};
    }
    return TierSize{.fraction = fraction};
  }
  const std::size_t blocks = parse_count(key, value);
  if (blocks == 0) throw BadOption{cat("option '", key, "' needs at least 1 block, got '0'")};
  return TierSize{.blocks = blocks};
}

Medium parse_medium(std::string_view key, std::string_view value) {
  if (value == "gpu") return Medium::kGpu;
  if (value == "cpu") return Medium::kCpu;
  if (value == "disk") return Medium::kDisk;
  throw BadOption{cat("option '", key, "' needs gpu, cpu or disk, got '", value, "'")};
}

bool parse_flag(std::string_view key, std::string_view value) {
  if (value == "1" || value == "true") return true;
  if (value == "0" || value == "false") return false;
  throw BadOption{cat("option '", key, "' needs 0 or 1, got '", value, "'")};
}

bool tiered_option(ManagerConfig& config, std::string_view key, std::string_view value) {
  TieredOptions& t = config.tiered;
  if (key == "hot") {
    t.hot = parse_tier_size(key, value);
  } else if (key == "warm") {
    t.warm = parse_tier_size(key, value);
  } else if (key == "cold") {
    if (value != "0") {
      throw BadOption{
          cat("the cold tier takes the blocks hot and warm leave; only 'cold=0' (no "
              "cold tier) is accepted, got '",
              value,
              "'")};
    }
    t.cold = false;
  } else if (key == "hot_medium") {
    t.hot_medium = parse_medium(key, value);
  } else if (key == "warm_medium") {
    t.warm_medium = parse_medium(key, value);
  } else if (key == "cold_medium") {
    t.cold_medium = parse_medium(key, value);
  } else if (key == "promote") {
    const std::size_t promote = parse_count(key, value);
    if (promote > 255) throw BadOption{cat("option 'promote' must be 0..255, got '", value, "'")};
    t.promote_after = static_cast<std::uint32_t>(promote);
  } else if (key == "lookahead") {
    t.lookahead = parse_count(key, value);
  } else if (key == "instant") {
    t.instant_transfers = parse_flag(key, value);
  } else {
    return false;
  }
  return true;
}

bool density_option(ManagerConfig& config, std::string_view key, std::string_view value) {
  if (key == "horizon") {
    const double horizon = parse_double(key, value);
    if (!(horizon >= 1.0 && horizon <= 1024.0)) {
      throw BadOption{cat("option 'horizon' must be in [1, 1024], got '", value, "'")};
    }
    config.density.horizon = horizon;
    return true;
  }
  if (key == "admission") {
    config.density.admission = parse_flag(key, value);
    return true;
  }
  return false;
}

// Register a new policy here: a name, its options, an option setter (a config struct of its
// own goes into ManagerConfig) and a builder.
constexpr PolicyEntry kPolicies[] = {
    {"lru",
     "",
     &no_options,
     [](const ManagerConfig& c, std::size_t n) {
       return make_lru_manager(n, c.block_size, c.enable_events);
     }},
    {"arc",
     "",
     &no_options,
     [](const ManagerConfig& c, std::size_t n) {
       return make_arc_manager(n, c.block_size, c.enable_events);
     }},
    {"weighted",
     "frequency_weight=W (default 0.5; 0 = LRU)",
     &weighted_option,
     [](const ManagerConfig& c, std::size_t n) {
       return make_weighted_lru_manager(n, c.block_size, c.weighted, c.enable_events);
     }},
    {"density",
     "horizon=H (references followed, in cache sizes, 1..1024, default 16), admission=0|1 "
     "(default 1)",
     &density_option,
     [](const ManagerConfig& c, std::size_t n) {
       return make_density_manager(n, c.block_size, c.density, c.enable_events);
     }},
    {"tiered",
     "hot=S (default 0.2), warm=S (default 0.3), cold=0 (no cold tier; else cold takes the "
     "rest), hot_medium=gpu|cpu|disk (gpu), warm_medium (cpu), cold_medium (disk), promote=N "
     "(touches, default 2; 0 = never), lookahead=N (prefetch plans per call, default 32), "
     "instant=0|1 (confirm transfers itself, default 0); S = a fraction (0.25) or a count (1000)",
     &tiered_option,
     [](const ManagerConfig& c, std::size_t n) -> std::unique_ptr<OffloadingManager> {
       return std::make_unique<TieredOffloadingManager>(
           resolve_tiers(c.tiered, n, c.block_size, c.enable_events));
     }},
};

const PolicyEntry* find_policy(std::string_view name) {
  for (const PolicyEntry& entry : kPolicies) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

std::string known_policies() {
  std::string names;
  for (const PolicyEntry& entry : kPolicies)
    names += (names.empty() ? "" : ", ") + std::string{entry.name};
  return names;
}

// ---- Decorators ----------------------------------------------------------------------------

bool filter_option(ManagerConfig& config, std::string_view key, std::string_view value) {
  if (key == "threshold" || key == "store_threshold") {
    config.filter.store_threshold = parse_count(key, value);
  } else if (key == "max_tracker" || key == "max_tracker_size") {
    config.filter.max_tracker_size = parse_count(key, value);
  } else {
    return false;
  }
  return true;
}

bool sharded_option(ManagerConfig& config, std::string_view key, std::string_view value) {
  if (key != "shards") return false;
  config.concurrency.shards = parse_count(key, value);
  return true;
}

struct DecoratorEntry {
  std::string_view name;
  std::string_view options;
  bool (*set_option)(ManagerConfig&, std::string_view key, std::string_view value);
  void (*enable)(ManagerConfig&);
};

constexpr DecoratorEntry kDecorators[] = {
    {"filter",
     "threshold=N (default 2; 0 = off), max_tracker=N (default 64000)",
     &filter_option,
     [](ManagerConfig& c) { c.filter.store_threshold = 2; }},
    {"mutex", "", &no_options, [](ManagerConfig& c) { c.concurrency.mode = Concurrency::kMutex; }},
    {"sharded",
     "shards=N (default 4)",
     &sharded_option,
     [](ManagerConfig& c) { c.concurrency.mode = Concurrency::kSharded; }},
};

std::string known_decorators() {
  std::string names;
  for (const DecoratorEntry& entry : kDecorators)
    names += (names.empty() ? "" : ", ") + std::string{entry.name};
  return names;
}

[[noreturn]] void bad_spec(std::string_view spec, const std::string& what) {
  detail::throw_logic_error(
      __FILE__, __LINE__, "bad manager spec '" + std::string{spec} + "': " + what);
}

/// Applies "key=value,key=value" of `part` (named `name` in messages) through `set`.
void apply_options(std::string_view spec,
                   std::string_view name,
                   std::string_view options,
                   std::string_view known,
                   bool (*set)(ManagerConfig&, std::string_view, std::string_view),
                   ManagerConfig& config) {
  while (!options.empty()) {
    const std::size_t comma      = options.find(',');
    const std::string_view field = options.substr(0, comma);
    options = comma == std::string_view::npos ? std::string_view{} : options.substr(comma + 1);
    const std::size_t equals = field.find('=');
    if (field.empty() || equals == std::string_view::npos || equals == 0) {
      bad_spec(spec, cat("'", field, "' in '", name, "' is not of the form key=value"));
    }
    const std::string_view key   = field.substr(0, equals);
    const std::string_view value = field.substr(equals + 1);
    try {
      if (!set(config, key, value)) {
        std::string what = "unknown option '";
        what.append(key).append("' for '").append(name).append("'");
        if (known.empty()) {
          what.append(" (it takes none)");
        } else {
          what.append(" (known: ").append(known).append(")");
        }
        bad_spec(spec, what);
      }
    } catch (const BadOption& error) {
      bad_spec(spec, "'" + std::string{name} + "': " + error.message);
    }
  }
}

std::unique_ptr<OffloadingManager> make_filtered(const ManagerConfig& config,
                                                 const PolicyEntry& policy,
                                                 std::size_t num_blocks,
                                                 std::size_t max_tracker_size) {
  return make_filter_reused_manager(
      policy.make(config, num_blocks), config.filter.store_threshold, max_tracker_size);
}

}  // namespace

ManagerConfig parse_manager_spec(std::string_view spec) {
  ManagerConfig config;
  KVO_EXPECTS(!spec.empty(),
              "bad manager spec '': empty (known policies: " + known_policies() + ")");
  bool first = true;
  std::vector<std::string_view> seen;
  std::string_view rest = spec;
  for (;;) {
    const std::size_t plus      = rest.find('+');
    const std::string_view part = rest.substr(0, plus);
    const std::size_t colon     = part.find(':');
    const std::string_view name = part.substr(0, colon);
    const std::string_view options =
        colon == std::string_view::npos ? std::string_view{} : part.substr(colon + 1);
    if (name.empty())
      bad_spec(spec, "empty policy or decorator name in '" + std::string{part} + "'");
    if (first) {
      const PolicyEntry* policy = find_policy(name);
      if (policy == nullptr) {
        bad_spec(spec,
                 "unknown policy '" + std::string{name} + "' (known: " + known_policies() + ")");
      }
      config.policy = std::string{name};
      apply_options(spec, name, options, policy->options, policy->set_option, config);
    } else {
      const DecoratorEntry* decorator = nullptr;
      for (const DecoratorEntry& entry : kDecorators) {
        if (entry.name == name) decorator = &entry;
      }
      if (decorator == nullptr) {
        bad_spec(
            spec,
            "unknown decorator '" + std::string{name} + "' (known: " + known_decorators() + ")");
      }
      for (std::string_view before : seen) {
        if (before == name) bad_spec(spec, "decorator '" + std::string{name} + "' given twice");
      }
      if ((name == "mutex" || name == "sharded") && config.concurrency.mode != Concurrency::kNone) {
        bad_spec(spec, "'" + std::string{name} + "': mutex and sharded exclude each other");
      }
      seen.push_back(name);
      decorator->enable(config);
      apply_options(spec, name, options, decorator->options, decorator->set_option, config);
    }
    first = false;
    if (plus == std::string_view::npos) break;
    rest = rest.substr(plus + 1);
  }
  return config;
}

std::unique_ptr<OffloadingManager> make_manager(const ManagerConfig& config) {
  const PolicyEntry* policy = find_policy(config.policy);
  KVO_EXPECTS(
      policy != nullptr,
      "ManagerConfig: unknown policy '" + config.policy + "' (known: " + known_policies() + ")");
  switch (config.concurrency.mode) {
    case Concurrency::kNone:
      return make_filtered(config, *policy, config.num_blocks, config.filter.max_tracker_size);
    case Concurrency::kMutex:
      return std::make_unique<ConcurrentManager>(
          make_filtered(config, *policy, config.num_blocks, config.filter.max_tracker_size));
    case Concurrency::kSharded: {
      const std::size_t shards = config.concurrency.shards;
      KVO_EXPECTS(shards >= 1, "ManagerConfig: concurrency.shards must be at least 1, got 0");
      // Each shard's filter tracks its share of the hashes.
      const std::size_t tracker =
          std::max<std::size_t>(1, (config.filter.max_tracker_size + shards - 1) / shards);
      const auto build = [&config, policy, tracker](std::size_t n) {
        return make_filtered(config, *policy, n, tracker);
      };
      return std::make_unique<ConcurrentManager>(build, config.num_blocks, shards);
    }
  }
  detail::throw_logic_error(__FILE__,
                            __LINE__,
                            "ManagerConfig: unknown concurrency mode " +
                                std::to_string(static_cast<int>(config.concurrency.mode)));
}

std::unique_ptr<OffloadingManager> make_manager(std::string_view spec,
                                                std::size_t num_blocks,
                                                std::size_t block_size,
                                                bool enable_events) {
  ManagerConfig config = parse_manager_spec(spec);
  config.num_blocks    = num_blocks;
  config.block_size    = block_size;
  config.enable_events = enable_events;
  return make_manager(config);
}

std::vector<std::string> policy_specs() {
  std::vector<std::string> names;
  for (const PolicyEntry& entry : kPolicies) {
    // Without a transfer engine (a replay, a help text's example) tiered confirms its plans.
    names.emplace_back(entry.name == "tiered" ? "tiered:instant=1" : std::string{entry.name});
  }
  return names;
}

std::string spec_help() {
  // Appends rather than operator+ chains: GCC 12 warns falsely (-Wrestrict) on the latter.
  std::string help = "policies:\n";
  const auto line  = [&help](std::string_view name, std::string_view options) {
    help.append("  ").append(name);
    if (!options.empty()) help.append(":").append(options);
    help.append("\n");
  };
  for (const PolicyEntry& entry : kPolicies)
    line(entry.name, entry.options);
  help += "decorators (+name[:options]):\n";
  for (const DecoratorEntry& entry : kDecorators)
    line(entry.name, entry.options);
  return help;
}

}  // namespace kvoffload
