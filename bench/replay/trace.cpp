#include "replay/trace.hpp"

#include <kvoffload/error.hpp>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <limits>
#include <unordered_set>

namespace kvoffload::replay {

namespace {

// A small recursive-descent reader for one JSON line: enough JSON to skip any value, and to
// read the one array of integers we need, with messages that say what is wrong where.
class LineParser {
 public:
  LineParser(const std::string& line, std::size_t line_number)
      : text_{line}, line_number_{line_number} {}

  Request parse() {
    Request request;
    bool have_hash_ids = false;
    skip_space();
    expect('{', "expected '{' at the start of the object");
    skip_space();
    if (peek() == '}') fail("the object has no \"hash_ids\"");
    for (;;) {
      skip_space();
      const std::string key = parse_string();
      skip_space();
      expect(':', "expected ':' after key \"" + key + "\"");
      skip_space();
      if (key == "hash_ids") {
        if (have_hash_ids) fail("\"hash_ids\" appears twice");
        parse_hash_ids(request.hashes);
        have_hash_ids = true;
      } else {
        skip_value(0);
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}', "expected ',' or '}' after the value of \"" + key + "\"");
      break;
    }
    skip_space();
    if (pos_ != text_.size()) fail("unexpected text after the object");
    if (!have_hash_ids) fail("the object has no \"hash_ids\"");
    return request;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    detail::throw_logic_error(__FILE__,
                              __LINE__,
                              "trace line " + std::to_string(line_number_) + ", column " +
                                  std::to_string(pos_ + 1) + ": " + what);
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_])))
      ++pos_;
  }
  void expect(char c, const std::string& what) {
    if (peek() != c) fail(what);
    ++pos_;
  }

  std::string parse_string() {
    expect('"', "expected a string key");
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      if (text_[pos_] == '\\') {
        if (++pos_ >= text_.size()) break;
      }
      out.push_back(text_[pos_++]);
    }
    expect('"', "unterminated string");
    return out;
  }

  void parse_hash_ids(std::vector<BlockHash>& out) {
    expect('[', "\"hash_ids\" must be an array");
    skip_space();
    if (peek() == ']') {
      ++pos_;
      return;
    }
    for (;;) {
      skip_space();
      if (!std::isdigit(static_cast<unsigned char>(peek()))) {
        fail("\"hash_ids\" must hold non-negative integers");
      }
      BlockHash value = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        const auto digit = static_cast<BlockHash>(text_[pos_++] - '0');
        if (value > (std::numeric_limits<BlockHash>::max() - digit) / 10) {
          fail("hash id does not fit in 64 bits");
        }
        value = value * 10 + digit;
      }
      if (peek() == '.' || peek() == 'e' || peek() == 'E') {
        fail("\"hash_ids\" must hold integers, found a fraction or exponent");
      }
      out.push_back(value);
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']', "expected ',' or ']' in \"hash_ids\"");
      return;
    }
  }

  void skip_value(int depth) {
    if (depth > 64) fail("nesting too deep");
    const char c = peek();
    if (c == '"') {
      parse_string();
    } else if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++pos_;
      skip_space();
      if (peek() == close) {
        ++pos_;
        return;
      }
      for (;;) {
        skip_space();
        if (close == '}') {
          parse_string();
          skip_space();
          expect(':', "expected ':' in a nested object");
          skip_space();
        }
        skip_value(depth + 1);
        skip_space();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect(close, std::string{"expected ',' or '"} + close + "'");
        return;
      }
    } else if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      ++pos_;
      while (std::isdigit(static_cast<unsigned char>(peek())) || peek() == '.' || peek() == 'e' ||
             peek() == 'E' || peek() == '+' || peek() == '-') {
        ++pos_;
      }
    } else {
      for (const char* word : {"true", "false", "null"}) {
        if (text_.compare(pos_, std::char_traits<char>::length(word), word) == 0) {
          pos_ += std::char_traits<char>::length(word);
          return;
        }
      }
      fail("expected a JSON value");
    }
  }

  const std::string& text_;
  std::size_t line_number_;
  std::size_t pos_{0};
};

}  // namespace

Trace parse_trace(std::istream& in) {
  Trace trace;
  std::unordered_set<BlockHash> distinct;
  std::string line;
  std::size_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    bool blank = true;
    for (char c : line)
      blank = blank && std::isspace(static_cast<unsigned char>(c));
    if (blank) continue;
    Request request = LineParser{line, line_number}.parse();
    trace.references += request.hashes.size();
    distinct.insert(request.hashes.begin(), request.hashes.end());
    trace.requests.push_back(std::move(request));
  }
  trace.distinct_ids = distinct.size();
  return trace;
}

void scramble_ids(Trace& trace) {
  for (Request& request : trace.requests) {
    for (BlockHash& h : request.hashes) {
      // splitmix64: an invertible mix, so distinct ids stay distinct.
      std::uint64_t x = h + 0x9e3779b97f4a7c15ULL;
      x               = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
      x               = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
      h               = x ^ (x >> 31);
    }
  }
}

Trace load_trace(const std::string& path) {
  std::ifstream in{path};
  KVO_EXPECTS(in.good(), "cannot open trace file '" + path + "'");
  return parse_trace(in);
}

std::string find_bundled_trace(std::string* looked) {
  constexpr const char* kBundled = "traces/mooncake/conversation_trace.jsonl";
  std::vector<std::filesystem::path> candidates;
  std::error_code error;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    candidates.push_back(exe.parent_path() / KVOFFLOAD_BIN_TO_DATA / "kvoffload" / kBundled);
  }
  candidates.push_back(std::filesystem::path{KVOFFLOAD_SOURCE_DIR} / "data" / kBundled);
  for (const auto& candidate : candidates) {
    const auto path = candidate.lexically_normal();
    if (looked != nullptr) *looked += (looked->empty() ? "" : ", ") + path.string();
    if (std::filesystem::is_regular_file(path, error)) return path.string();
  }
  return "";
}

}  // namespace kvoffload::replay
