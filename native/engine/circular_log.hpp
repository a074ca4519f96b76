// Placement of entries in the circular entry area, shared by the writer (the leader) and
// the readers (every replica applying its own log).
//
// Positions are logical byte offsets that only grow; the place in the area is
// position % area_bytes. An entry never straddles the end of the area: when it does not
// fit before the end, the leader first writes a `wrap` entry (or, when even that does not
// fit, nothing: a reader that finds fewer than encoded_entry_bytes(0) bytes before the end
// moves on by itself) and the entry starts the next lap at place 0.
//
// Space is reclaimed only below the recycled position, which the leader computes from
// what a majority of replicas have applied. Placing an entry checks free space every time:
// the original fast path did not and could run off the end of the log.
#pragma once

#include <cstdint>
#include <optional>

#include "engine/log_entry.hpp"

namespace mu::engine {

class CircularLog {
 public:
  // The area must hold at least one entry of max_payload_bytes and a wrap marker, and be
  // a multiple of 8 bytes.
  explicit CircularLog(std::uint64_t area_bytes, std::uint32_t max_payload_bytes = max_entry_payload_bytes);

  std::uint64_t area_bytes() const { return area_bytes_; }
  std::uint64_t place(std::uint64_t position) const { return position % area_bytes_; }
  std::uint64_t bytes_before_end(std::uint64_t position) const { return area_bytes_ - place(position); }

  struct Placement {
    std::uint64_t entry_position;  // where the entry goes
    std::uint64_t next_position;   // where the entry after it goes
    // When the entry wraps: the position of the wrap marker to write first, if one fits.
    std::optional<std::uint64_t> wrap_marker_position;
  };
  // Where an entry of `payload_bytes` written at `tail_position` goes; nullopt when the
  // space it needs reaches beyond recycled_position + area_bytes (the log is full).
  std::optional<Placement> place_entry(std::uint64_t tail_position, std::uint32_t payload_bytes,
                                       std::uint64_t recycled_position) const;

  // Where a reader at `position` looks next when no entry can start there (too close to
  // the end for even a wrap marker): the start of the next lap. Otherwise `position`.
  std::uint64_t readable_position(std::uint64_t position) const;

  // The position after a valid entry read at `position`: a wrap marker sends the reader
  // to the start of the next lap.
  std::uint64_t position_after(std::uint64_t position, const EntryHeader& header) const;

 private:
  std::uint64_t next_lap(std::uint64_t position) const { return position + bytes_before_end(position); }

  std::uint64_t area_bytes_;
  std::uint32_t max_payload_bytes_;
};

}  // namespace mu::engine
