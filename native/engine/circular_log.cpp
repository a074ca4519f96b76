#include "engine/circular_log.hpp"

#include <cassert>
#include <stdexcept>

namespace mu::engine {

CircularLog::CircularLog(std::uint64_t area_bytes, std::uint32_t max_payload_bytes)
    : area_bytes_(area_bytes), max_payload_bytes_(max_payload_bytes) {
  if (max_payload_bytes > max_entry_payload_bytes || area_bytes % 8 != 0 ||
      area_bytes < encoded_entry_bytes(max_payload_bytes) + encoded_entry_bytes(0)) {
    throw std::invalid_argument("log entry area must be a multiple of 8 bytes holding a maximal entry and a wrap marker");
  }
}

std::optional<CircularLog::Placement> CircularLog::place_entry(std::uint64_t tail_position,
                                                               std::uint32_t payload_bytes,
                                                               std::uint64_t recycled_position) const {
  assert(tail_position % 8 == 0);
  // A tail too close to the end for even a wrap marker is really the next lap's start,
  // where a reader that has caught up already stands.
  tail_position = readable_position(tail_position);
  assert(recycled_position <= tail_position);
  if (payload_bytes > max_payload_bytes_) return std::nullopt;
  const std::uint64_t entry_bytes = encoded_entry_bytes(payload_bytes);
  Placement placement{tail_position, 0, std::nullopt};
  if (entry_bytes > bytes_before_end(tail_position)) {
    if (bytes_before_end(tail_position) >= encoded_entry_bytes(0)) placement.wrap_marker_position = tail_position;
    placement.entry_position = next_lap(tail_position);
  }
  placement.next_position = placement.entry_position + entry_bytes;
  if (placement.next_position - recycled_position > area_bytes_) return std::nullopt;
  assert(place(placement.entry_position) + entry_bytes <= area_bytes_);
  return placement;
}

std::uint64_t CircularLog::readable_position(std::uint64_t position) const {
  return bytes_before_end(position) < encoded_entry_bytes(0) ? next_lap(position) : position;
}

std::uint64_t CircularLog::position_after(std::uint64_t position, const EntryHeader& header) const {
  if (header.kind == EntryKind::wrap) return next_lap(position);
  return readable_position(position + encoded_entry_bytes(header.payload_bytes));
}

}  // namespace mu::engine
