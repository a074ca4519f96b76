// ShmConnection: the data path and the access changes of the shm backend.
//
// The initiator performs each operation itself. It announces the operation in its own
// connection slot (operation_sequence becomes odd, sequentially consistent), checks the
// target's slot (alive, same connection generation, naming this initiator's node, slot and
// incarnation, access word allowing the operation) and the target's region table, copies
// the bytes, and ends the announcement (operation_sequence becomes even again).
//
// A target narrowing access stores its access word (sequentially consistent) and then
// "drains" the peer: it reads the peer's operation_sequence until it is even, or differs
// from an odd value seen earlier, or the peer process has exited. An operation announced
// before the store may still land, so until then the change is `pending`; one announced
// after the store reads the new access word and is refused. Once settled, nothing the new
// flags forbid can land: the guarantee an RDMA NIC gives when ibv_modify_qp returns.
//
// A reset leaves the same obligation behind: an operation that passed its checks just
// before the reset may still be copying. Drains therefore outlive resets and reconnects,
// and every later access change stays pending until all of them are settled.
#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>
#include <iterator>

#include "fabric/shm/shm_internal.hpp"

namespace mu::fabric::shm {
namespace {

// How long change_access() spins for the peer's announcement to clear before it answers
// `pending`. An operation holds the announcement for well under a microsecond; only a
// peer that is descheduled or stopped in that window outlasts this.
constexpr auto settle_spin_limit = std::chrono::microseconds(50);

ConnectionState load_state(const ConnectionSlot& slot) {
  return static_cast<ConnectionState>(slot.state.load(std::memory_order_acquire));
}

}  // namespace

ShmConnection::ShmConnection(std::shared_ptr<NodeContext> node, std::shared_ptr<ShmCompletionQueue> queue)
    : node_(std::move(node)),
      queue_(std::move(queue)),
      slot_(node_->allocate_connection_slot()),
      own_(node_->control().connections[slot_]),
      max_outstanding_(node_->config().max_outstanding_operations) {
  // A fresh life of the slot: a new generation fails any peer still holding the old one.
  own_.generation.fetch_add(1);
  own_.access.store(access_none);
  own_.peer_node.store(max_node_count);
  own_.peer_slot.store(max_connections_per_node);
  own_.peer_incarnation.store(0);
  // operation_sequence keeps counting across lives of the slot: a peer draining an earlier
  // life must see it change, never go back.
  own_.state.store(static_cast<std::uint32_t>(ConnectionState::unconnected));
  own_.in_use.store(1);
  auto& accounting = node_->accounting(slot_);
  accounting.epoch.fetch_add(1);
  accounting.completed_sequence.store(0);
  drains_.reserve(4);  // an access switch then allocates nothing
}

ShmConnection::~ShmConnection() {
  reset();
  own_.in_use.store(0);
  node_->free_connection_slot(slot_);
}

EndpointInfo ShmConnection::local_endpoint() const {
  EndpointInfo endpoint;
  endpoint.node_id = node_->config().node_id;
  endpoint.queue_number = slot_;
  endpoint.process_id = static_cast<std::uint32_t>(::getpid());
  return endpoint;
}

void ShmConnection::connect(const EndpointInfo& remote, AccessFlags access) {
  if (load_state(own_) != ConnectionState::unconnected) {
    throw FabricError("shm: connect() on a connection that is not reset");
  }
  if (remote.queue_number >= max_connections_per_node) {
    throw FabricError("shm: remote endpoint names a connection slot out of range");
  }
  auto peer = node_->peer(remote.node_id);
  remote_ = remote;
  peer_ = std::move(peer);
  target_ = &peer_->control->connections[remote.queue_number];
  // Bound at the first operation, not now: the peer's end may reset and connect after this
  // one (a paired reset in either order), as PSNs on verbs meet whatever the order.
  target_generation_bound_ = false;
  posted_sequence_ = 0;
  own_.peer_node.store(remote.node_id);
  own_.peer_slot.store(remote.queue_number);
  own_.peer_incarnation.store(peer_->incarnation());
  own_.access.store(access, std::memory_order_seq_cst);
  own_.state.store(static_cast<std::uint32_t>(ConnectionState::connected), std::memory_order_release);
}

ConnectionState ShmConnection::state() const { return load_state(own_); }

void ShmConnection::reset() {
  // The peer's operations now fail the generation check. One already past it may still be
  // copying: reset does not wait, but leaves a drain that later access changes honour.
  const bool was_reachable = load_state(own_) != ConnectionState::unconnected && peer_ != nullptr;
  own_.generation.fetch_add(1);
  own_.access.store(access_none, std::memory_order_seq_cst);
  if (was_reachable) add_drain();
  own_.state.store(static_cast<std::uint32_t>(ConnectionState::unconnected), std::memory_order_release);
  auto& accounting = node_->accounting(slot_);
  accounting.epoch.fetch_add(1);  // completions still queued no longer retire anything
  accounting.completed_sequence.store(0);
  posted_sequence_ = 0;
  target_ = nullptr;
}

AccessFlags ShmConnection::access() const { return static_cast<AccessFlags>(own_.access.load()); }

ChangeStatus ShmConnection::change_access(AccessFlags access, AccessPath path) {
  // Both paths are the same store here: shm has no queue-pair state for a cycle to clear,
  // and from a healthy connection the verbs robust path, too, leaves the peer in step.
  static_cast<void>(path);
  const ConnectionState current = load_state(own_);
  if (current == ConnectionState::error) {
    // As on verbs, an end in the error state can only be cycled: it comes back connected
    // with the new flags, one half of a paired reset (the peer resets and connects too).
    const EndpointInfo remote = remote_;
    reset();
    connect(remote, access);
  } else {
    // On an unconnected end nobody passes the generation check; the flags wait for
    // connect(). Earlier drains (from a reset) still decide when the change is settled.
    const auto previous = static_cast<AccessFlags>(own_.access.load());
    own_.access.store(access, std::memory_order_seq_cst);
    const bool narrowing = (previous & ~access) != 0;
    if (current == ConnectionState::connected && narrowing) add_drain();
  }
  const auto deadline = std::chrono::steady_clock::now() + settle_spin_limit;
  while (!access_change_settled()) {
    if (std::chrono::steady_clock::now() > deadline) return ChangeStatus::pending;
    _mm_pause();
  }
  return ChangeStatus::settled;
}

bool ShmConnection::access_change_settled() {
  std::erase_if(drains_, [this](Drain& drain) { return drained(drain); });
  return drains_.empty();
}

void ShmConnection::add_drain() {
  for (const Drain& drain : drains_) {
    if (drain.peer == peer_ && drain.peer_slot == remote_.queue_number) return;  // one suffices
  }
  drains_.push_back(Drain{peer_, remote_.queue_number, 0});
}

bool ShmConnection::drained(Drain& drain) const {
  // Pairs with the seq_cst store of the access word (or generation): see the file comment.
  const std::uint64_t sequence =
      drain.peer->control->connections[drain.peer_slot].operation_sequence.load(std::memory_order_seq_cst);
  if (sequence % 2 == 0) return true;  // nothing in flight now; anything later sees the change
  if (drain.sequence_seen == 0) {
    drain.sequence_seen = sequence;
  } else if (sequence != drain.sequence_seen) {
    return true;  // the operation seen in flight has ended
  }
  // A peer stopped or dying inside an operation: only its exit ends the wait.
  return drain.peer->exited();
}

PostStatus ShmConnection::post_write(const WriteRequest& request) {
  const std::byte* source = nullptr;
  std::uint32_t length = request.length;
  if (request.inline_payload.empty() && length == 0) return PostStatus::invalid_request;
  if (!request.inline_payload.empty()) {
    if (request.inline_payload.size() > shm_max_inline_bytes) return PostStatus::invalid_request;
    source = request.inline_payload.data();
    length = static_cast<std::uint32_t>(request.inline_payload.size());
  } else {
    if (request.local_region == nullptr || request.local_offset > request.local_region->size_bytes() ||
        length > request.local_region->size_bytes() - request.local_offset) {
      return PostStatus::invalid_request;
    }
    source = request.local_region->data() + request.local_offset;
  }
  return post(Operation{Opcode::write, request.work_id, request.remote, request.remote_offset, nullptr, source,
                        length, request.signaled});
}

PostStatus ShmConnection::post_read(const ReadRequest& request) {
  std::byte* destination = nullptr;
  if (request.length == 0) return PostStatus::invalid_request;
  {
    if (request.local_region == nullptr || request.local_offset > request.local_region->size_bytes() ||
        request.length > request.local_region->size_bytes() - request.local_offset) {
      return PostStatus::invalid_request;
    }
    destination = request.local_region->data() + request.local_offset;
  }
  return post(Operation{Opcode::read, request.work_id, request.remote, request.remote_offset, destination, nullptr,
                        request.length, request.signaled});
}

PostStatus ShmConnection::post(const Operation& operation) {
  const ConnectionState current = load_state(own_);
  if (current == ConnectionState::unconnected || target_ == nullptr) return PostStatus::not_connected;
  if (operation.remote == nullptr || operation.remote->descriptor().node_id != remote_.node_id) {
    return PostStatus::invalid_request;
  }
  const auto& accounting = node_->accounting(slot_);
  const std::uint64_t outstanding =
      posted_sequence_ - accounting.completed_sequence.load(std::memory_order_relaxed);
  // Room for a completion is needed even for an unsignaled operation: it may fail.
  if (outstanding >= max_outstanding_ || queue_->full()) return PostStatus::queue_full;

  const std::uint64_t sequence = ++posted_sequence_;
  // On a connection in the error state every operation is flushed, as on RC.
  const CompletionStatus status =
      current == ConnectionState::error ? CompletionStatus::flushed : perform(operation);
  if (status != CompletionStatus::success && status != CompletionStatus::flushed) {
    enter_error(is_remote_rejection(status));
  }
  if (operation.signaled || status != CompletionStatus::success) {
    queue_->push(Completion{operation.work_id, slot_, operation.opcode, status},
                accounting.epoch.load(std::memory_order_relaxed), sequence);
  }
  return PostStatus::posted;
}

CompletionStatus ShmConnection::perform(const Operation& operation) {
  // Every backend object handed to this connection comes from the same backend.
  const auto& region = static_cast<const ShmRemoteRegion&>(*operation.remote);
  const AccessFlags needed = operation.opcode == Opcode::write ? access_remote_write : access_remote_read;
  ConnectionSlot& target = *target_;
  if (!target_generation_bound_) {
    target_generation_ = target.generation.load(std::memory_order_seq_cst);
    target_generation_bound_ = true;
  }

  // Single writer: a plain increment of our own word, published sequentially consistent.
  const std::uint64_t sequence = own_.operation_sequence.load(std::memory_order_relaxed);
  own_.operation_sequence.store(sequence + 1, std::memory_order_seq_cst);
  const CompletionStatus status = check_target(region, operation.remote_offset, operation.length, needed);
  if (status == CompletionStatus::success) {
    // The target may read these bytes concurrently; the engine above never trusts an
    // entry before its checksum, exactly as with a NIC's DMA.
    std::byte* remote = region.memory() + operation.remote_offset;
    if (operation.opcode == Opcode::write) {
      std::memcpy(remote, operation.source, operation.length);
    } else {
      std::memcpy(operation.local, remote, operation.length);
    }
  }
  own_.operation_sequence.store(sequence + 2, std::memory_order_release);
  return status;
}

CompletionStatus ShmConnection::check_target(const ShmRemoteRegion& region, std::uint64_t offset,
                                             std::uint32_t length, AccessFlags needed) const {
  const ConnectionSlot& target = *target_;
  // A dead or restarted peer does not answer: a NIC would exhaust its retries.
  if (!peer_->alive()) return CompletionStatus::peer_unreachable;
  // A partition injected by a test cuts both directions, whichever side names it.
  const std::uint64_t self_bit = std::uint64_t{1} << (node_->config().node_id % 64);
  const std::uint64_t peer_bit = std::uint64_t{1} << (remote_.node_id % 64);
  if ((node_->control().unreachable_peers.load(std::memory_order_relaxed) & peer_bit) != 0 ||
      (peer_->control->unreachable_peers.load(std::memory_order_relaxed) & self_bit) != 0) {
    return CompletionStatus::peer_unreachable;
  }
  if (target.generation.load(std::memory_order_seq_cst) != target_generation_ ||
      load_state(target) != ConnectionState::connected ||
      target.peer_node.load(std::memory_order_relaxed) != node_->config().node_id ||
      target.peer_slot.load(std::memory_order_relaxed) != slot_ ||
      target.peer_incarnation.load(std::memory_order_relaxed) != node_->incarnation()) {
    return CompletionStatus::peer_unreachable;
  }
  if ((target.access.load(std::memory_order_seq_cst) & needed) == 0) return CompletionStatus::remote_access_error;
  // The region must belong to the incarnation this connection reaches, and still exist.
  if (&region.owner() != peer_.get() && region.owner().incarnation() != peer_->incarnation()) {
    return CompletionStatus::remote_access_error;
  }
  const RegionSlot& entry = region.owner().control->regions[region.slot()];
  if (entry.valid.load(std::memory_order_seq_cst) != 1 ||
      entry.generation.load(std::memory_order_relaxed) != region.generation()) {
    return CompletionStatus::remote_access_error;
  }
  // Bounded by the table and by our own mapping of the region, whichever is smaller.
  const std::uint64_t size_bytes =
      std::min<std::uint64_t>(entry.size_bytes.load(std::memory_order_relaxed), region.mapped_bytes());
  if (offset > size_bytes || length > size_bytes - offset) return CompletionStatus::remote_access_error;
  return CompletionStatus::success;
}

void ShmConnection::enter_error(bool target_refused) {
  own_.state.store(static_cast<std::uint32_t>(ConnectionState::error), std::memory_order_release);
  if (target_refused && target_ != nullptr && target_->generation.load() == target_generation_) {
    // On RC the responder's queue pair also goes to the error state after a refusal.
    auto expected = static_cast<std::uint32_t>(ConnectionState::connected);
    target_->state.compare_exchange_strong(expected, static_cast<std::uint32_t>(ConnectionState::error));
  }
}

}  // namespace mu::fabric::shm
