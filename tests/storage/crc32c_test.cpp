// CRC32C: published vectors (RFC 3720 B.4 and the "123456789" check value), continuation, and
// the implementations (ISA-L, SSE4.2, table) against each other on random data.
#include "storage/crc32c.hpp"

#include <kvoffload/storage/block_store.hpp>

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using kvoffload::storage::crc32c;
namespace detail = kvoffload::storage::detail;

std::vector<std::byte> bytes_of(const std::string& text) {
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c(bytes_of("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c({}), 0u);
  std::vector<std::byte> zeros(32, std::byte{0}), ones(32, std::byte{0xFF}), up(32), down(32);
  for (int i = 0; i < 32; ++i) {
    up[i]   = static_cast<std::byte>(i);
    down[i] = static_cast<std::byte>(31 - i);
  }
  // RFC 3720, appendix B.4.
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(crc32c(up), 0x46DD794Eu);
  EXPECT_EQ(crc32c(down), 0x113FDB5Cu);
}

TEST(Crc32c, EveryImplementationMatchesTheVectors) {
  const auto check = bytes_of("123456789");
  EXPECT_EQ(detail::crc32c_table(check.data(), check.size(), 0), 0xE3069283u);
  if (detail::crc32c_sse42_supported())
    EXPECT_EQ(detail::crc32c_sse42(check.data(), check.size(), 0), 0xE3069283u);
  if (detail::crc32c_isal_available())
    EXPECT_EQ(detail::crc32c_isal(check.data(), check.size(), 0), 0xE3069283u);
  EXPECT_FALSE(std::string{detail::crc32c_implementation()}.empty());
}

TEST(Crc32c, ContinuationEqualsOnePass) {
  const auto all = bytes_of("The quick brown fox jumps over the lazy dog");
  for (std::size_t cut = 0; cut <= all.size(); ++cut) {
    const std::span<const std::byte> whole{all};
    EXPECT_EQ(crc32c(whole.subspan(cut), crc32c(whole.first(cut))), crc32c(whole)) << cut;
  }
}

TEST(Crc32c, ImplementationsAgreeOnRandomData) {
  std::mt19937_64 rng{7};
  std::vector<std::byte> data(1 << 16);
  for (auto& b : data)
    b = static_cast<std::byte>(rng());
  for (int trial = 0; trial < 300; ++trial) {
    const std::size_t offset = rng() % 64;  // unaligned starts exercise the byte prologues
    const std::size_t length = rng() % (data.size() - offset);
    const std::uint32_t seed = trial % 3 == 0 ? 0 : static_cast<std::uint32_t>(rng());
    const std::byte* p       = data.data() + offset;
    const std::uint32_t want = detail::crc32c_table(p, length, seed);
    if (detail::crc32c_sse42_supported())
      ASSERT_EQ(detail::crc32c_sse42(p, length, seed), want) << offset << " " << length;
    if (detail::crc32c_isal_available())
      ASSERT_EQ(detail::crc32c_isal(p, length, seed), want) << offset << " " << length;
    ASSERT_EQ(crc32c({p, length}, seed), want);
  }
}

}  // namespace
