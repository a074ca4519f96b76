// Quorum arithmetic, for any replica count, odd or even (the original Mu code got even
// counts wrong). A majority is strictly more than half; two majorities always intersect.
#pragma once

#include <cstdint>

namespace mu::engine {

constexpr std::uint32_t majority(std::uint32_t replica_count) { return replica_count / 2 + 1; }

// How many replicas may fail while a majority remains.
constexpr std::uint32_t tolerated_failures(std::uint32_t replica_count) {
  return replica_count - majority(replica_count);
}

// Followers whose acknowledgement, with the leader's own copy, makes a majority.
constexpr std::uint32_t follower_acks_needed(std::uint32_t replica_count) { return majority(replica_count) - 1; }

static_assert(majority(1) == 1 && majority(2) == 2 && majority(3) == 2 && majority(4) == 3 && majority(5) == 3);
static_assert(tolerated_failures(2) == 0 && tolerated_failures(3) == 1 && tolerated_failures(4) == 1);
static_assert(follower_acks_needed(3) == 1 && follower_acks_needed(4) == 2);
// Any two majorities share a replica: 2 * majority(n) > n.
static_assert(2 * majority(4) > 4 && 2 * majority(6) > 6 && 2 * majority(7) > 7);

}  // namespace mu::engine
