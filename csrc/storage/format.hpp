// The on-disk format of the block store (docs/storage.md describes it for humans).
//
// Per directory d of n: `kvoffload.lock` (flock), `kvoffload-blocks.data` and
// `kvoffload-blocks.meta`. Global slot s lives in directory s % n at local index s / n.
// - data file: a 4 KiB header, then local slot i at kHeaderBytes + i * slot_bytes.
// - meta file: the same header, then one 32-byte SlotRecord per local slot at
//   kHeaderBytes + i * kRecordBytes (padded to 4 KiB). A record is written only after its
//   payload write completed and zeroed before the slot is overwritten or discarded.
// Integers are little-endian (the store refuses to build on a big-endian host).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace kvoffload::storage::detail {

static_assert(std::endian::native == std::endian::little, "the disk format is little-endian");

inline constexpr std::uint64_t kMagic         = 0x314B4C424F564B4Bull;  // "KKVOBLK1"
inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::size_t kHeaderBytes     = 4096;
inline constexpr std::size_t kSlotAlignment   = 4096;
inline constexpr std::size_t kRecordBytes     = 32;
inline constexpr char kLockFileName[]         = "kvoffload.lock";
inline constexpr char kDataFileName[]         = "kvoffload-blocks.data";
inline constexpr char kMetaFileName[]         = "kvoffload-blocks.meta";

/// What a file is for; part of the header so a data file is never read as a meta file.
enum class FileKind : std::uint32_t { kData = 1, kMeta = 2 };

/// The first bytes of both files (the rest of the 4 KiB header is zero).
struct FileHeader {
  std::uint64_t magic{kMagic};
  std::uint32_t format_version{kFormatVersion};
  std::uint32_t kind{0};  ///< FileKind
  std::uint64_t block_bytes{0};
  std::uint64_t slot_bytes{0};
  std::uint64_t slots_in_file{0};  ///< local slots of this directory
  std::uint64_t total_slots{0};    ///< of the whole store
  std::uint32_t directory_index{0};
  std::uint32_t directory_count{0};
  std::uint32_t reserved{0};
  std::uint32_t header_crc{0};  ///< CRC32C of the bytes above
};
static_assert(sizeof(FileHeader) == 64);

/// One slot's record in the meta file. All zero: no block.
struct SlotRecord {
  std::uint64_t hash{0};
  std::uint32_t payload_bytes{0};
  std::uint16_t format_version{0};
  std::uint16_t flags{0};        ///< kRecordValid
  std::uint32_t payload_crc{0};  ///< CRC32C of the 8 hash bytes, then the payload
  std::uint32_t slot{0};         ///< global slot (low 32 bits), guards against misplaced records
  std::uint32_t reserved{0};
  std::uint32_t record_crc{0};  ///< CRC32C of the 28 bytes above
};
static_assert(sizeof(SlotRecord) == kRecordBytes);

inline constexpr std::uint16_t kRecordValid = 1;

inline constexpr std::uint64_t round_up(std::uint64_t value, std::uint64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

inline constexpr std::uint64_t data_offset(std::uint64_t local_slot, std::uint64_t slot_bytes) {
  return kHeaderBytes + local_slot * slot_bytes;
}

inline constexpr std::uint64_t record_offset(std::uint64_t local_slot) {
  return kHeaderBytes + local_slot * kRecordBytes;
}

inline constexpr std::uint64_t data_file_bytes(std::uint64_t slots, std::uint64_t slot_bytes) {
  return kHeaderBytes + slots * slot_bytes;
}

inline constexpr std::uint64_t meta_file_bytes(std::uint64_t slots) {
  return round_up(kHeaderBytes + slots * kRecordBytes, kSlotAlignment);
}

}  // namespace kvoffload::storage::detail
