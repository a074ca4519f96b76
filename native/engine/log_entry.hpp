// The encoding of one Mu log entry in a replica's log region (paper section 4: the leader
// writes it into each follower's log with one one-sided WRITE).
//
//   offset  size  field
//   0       4     payload_bytes
//   4       4     kind (EntryKind)
//   8       8     proposal: the proposal number under which the leader wrote it
//   16      8     log_index: its position in the total order (1, 2, 3, ...)
//   24      8     leader_commit_index: the highest index the leader knew committed when
//                 it wrote this entry (commit piggybacking)
//   32      P     payload, then zero padding to a multiple of 8
//   32+P'   4     checksum: CRC32C of everything above
//   36+P'   4     canary, written last
//
// A remote write lands in no promised byte order, so the canary says only "maybe here";
// an entry is trusted when the checksum matches and the index is the one expected at that
// place, which also rejects an intact entry left from an earlier lap of the circular log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace mu::engine {

enum class EntryKind : std::uint32_t {
  commands = 1,  // a batch of client commands for the application
  no_op = 2,     // written by a new leader to commit what it recovered
  wrap = 3,      // nothing more fits before the end of the log: continue at offset 0;
                 // carries the log_index of the entry that follows it
};

struct EntryHeader {
  std::uint32_t payload_bytes = 0;
  EntryKind kind = EntryKind::commands;
  std::uint64_t proposal = 0;
  std::uint64_t log_index = 0;
  std::uint64_t leader_commit_index = 0;
};

inline constexpr std::size_t entry_header_bytes = 32;
inline constexpr std::size_t entry_index_offset = 16;  // of log_index, for a quick look
inline constexpr std::size_t entry_trailer_bytes = 8;
inline constexpr std::uint32_t entry_canary = 0x4d75'4c67;  // "gLuM"
inline constexpr std::uint32_t max_entry_payload_bytes = 1u << 20;

constexpr std::size_t padded_payload_bytes(std::size_t payload_bytes) { return (payload_bytes + 7) & ~std::size_t{7}; }
constexpr std::size_t encoded_entry_bytes(std::size_t payload_bytes) {
  return entry_header_bytes + padded_payload_bytes(payload_bytes) + entry_trailer_bytes;
}

// Writes the entry into `out` (at least encoded_entry_bytes(payload.size()) bytes). The
// canary is stored last, so a local reader never sees it before the rest.
void encode_entry(std::span<std::byte> out, const EntryHeader& header, std::span<const std::byte> payload);

enum class EntryState : std::uint8_t {
  absent,     // no canary: nothing written here yet (or recycled)
  torn,       // canary present but the checksum does not match: still landing, or damaged
  malformed,  // checksum matches but the fields are impossible (length, kind)
  valid,
};

struct DecodedEntry {
  EntryState state = EntryState::absent;
  EntryHeader header{};
  std::span<const std::byte> payload{};  // a view into the examined memory
};

// Examines the memory at an entry's place; `memory` may be longer than the entry.
DecodedEntry decode_entry(std::span<const std::byte> memory);

}  // namespace mu::engine
