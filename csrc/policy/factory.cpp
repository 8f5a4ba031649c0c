#include <kvoffload/error.hpp>
#include <kvoffload/factory.hpp>

namespace kvoffload {

std::unique_ptr<OffloadingManager> make_manager(std::string_view spec,
                                                std::size_t num_blocks,
                                                std::size_t block_size,
                                                bool enable_events) {
  if (spec == "lru") return make_lru_manager(num_blocks, block_size, enable_events);
  if (spec == "arc") return make_arc_manager(num_blocks, block_size, enable_events);
  detail::throw_logic_error(
      __FILE__, __LINE__, "unknown policy '" + std::string{spec} + "' (known: lru, arc)");
}

std::vector<std::string> policy_specs() {
  return {"lru", "arc"};
}

}  // namespace kvoffload
