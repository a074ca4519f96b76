#include "engine/replica_log.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace mu::engine {

ReplicaLog::ReplicaLog(std::span<std::byte> region, std::uint32_t max_payload_bytes)
    : region_(region),
      entry_area_(region.size() > log_layout::entry_area_offset ? region.subspan(log_layout::entry_area_offset)
                                                                 : std::span<std::byte>{}),
      geometry_(entry_area_.size(), max_payload_bytes) {}

std::optional<LogCursor> ReplicaLog::read_cursor(std::size_t header_offset) const {
  return decode_cursor(region_.subspan(header_offset, encoded_cursor_bytes));
}

void ReplicaLog::write_cursor(std::size_t header_offset, const LogCursor& cursor) {
  const EncodedCursor encoded = encode_cursor(cursor);
  std::memcpy(region_.data() + header_offset, encoded.data(), encoded.size());
}

DecodedEntry ReplicaLog::snapshot(std::uint64_t position, std::vector<std::byte>& scratch) const {
  const std::uint64_t place = geometry_.place(position);
  // The header first, to learn how much to copy; then the whole entry, judged as one copy.
  std::uint32_t payload_bytes = 0;
  std::memcpy(&payload_bytes, entry_area_.data() + place, sizeof payload_bytes);
  const std::uint64_t room = geometry_.bytes_before_end(position);
  const std::uint64_t wanted =
      payload_bytes <= max_entry_payload_bytes ? std::min<std::uint64_t>(encoded_entry_bytes(payload_bytes), room)
                                               : encoded_entry_bytes(0);
  scratch.resize(wanted);
  std::memcpy(scratch.data(), entry_area_.data() + place, wanted);
  return decode_entry(scratch);
}

std::optional<ReplicaLog::Snapshot> ReplicaLog::read_entry(std::uint64_t position, std::uint64_t expected_index,
                                                           std::vector<std::byte>& scratch) const {
  position = geometry_.readable_position(position);
  // The index first: at the tail the bytes are usually an entry of an earlier lap, and
  // copying and checksumming all of it only to find the wrong index costs more than the
  // rest of a replication round. A torn index reads as "not yet", which it is.
  std::uint64_t index_word = 0;
  std::memcpy(&index_word, entry_area_.data() + geometry_.place(position) + entry_index_offset, sizeof index_word);
  if (index_word != expected_index) return std::nullopt;
  const DecodedEntry decoded = snapshot(position, scratch);
  if (decoded.state != EntryState::valid || decoded.header.log_index != expected_index) return std::nullopt;
  return Snapshot{decoded.header, decoded.payload, position};
}

std::optional<std::uint64_t> ReplicaLog::index_at(std::uint64_t position, std::vector<std::byte>& scratch) const {
  return index_at_least(position, 0, scratch);
}

std::optional<std::uint64_t> ReplicaLog::index_at_least(std::uint64_t position, std::uint64_t minimum,
                                                        std::vector<std::byte>& scratch) const {
  position = geometry_.readable_position(position);
  // Cheap rejection first: usually the bytes there are an earlier lap's (a lower index).
  std::uint64_t index_word = 0;
  std::memcpy(&index_word, entry_area_.data() + geometry_.place(position) + entry_index_offset, sizeof index_word);
  if (index_word < minimum) return std::nullopt;
  const DecodedEntry decoded = snapshot(position, scratch);
  if (decoded.state != EntryState::valid) return std::nullopt;
  return decoded.header.log_index;
}

}  // namespace mu::engine
