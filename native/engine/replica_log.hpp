// A replica's own log region, as its owner sees it: the header cursors and snapshots of
// entries. Every read takes a private copy first and judges only the copy, because the
// leader may be writing the same bytes at that moment (its one-sided WRITEs need no
// cooperation from this replica).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "engine/circular_log.hpp"
#include "engine/log_cursor.hpp"
#include "engine/log_entry.hpp"
#include "engine/log_layout.hpp"

namespace mu::engine {

class ReplicaLog {
 public:
  // `region` is the whole registered log region: log_layout::region_bytes(area) bytes.
  ReplicaLog(std::span<std::byte> region, std::uint32_t max_payload_bytes);

  const CircularLog& geometry() const { return geometry_; }

  std::optional<LogCursor> read_cursor(std::size_t header_offset) const;
  // Only for the cursors the owner writes (applied); the others are written remotely.
  void write_cursor(std::size_t header_offset, const LogCursor& cursor);

  // The entry expected at `position` with index `expected_index`, copied into `scratch`
  // and checked there; a wrap marker for that index is returned as such (the caller moves
  // on with geometry().position_after()). nullopt when nothing valid with that index is
  // there (yet).
  struct Snapshot {
    EntryHeader header;
    std::span<const std::byte> payload;  // inside `scratch`
    std::uint64_t position;              // where it was read (after skipping a dead zone)
  };
  std::optional<Snapshot> read_entry(std::uint64_t position, std::uint64_t expected_index,
                                     std::vector<std::byte>& scratch) const;

  // The index of whatever valid entry lies at `position`, expected or not: lets a reader
  // tell "not written yet" from "overwritten by a later lap".
  std::optional<std::uint64_t> index_at(std::uint64_t position, std::vector<std::byte>& scratch) const;
  // The same, but only when that index is at least `minimum` (cheap when it is not).
  std::optional<std::uint64_t> index_at_least(std::uint64_t position, std::uint64_t minimum,
                                              std::vector<std::byte>& scratch) const;

  std::span<const std::byte> entry_area() const { return entry_area_; }

 private:
  DecodedEntry snapshot(std::uint64_t position, std::vector<std::byte>& scratch) const;

  std::span<std::byte> region_;
  std::span<std::byte> entry_area_;
  CircularLog geometry_;
};

}  // namespace mu::engine
