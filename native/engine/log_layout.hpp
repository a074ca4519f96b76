// Where things live in a replica's log region. The region is registered with the fabric;
// the leader reaches it with one-sided operations, the owner reads it locally.
//
// Each header word has a cache line of its own because each has a different writer:
//   min_proposal          written remotely by a proposer in the prepare step (paper 4.1)
//   first_undecided       the owner's FUO: log position of the first undecided entry;
//                         written by the owner, and by a new leader aligning followers
//   committed             the commit point a leader publishes when it goes idle, so no
//                         follower keeps its last entry uncommitted (a trap of the
//                         original code): index and position, one 16-byte write
//   applied               the position the owner has applied up to; the leader reads it
//                         to decide what can be recycled
// Entries follow, in a circular area of `entry_area_bytes`.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mu::engine::log_layout {

inline constexpr std::size_t min_proposal_offset = 0;
inline constexpr std::size_t first_undecided_offset = 64;
inline constexpr std::size_t committed_index_offset = 128;
inline constexpr std::size_t committed_position_offset = 136;
inline constexpr std::size_t applied_position_offset = 192;
inline constexpr std::size_t entry_area_offset = 256;

constexpr std::size_t region_bytes(std::size_t entry_area_bytes) { return entry_area_offset + entry_area_bytes; }

}  // namespace mu::engine::log_layout
