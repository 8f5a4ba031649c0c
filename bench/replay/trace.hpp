/**
 * @file trace.hpp
 * @brief Reading KV-block request traces (Mooncake JSONL: one object per line with `hash_ids`).
 */
#pragma once

#include <kvoffload/types.hpp>

#include <cstddef>
#include <istream>
#include <string>
#include <vector>

namespace kvoffload::replay {

/// One request: the block hashes it reads, in prefix order.
struct Request {
  std::vector<BlockHash> hashes;
};

struct Trace {
  std::vector<Request> requests;
  std::size_t references{0};    ///< block references (sum of hashes over requests)
  std::size_t distinct_ids{0};  ///< distinct block hashes
};

/**
 * @brief Parse a JSONL trace. Each non-empty line must be a JSON object with an array of
 * non-negative integers under "hash_ids"; other keys are skipped.
 * @throws kvoffload::logic_error "line N: <what is wrong>" on the first malformed line.
 */
Trace parse_trace(std::istream& in);

/// @brief Replace every id by a 64-bit mix of it (a bijection: reuse structure is kept), so a
/// trace of dense integer ids exercises hash tables the way real block hashes do.
void scramble_ids(Trace& trace);

/// @brief parse_trace on a file. @throws kvoffload::logic_error if it cannot be opened.
Trace load_trace(const std::string& path);

/**
 * @brief The bundled Mooncake trace: installed beside the tools (<prefix>/share/kvoffload/,
 * found from the running executable's own path), else in the source tree this was built from.
 * @param looked if non-null, gets the places looked at, comma-separated
 * @return its path, or "" if neither exists (a tool then requires --trace)
 */
std::string find_bundled_trace(std::string* looked = nullptr);

}  // namespace kvoffload::replay
