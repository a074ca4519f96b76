// Where things live in a replica's log region. The region is registered with the fabric;
// the leader reaches it with one-sided operations, the owner reads it locally.
//
// The header holds cursors (log_cursor.hpp), each on a cache line of its own because each
// has a different writer:
//   min_proposal   (proposal, 0): written remotely by a proposer in the prepare step
//                  (paper 4.1); the highest proposal this log has promised to
//   aligned        the first undecided entry as a new leader set it when it brought this
//                  log up to date (paper 4.3, "update followers")
//   committed      the commit point a leader publishes when it goes idle, so no follower
//                  keeps its last entry uncommitted (a trap of the original code)
//   decided        the owner's first undecided entry: everything before it is committed
//   applied        the owner's next entry to apply; the leader reads it to decide what
//                  can be recycled
//   recycled       written by a leader that found this log too far behind to bring up to
//                  date: space below its position is reused, so the owner needs a state
//                  transfer if it has not applied that far
// A replica's first undecided offset (FUO) is the later of `aligned` and `decided`.
// Entries follow, in a circular area of `entry_area_bytes` (circular_log.hpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mu::engine::log_layout {

inline constexpr std::size_t min_proposal_offset = 0;
inline constexpr std::size_t aligned_offset = 64;
inline constexpr std::size_t committed_offset = 128;
inline constexpr std::size_t decided_offset = 192;
inline constexpr std::size_t applied_offset = 256;
inline constexpr std::size_t recycled_offset = 320;
inline constexpr std::size_t entry_area_offset = 512;

constexpr std::size_t region_bytes(std::size_t entry_area_bytes) { return entry_area_offset + entry_area_bytes; }

}  // namespace mu::engine::log_layout
