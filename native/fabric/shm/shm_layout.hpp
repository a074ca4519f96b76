// The shared-memory layout of one node's control file, `<cluster dir>/node-<id>.control`.
//
// Peers map it read-write. An initiator announces each operation in its *own* connection
// slot (operation_sequence, a word only it writes), then checks the target's slot (access
// word, generation, state, the peer identity it names) and the target's region table
// before touching the target's region. The target changes access by storing its access
// word and then waiting until it reads the initiator's operation_sequence even or changed (or the
// initiator process has exited). Both sides use sequentially consistent operations on
// these words, so either the initiator sees the new access word or the target sees the
// operation in flight (the store-load pattern of Dekker's algorithm); that is what makes
// a settled revoke final. A single-writer flag, not a shared counter, so no party can
// ever erase another's announcement.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "fabric/endpoint.hpp"

namespace mu::fabric::shm {

inline constexpr std::uint64_t control_magic = 0x31'4c'52'54'43'55'4d'00ULL;  // "\0MUCTRL1"
inline constexpr std::uint32_t control_version = 3;
inline constexpr std::uint32_t max_connections_per_node = 256;
inline constexpr std::uint32_t max_regions_per_node = 64;

// One end of a connection, owned by the node whose control file holds it. Fits one cache
// line, so an initiator's operation touches a single line of the target's control memory.
struct alignas(64) ConnectionSlot {
  std::atomic<std::uint32_t> in_use;          // written by the owner
  std::atomic<std::uint32_t> generation;      // bumped by the owner at reset and robust cycles
  std::atomic<std::uint32_t> state;           // ConnectionState; the peer may set `error`
  std::atomic<std::uint32_t> access;          // AccessFlags the peer holds; written by the owner
  std::atomic<std::uint32_t> peer_node;       // written by the owner at connect
  std::atomic<std::uint32_t> peer_slot;       // written by the owner at connect
  // The peer process incarnation this end was connected to (its ControlBlock::incarnation):
  // a restarted peer that reuses the node id and slot number is not the peer granted access.
  std::atomic<std::uint64_t> peer_incarnation;
  // Odd while the owner, as initiator, performs an operation on its peer's memory; bumped
  // at the start and at the end of each. Written only by the owner; read by the peer when
  // it narrows access (a changed value proves the operation it saw in flight has ended).
  std::atomic<std::uint64_t> operation_sequence;
};
static_assert(sizeof(ConnectionSlot) == 64);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

struct alignas(64) RegionSlot {
  std::atomic<std::uint32_t> generation;  // bumped at every registration in this slot
  std::atomic<std::uint32_t> valid;       // 1 while registered
  std::atomic<std::uint64_t> size_bytes;  // authoritative bound for remote operations
};

struct ControlBlock {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t node_id;
  std::uint32_t process_id;
  // Random, fixed for the life of the process: names this incarnation of the node in
  // connection slots and region descriptors, so nothing granted to a dead incarnation
  // passes to its successor.
  std::uint64_t incarnation;
  // Fault injection for tests, a network partition on shm: bit j set means this node and
  // node j cannot reach each other, and every operation between them fails as
  // peer_unreachable, as across a cut link. Only test harnesses write it (at a fixed
  // offset: mu/testing/partition.ts); it starts at 0.
  std::atomic<std::uint64_t> unreachable_peers;
  alignas(64) pthread_mutex_t liveness;  // see liveness.hpp
  RegionSlot regions[max_regions_per_node];
  ConnectionSlot connections[max_connections_per_node];
};

// mu/testing/partition.ts writes unreachable_peers at this offset.
static_assert(offsetof(ControlBlock, unreachable_peers) == 32);

// A region key packs the slot (low 8 bits) and the slot's generation (the rest), so a
// descriptor of a deregistered region never reaches a later region in the same slot.
constexpr std::uint32_t region_key(std::uint32_t slot, std::uint32_t generation) {
  return (generation << 8) | slot;
}
constexpr std::uint32_t region_key_slot(std::uint32_t key) { return key & 0xff; }
constexpr std::uint32_t region_key_generation(std::uint32_t key) { return key >> 8; }
static_assert(max_regions_per_node <= 256);

}  // namespace mu::fabric::shm
