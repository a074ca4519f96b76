#include "engine/log_cursor.hpp"

#include <cstring>

#include "engine/crc32c.hpp"

namespace mu::engine {
namespace {

// The check word: CRC32C of the 16 value bytes, tagged so that zeroed memory never checks.
constexpr std::uint64_t check_tag = 0x4355'5253ULL << 32;  // "CURS"

std::uint64_t check_word(std::span<const std::byte> value_bytes) { return check_tag | crc32c(value_bytes); }

}  // namespace

EncodedCursor encode_cursor(const LogCursor& cursor) {
  EncodedCursor out{};
  std::memcpy(out.data(), &cursor.index, 8);
  std::memcpy(out.data() + 8, &cursor.position, 8);
  const std::uint64_t check = check_word(std::span(out).first(16));
  std::memcpy(out.data() + 16, &check, 8);
  return out;
}

std::optional<LogCursor> decode_cursor(std::span<const std::byte> bytes) {
  if (bytes.size() < encoded_cursor_bytes) return std::nullopt;
  std::array<std::byte, encoded_cursor_bytes> copy;
  std::memcpy(copy.data(), bytes.data(), encoded_cursor_bytes);  // one snapshot, then check it
  std::uint64_t check = 0;
  std::memcpy(&check, copy.data() + 16, 8);
  if (check != check_word(std::span(copy).first(16))) return std::nullopt;
  LogCursor cursor;
  std::memcpy(&cursor.index, copy.data(), 8);
  std::memcpy(&cursor.position, copy.data() + 8, 8);
  if (cursor.index == 0) return std::nullopt;
  return cursor;
}

}  // namespace mu::engine
