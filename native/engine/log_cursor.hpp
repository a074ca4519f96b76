// A cursor into the log, (entry index, log position), as stored in a log header.
//
// Remote writes land in no promised byte order and an 8-byte store is not atomic across
// every fabric, so a cursor carries a checksum: a reader that catches one half-written
// sees `nullopt` and reads again, never a mix of two cursors. Entry indexes start at 1;
// an all-zero (never written) cursor also reads as nullopt, which callers take as the
// start of the log.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace mu::engine {

struct LogCursor {
  std::uint64_t index = 1;     // the entry at `position`
  std::uint64_t position = 0;  // logical byte offset in the entry area (only grows)
  bool operator==(const LogCursor&) const = default;
};

inline constexpr std::size_t encoded_cursor_bytes = 24;
using EncodedCursor = std::array<std::byte, encoded_cursor_bytes>;

EncodedCursor encode_cursor(const LogCursor& cursor);
std::optional<LogCursor> decode_cursor(std::span<const std::byte> bytes);

// The start of every log: index 1 at position 0.
inline constexpr LogCursor log_start{1, 0};

}  // namespace mu::engine
