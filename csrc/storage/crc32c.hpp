// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) in three implementations: ISA-L's
// crc32_iscsi when the library was found at build time, SSE4.2's crc32 instruction when the CPU
// has it (checked at run time), and a byte-table fallback. kvoffload::storage::crc32c() uses the
// fastest one available; tests compare them against each other.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvoffload::storage::detail {

/// Every implementation continues from `crc` (a previous result; 0 to start), like crc32c().
std::uint32_t crc32c_table(const std::byte* bytes, std::size_t length, std::uint32_t crc) noexcept;

/// Whether crc32c_sse42 may be called (an x86-64 CPU with SSE4.2).
bool crc32c_sse42_supported() noexcept;
std::uint32_t crc32c_sse42(const std::byte* bytes, std::size_t length, std::uint32_t crc) noexcept;

/// Whether ISA-L was found at build time (crc32c_isal falls back to the table otherwise).
bool crc32c_isal_available() noexcept;
std::uint32_t crc32c_isal(const std::byte* bytes, std::size_t length, std::uint32_t crc) noexcept;

/// "isa-l crc32_iscsi", "sse4.2 crc32 instruction" or "table": what crc32c() runs.
const char* crc32c_implementation() noexcept;

}  // namespace kvoffload::storage::detail
