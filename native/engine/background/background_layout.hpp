// A replica's background region: what the background plane of every replica reads and
// writes with one-sided operations (paper section 5).
//
//   heartbeat      a counter the owner bumps while it is healthy; peers READ it
//   holder         right after it: 1 + the id of the replica this replica's log is granted
//                  to, 0 for none. A leader that reads that a majority no longer name it
//                  knows it was replaced, even while idle.
//   leading        then 1 while this replica leads or stands for election, else 0; the
//                  replicas whose logs it holds stop following it when it drops to 0.
// One READ takes all three.
//   request[r]     written by replica r: "grant me write access to your log" (a sealed
//                  cursor whose index is r's request sequence number)
//   ack[g]         written by replica g into the requester's region: "granted, for your
//                  request with this sequence number"
// Each word has a cache line of its own: each has a different writer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/replication/leader_agent.hpp"  // max_replicas

namespace mu::engine::background_layout {

inline constexpr std::size_t heartbeat_offset = 0;
inline constexpr std::size_t holder_offset = 8;
inline constexpr std::size_t leading_offset = 16;
inline constexpr std::size_t status_bytes = 24;  // heartbeat, holder, leading
inline constexpr std::size_t request_offset(std::uint32_t requester) { return 64 + requester * 64; }
inline constexpr std::size_t ack_offset(std::uint32_t grantor) { return 64 + (max_replicas + grantor) * 64; }
inline constexpr std::size_t region_bytes = 64 + 2 * max_replicas * 64;

}  // namespace mu::engine::background_layout
