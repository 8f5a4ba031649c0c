#include "storage/crc32c.hpp"

#include <kvoffload/storage/block_store.hpp>

#include <array>
#include <climits>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif
#if KVOFFLOAD_HAVE_ISAL
#include <isa-l/crc.h>
#endif

namespace kvoffload::storage::detail {

namespace {

constexpr std::uint32_t kReflectedPolynomial = 0x82F63B78u;

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit)
      c = (c & 1u) ? (c >> 1) ^ kReflectedPolynomial : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr std::array<std::uint32_t, 256> kTable = make_table();

using Crc32cFunction = std::uint32_t (*)(const std::byte*, std::size_t, std::uint32_t) noexcept;

struct Choice {
  Crc32cFunction function;
  const char* name;
};

Choice choose() noexcept {
  if (crc32c_isal_available()) return {crc32c_isal, "isa-l crc32_iscsi"};
  if (crc32c_sse42_supported()) return {crc32c_sse42, "sse4.2 crc32 instruction"};
  return {crc32c_table, "table"};
}

const Choice& chosen() noexcept {
  static const Choice choice = choose();
  return choice;
}

}  // namespace

std::uint32_t crc32c_table(const std::byte* bytes, std::size_t length, std::uint32_t crc) noexcept {
  std::uint32_t c = ~crc;
  for (std::size_t i = 0; i < length; ++i)
    c = (c >> 8) ^ kTable[(c ^ static_cast<std::uint8_t>(bytes[i])) & 0xffu];
  return ~c;
}

#if defined(__x86_64__)
bool crc32c_sse42_supported() noexcept {
  return __builtin_cpu_supports("sse4.2");
}

__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(const std::byte* bytes,
                                                             std::size_t length,
                                                             std::uint32_t crc) noexcept {
  std::uint64_t c = ~crc;
  std::size_t i   = 0;
  for (; i < length && (reinterpret_cast<std::uintptr_t>(bytes + i) & 7u) != 0; ++i)
    c = _mm_crc32_u8(static_cast<std::uint32_t>(c), static_cast<std::uint8_t>(bytes[i]));
  for (; i + 8 <= length; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes + i, sizeof word);
    c = _mm_crc32_u64(c, word);
  }
  for (; i < length; ++i)
    c = _mm_crc32_u8(static_cast<std::uint32_t>(c), static_cast<std::uint8_t>(bytes[i]));
  return ~static_cast<std::uint32_t>(c);
}
#else
bool crc32c_sse42_supported() noexcept {
  return false;
}
std::uint32_t crc32c_sse42(const std::byte* bytes, std::size_t length, std::uint32_t crc) noexcept {
  return crc32c_table(bytes, length, crc);
}
#endif

#if KVOFFLOAD_HAVE_ISAL
bool crc32c_isal_available() noexcept {
  return true;
}
std::uint32_t crc32c_isal(const std::byte* bytes, std::size_t length, std::uint32_t crc) noexcept {
  // crc32_iscsi neither inverts its seed nor its result, and takes an int length.
  std::uint32_t c = ~crc;
  while (length > 0) {
    const std::size_t piece = length < (std::size_t{1} << 30) ? length : std::size_t{1} << 30;
    c = crc32_iscsi(reinterpret_cast<unsigned char*>(const_cast<std::byte*>(bytes)),
                    static_cast<int>(piece),
                    c);
    bytes += piece;
    length -= piece;
  }
  return ~c;
}
#else
bool crc32c_isal_available() noexcept {
  return false;
}
std::uint32_t crc32c_isal(const std::byte* bytes, std::size_t length, std::uint32_t crc) noexcept {
  return crc32c_table(bytes, length, crc);
}
#endif

const char* crc32c_implementation() noexcept {
  return chosen().name;
}

}  // namespace kvoffload::storage::detail

namespace kvoffload::storage {

std::uint32_t crc32c(std::span<const std::byte> bytes, std::uint32_t crc) noexcept {
  return detail::chosen().function(bytes.data(), bytes.size(), crc);
}

}  // namespace kvoffload::storage
