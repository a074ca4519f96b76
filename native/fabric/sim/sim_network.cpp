// The sim backend's implementation. Single-threaded by design: the whole network,
// including every node's objects, is driven from one thread (the test or the simulator).
#include "fabric/sim/sim_network.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <deque>
#include <map>
#include <queue>
#include <random>
#include <vector>

namespace mu::fabric::sim {
namespace {

constexpr std::size_t sim_max_inline_bytes = 256;

struct RegionStorage {
  NodeId node_id = 0;
  std::uint32_t key = 0;
  std::vector<std::byte> memory;
  bool valid = true;
};

class SimCompletionQueue;
class NetworkImpl;

// One end of a connection, as the network sees it.
struct EndState {
  NodeId node_id = 0;
  std::uint32_t queue_number = 0;
  ConnectionState state = ConnectionState::unconnected;
  AccessFlags access = access_none;
  EndpointInfo remote{};
  SimCompletionQueue* queue = nullptr;
  std::uint32_t epoch = 0;               // bumped at reset: in-flight work of older epochs is void
  std::uint64_t posted_sequence = 0;
  std::uint64_t completed_sequence = 0;  // retired by a polled completion
  std::uint64_t last_delivery_step = 0;  // per-connection FIFO of deliveries
  std::uint64_t last_completion_step = 0;
  std::uint32_t writes_being_applied = 0;  // torn writes in progress at this (target) end
  std::uint32_t max_outstanding = 0;
  // Posted and not yet resolved (sequence -> work id, opcode): what a reset flushes.
  std::map<std::uint64_t, std::pair<std::uint64_t, Opcode>> in_network;
};

struct Operation {
  Opcode opcode = Opcode::write;
  std::uint64_t work_id = 0;
  bool signaled = true;
  NodeId initiator_node = 0;
  std::uint32_t initiator_queue = 0;
  std::uint32_t initiator_epoch = 0;
  std::uint64_t sequence = 0;
  NodeId target_node = 0;
  std::uint32_t target_queue = 0;
  std::uint32_t region_key = 0;
  std::uint64_t remote_offset = 0;
  std::uint32_t length = 0;
  std::vector<std::byte> inline_payload;        // copied at post
  std::shared_ptr<RegionStorage> local_region;  // write source or read destination
  std::uint64_t local_offset = 0;
  std::vector<std::byte> payload;  // the bytes on the wire, read from the source at delivery
  // A torn write: which chunk lands at each step after delivery, and the steps between.
  std::vector<std::uint64_t> chunk_order;
  std::vector<std::uint64_t> chunk_delays;
};

enum class EventKind : std::uint8_t { deliver, chunk, complete };

struct Event {
  std::uint64_t due_step = 0;
  std::uint64_t order = 0;  // tie-break: deterministic, in scheduling order
  EventKind kind = EventKind::deliver;
  std::shared_ptr<Operation> operation;
  std::uint64_t chunk_offset = 0;  // within the operation's payload
  std::uint64_t chunk_bytes = 0;
  bool last_chunk = false;
  CompletionStatus status = CompletionStatus::success;
  bool operator>(const Event& other) const {
    return due_step != other.due_step ? due_step > other.due_step : order > other.order;
  }
};

struct NodeState {
  bool crashed = false;
  std::uint32_t next_region_key = 1;
  std::uint32_t next_queue_number = 1;
  std::map<std::uint32_t, std::shared_ptr<RegionStorage>> regions;
  std::map<std::uint32_t, EndState*> ends;
};

class SimCompletionQueue final : public CompletionQueue {
 public:
  SimCompletionQueue(std::shared_ptr<NetworkImpl> network, std::uint32_t depth)
      : network_(std::move(network)), depth_(depth) {}
  std::size_t poll(std::span<Completion> out) override;

  struct Entry {
    Completion completion;
    EndState* end;
    std::uint32_t epoch;
    std::uint64_t sequence;
  };
  bool has_room() const { return reserved_ < depth_; }
  void reserve() { ++reserved_; }
  void release() { --reserved_; }
  void push(const Entry& entry) { entries_.push_back(entry); }
  // A destroyed connection's completions must not reach back into it.
  void forget(EndState* end) {
    for (auto& entry : entries_) {
      if (entry.end == end) entry.end = nullptr;
    }
  }

 private:
  std::shared_ptr<NetworkImpl> network_;
  std::uint32_t depth_;
  std::uint32_t reserved_ = 0;  // completions that posted operations may still produce
  std::deque<Entry> entries_;
};

class NetworkImpl final : public SimNetwork, public std::enable_shared_from_this<NetworkImpl> {
 public:
  NetworkImpl(std::uint64_t seed, SimFaults faults, bool auto_step)
      : random_(seed), faults_(faults), auto_step_(auto_step) {}

  std::shared_ptr<Fabric> create_node(NodeId node_id, std::uint32_t max_outstanding_operations) override;
  bool step() override;
  std::uint64_t now_steps() const override { return now_; }
  std::size_t pending_events() const override { return events_.size(); }
  void crash(NodeId node_id) override { nodes_[node_id].crashed = true; }
  bool crashed(NodeId node_id) const override {
    const auto found = nodes_.find(node_id);
    return found != nodes_.end() && found->second.crashed;
  }

  bool auto_step() const { return auto_step_; }
  bool event_due_now() const { return !events_.empty() && events_.top().due_step <= now_; }
  NodeState& node(NodeId node_id) { return nodes_[node_id]; }
  std::uint64_t random_delay() {
    return std::uniform_int_distribution<std::uint64_t>(faults_.min_delay_steps, faults_.max_delay_steps)(random_);
  }
  void schedule(Event event) {
    event.order = next_order_++;
    events_.push(std::move(event));
  }
  void post(std::shared_ptr<Operation> operation, EndState& end, bool flushed);

 private:
  void deliver(const std::shared_ptr<Operation>& operation);
  void complete(const std::shared_ptr<Operation>& operation, CompletionStatus status);
  CompletionStatus check_at_target(const Operation& operation, EndState*& target_end, RegionStorage*& region);
  EndState* initiator_end(const Operation& operation);

  std::mt19937_64 random_;
  SimFaults faults_;
  bool auto_step_;
  std::uint64_t now_ = 0;
  std::uint64_t next_order_ = 0;
  std::map<NodeId, NodeState> nodes_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
};

std::size_t SimCompletionQueue::poll(std::span<Completion> out) {
  if (entries_.empty() && network_->auto_step()) {
    while (entries_.empty() && network_->step()) {
    }
    // And whatever else is due at that step: with equal delays, every completion of the
    // operations posted together (as shm has them all ready at post).
    while (network_->event_due_now() && network_->step()) {
    }
  }
  std::size_t count = 0;
  while (count < out.size() && !entries_.empty()) {
    const Entry entry = entries_.front();
    entries_.pop_front();
    out[count++] = entry.completion;
    release();
    if (entry.end != nullptr && entry.end->epoch == entry.epoch) {
      entry.end->completed_sequence = std::max(entry.end->completed_sequence, entry.sequence);
    }
  }
  return count;
}

class SimLocalRegion final : public LocalRegion {
 public:
  SimLocalRegion(std::shared_ptr<NetworkImpl> network, std::shared_ptr<RegionStorage> storage)
      : network_(std::move(network)), storage_(std::move(storage)) {}
  ~SimLocalRegion() override { storage_->valid = false; }
  std::byte* data() override { return storage_->memory.data(); }
  std::size_t size_bytes() const override { return storage_->memory.size(); }
  RegionDescriptor descriptor() const override {
    return RegionDescriptor{storage_->node_id, storage_->key, 0, storage_->memory.size()};
  }
  const std::shared_ptr<RegionStorage>& storage() const { return storage_; }

 private:
  std::shared_ptr<NetworkImpl> network_;
  std::shared_ptr<RegionStorage> storage_;
};

class SimRemoteRegion final : public RemoteRegion {
 public:
  explicit SimRemoteRegion(const RegionDescriptor& descriptor) : descriptor_(descriptor) {}
  const RegionDescriptor& descriptor() const override { return descriptor_; }

 private:
  RegionDescriptor descriptor_;
};

class SimConnection final : public Connection {
 public:
  SimConnection(std::shared_ptr<NetworkImpl> network, NodeId node_id, std::shared_ptr<SimCompletionQueue> queue,
                std::uint32_t max_outstanding)
      : network_(std::move(network)), queue_(std::move(queue)) {
    NodeState& node = network_->node(node_id);
    end_.node_id = node_id;
    end_.queue_number = node.next_queue_number++;
    end_.queue = queue_.get();
    end_.max_outstanding = max_outstanding;
    node.ends[end_.queue_number] = &end_;
  }
  ~SimConnection() override {
    network_->node(end_.node_id).ends.erase(end_.queue_number);
    end_.queue->forget(&end_);
  }

  std::uint32_t id() const override { return end_.queue_number; }
  EndpointInfo local_endpoint() const override {
    EndpointInfo endpoint;
    endpoint.node_id = end_.node_id;
    endpoint.queue_number = end_.queue_number;
    return endpoint;
  }
  void connect(const EndpointInfo& remote, AccessFlags access) override {
    if (end_.state != ConnectionState::unconnected) throw FabricError("sim: connect() on a connection that is not reset");
    end_.remote = remote;
    end_.access = access;
    end_.state = ConnectionState::connected;
  }
  const EndpointInfo& remote_endpoint() const override { return end_.remote; }
  ConnectionState state() const override { return end_.state; }
  void reset() override {
    // Work still in the network is void (its epoch is gone) and reported flushed, as the
    // verbs backend does; what already executed was already reported.
    for (const auto& [sequence, work] : end_.in_network) {
      end_.queue->push({Completion{work.first, end_.queue_number, work.second, CompletionStatus::flushed}, &end_,
                        end_.epoch, sequence});
    }
    end_.in_network.clear();
    ++end_.epoch;
    end_.posted_sequence = end_.completed_sequence = 0;
    end_.state = ConnectionState::unconnected;
    end_.access = access_none;
  }
  PostStatus post_write(const WriteRequest& request) override {
    auto operation = std::make_shared<Operation>();
    operation->opcode = Opcode::write;
    if (!request.inline_payload.empty()) {
      if (request.inline_payload.size() > sim_max_inline_bytes) return PostStatus::invalid_request;
      operation->inline_payload.assign(request.inline_payload.begin(), request.inline_payload.end());
      operation->length = static_cast<std::uint32_t>(request.inline_payload.size());
    } else {
      if (!take_local(request.local_region, request.local_offset, request.length, *operation)) {
        return PostStatus::invalid_request;
      }
    }
    return post(std::move(operation), request.work_id, request.remote, request.remote_offset, request.signaled);
  }
  PostStatus post_read(const ReadRequest& request) override {
    auto operation = std::make_shared<Operation>();
    operation->opcode = Opcode::read;
    if (!take_local(request.local_region, request.local_offset, request.length, *operation)) {
      return PostStatus::invalid_request;
    }
    return post(std::move(operation), request.work_id, request.remote, request.remote_offset, request.signaled);
  }
  AccessFlags access() const override { return end_.access; }
  ChangeStatus change_access(AccessFlags access, AccessPath path) override {
    static_cast<void>(path);  // no device here refuses an in-place change
    if (end_.state == ConnectionState::error) {
      const EndpointInfo remote = end_.remote;
      reset();
      connect(remote, access);
      return ChangeStatus::settled;
    }
    end_.access = access;
    return access_change_settled() ? ChangeStatus::settled : ChangeStatus::pending;
  }
  bool access_change_settled() override {
    // A torn write being applied was admitted under the old flags: wait for its last chunk.
    if (end_.writes_being_applied > 0 && network_->auto_step()) network_->step();
    return end_.writes_being_applied == 0;
  }
  std::uint32_t max_outstanding_operations() const override { return end_.max_outstanding; }

 private:
  static bool take_local(LocalRegion* region, std::uint64_t offset, std::uint32_t length, Operation& operation) {
    if (length == 0 || region == nullptr || offset > region->size_bytes() || length > region->size_bytes() - offset) {
      return false;
    }
    operation.local_region = static_cast<SimLocalRegion*>(region)->storage();
    operation.local_offset = offset;
    operation.length = length;
    return true;
  }

  PostStatus post(std::shared_ptr<Operation> operation, std::uint64_t work_id, const RemoteRegion* remote,
                  std::uint64_t remote_offset, bool signaled) {
    if (end_.state == ConnectionState::unconnected) return PostStatus::not_connected;
    if (remote == nullptr || remote->descriptor().node_id != end_.remote.node_id) return PostStatus::invalid_request;
    if (end_.posted_sequence - end_.completed_sequence >= end_.max_outstanding || !end_.queue->has_room()) {
      return PostStatus::queue_full;
    }
    operation->work_id = work_id;
    operation->signaled = signaled;
    operation->region_key = remote->descriptor().key;
    operation->remote_offset = remote_offset;
    network_->post(std::move(operation), end_, end_.state == ConnectionState::error);
    return PostStatus::posted;
  }

  std::shared_ptr<NetworkImpl> network_;
  std::shared_ptr<SimCompletionQueue> queue_;  // outlives this end, which posts into it
  EndState end_;
};

class SimFabric final : public Fabric {
 public:
  SimFabric(std::shared_ptr<NetworkImpl> network, NodeId node_id, std::uint32_t max_outstanding)
      : network_(std::move(network)), node_id_(node_id), max_outstanding_(max_outstanding) {}
  Backend backend() const override { return Backend::sim; }
  NodeId node_id() const override { return node_id_; }
  std::size_t max_inline_bytes() const override { return sim_max_inline_bytes; }
  std::unique_ptr<LocalRegion> register_region(std::size_t size_bytes) override {
    if (size_bytes == 0) throw FabricError("sim: cannot register an empty region");
    NodeState& node = network_->node(node_id_);
    auto storage = std::make_shared<RegionStorage>();
    storage->node_id = node_id_;
    storage->key = node.next_region_key++;
    storage->memory.resize(size_bytes);
    node.regions[storage->key] = storage;
    return std::make_unique<SimLocalRegion>(network_, std::move(storage));
  }
  std::shared_ptr<CompletionQueue> create_completion_queue(std::uint32_t depth) override {
    if (depth == 0) throw FabricError("sim: completion queue depth must be positive");
    return std::make_unique<SimCompletionQueue>(network_, depth);
  }
  std::unique_ptr<Connection> create_connection(std::shared_ptr<CompletionQueue> queue) override {
    // Every queue this backend hands out is a SimCompletionQueue; mixing backends is a bug.
    return std::make_unique<SimConnection>(network_, node_id_, std::static_pointer_cast<SimCompletionQueue>(queue),
                                           max_outstanding_);
  }
  std::unique_ptr<RemoteRegion> attach_remote_region(const RegionDescriptor& region, AttachTiming) override {
    if (region.node_id >= max_node_count) throw FabricError("sim: region descriptor names a node out of range");
    return std::make_unique<SimRemoteRegion>(region);  // checked at delivery, as by a NIC
  }

 private:
  std::shared_ptr<NetworkImpl> network_;
  NodeId node_id_;
  std::uint32_t max_outstanding_;
};

std::shared_ptr<Fabric> NetworkImpl::create_node(NodeId node_id, std::uint32_t max_outstanding_operations) {
  if (node_id >= max_node_count) throw FabricError("sim: node id out of range");
  NodeState& node = nodes_[node_id];
  node.crashed = false;  // a restarted node is reachable again (with fresh regions)
  return std::make_shared<SimFabric>(shared_from_this(), node_id, max_outstanding_operations);
}

void NetworkImpl::post(std::shared_ptr<Operation> operation, EndState& end, bool flushed) {
  operation->initiator_node = end.node_id;
  operation->initiator_queue = end.queue_number;
  operation->initiator_epoch = end.epoch;
  operation->sequence = ++end.posted_sequence;
  end.in_network[operation->sequence] = {operation->work_id, operation->opcode};
  operation->target_node = end.remote.node_id;
  operation->target_queue = end.remote.queue_number;
  end.queue->reserve();
  if (flushed) {
    // On a connection in the error state nothing leaves: the completion follows the
    // connection's earlier ones.
    end.last_completion_step = std::max(end.last_completion_step, now_) + 1;
    schedule(Event{end.last_completion_step, 0, EventKind::complete, std::move(operation), 0, 0, false,
                   CompletionStatus::flushed});
    return;
  }
  const std::uint64_t delivery_step = std::max(end.last_delivery_step, now_ + random_delay());
  end.last_delivery_step = delivery_step;
  // Tearing is decided here, not at delivery: the connection's next request must not
  // overtake the last chunk, so the FIFO has to know how long this write takes to land.
  if (operation->opcode == Opcode::write && operation->length > 1 &&
      std::bernoulli_distribution(faults_.tear_probability)(random_)) {
    const auto chunk_count = std::uniform_int_distribution<std::uint64_t>(
        2, std::max<std::uint64_t>(2, std::min<std::uint64_t>(faults_.max_tear_chunks, operation->length)))(random_);
    operation->chunk_order.resize(chunk_count);
    for (std::uint64_t i = 0; i < chunk_count; ++i) operation->chunk_order[i] = i;
    std::shuffle(operation->chunk_order.begin(), operation->chunk_order.end(), random_);
    for (std::uint64_t i = 0; i < chunk_count; ++i) {
      operation->chunk_delays.push_back(random_delay());
      end.last_delivery_step += operation->chunk_delays.back();
    }
    // Strictly after the last chunk: its event is scheduled later than the next request's
    // delivery, so at an equal step the tie-break would let the request overtake it.
    end.last_delivery_step += 1;
  }
  schedule(Event{delivery_step, 0, EventKind::deliver, std::move(operation), 0, 0, false, CompletionStatus::success});
}

bool NetworkImpl::step() {
  if (events_.empty()) return false;
  const Event event = events_.top();
  events_.pop();
  now_ = std::max(now_, event.due_step);
  switch (event.kind) {
    case EventKind::deliver:
      deliver(event.operation);
      break;
    case EventKind::chunk: {
      Operation& operation = *event.operation;
      NodeState& target = nodes_[operation.target_node];
      const auto region = target.regions.find(operation.region_key);
      if (!target.crashed && region != target.regions.end()) {
        std::memcpy(region->second->memory.data() + operation.remote_offset + event.chunk_offset,
                    operation.payload.data() + event.chunk_offset, event.chunk_bytes);
      }
      if (event.last_chunk) {
        const auto end = target.ends.find(operation.target_queue);
        if (end != target.ends.end()) --end->second->writes_being_applied;
        complete(event.operation, CompletionStatus::success);
      }
      break;
    }
    case EventKind::complete: {
      EndState* end = initiator_end(*event.operation);
      const Operation& operation = *event.operation;
      if (end == nullptr || nodes_[operation.initiator_node].crashed) break;  // gone: nobody to tell
      end->in_network.erase(operation.sequence);
      if (event.status != CompletionStatus::success && event.status != CompletionStatus::flushed) {
        end->state = ConnectionState::error;
      }
      if (operation.signaled || event.status != CompletionStatus::success) {
        end->queue->push({Completion{operation.work_id, end->queue_number, operation.opcode, event.status}, end,
                          end->epoch, operation.sequence});
      } else {
        end->queue->release();  // an unsignaled success produces no completion
      }
      break;
    }
  }
  return true;
}

EndState* NetworkImpl::initiator_end(const Operation& operation) {
  NodeState& initiator = nodes_[operation.initiator_node];
  const auto found = initiator.ends.find(operation.initiator_queue);
  if (found == initiator.ends.end() || found->second->epoch != operation.initiator_epoch) return nullptr;
  return found->second;
}

CompletionStatus NetworkImpl::check_at_target(const Operation& operation, EndState*& target_end,
                                              RegionStorage*& region) {
  NodeState& target = nodes_[operation.target_node];
  if (target.crashed) return CompletionStatus::peer_unreachable;
  const auto end = target.ends.find(operation.target_queue);
  // A queue pair that is gone, not connected, or connected elsewhere drops the request.
  if (end == target.ends.end() || end->second->state != ConnectionState::connected ||
      end->second->remote.node_id != operation.initiator_node ||
      end->second->remote.queue_number != operation.initiator_queue) {
    return CompletionStatus::peer_unreachable;
  }
  target_end = end->second;
  const AccessFlags needed = operation.opcode == Opcode::write ? access_remote_write : access_remote_read;
  if ((target_end->access & needed) == 0) return CompletionStatus::remote_access_error;
  const auto found = target.regions.find(operation.region_key);
  if (found == target.regions.end() || !found->second->valid) return CompletionStatus::remote_access_error;
  region = found->second.get();
  const std::uint64_t size_bytes = region->memory.size();
  if (operation.remote_offset > size_bytes || operation.length > size_bytes - operation.remote_offset) {
    return CompletionStatus::remote_access_error;
  }
  return CompletionStatus::success;
}

void NetworkImpl::deliver(const std::shared_ptr<Operation>& operation) {
  EndState* initiator = initiator_end(*operation);
  if (initiator == nullptr || nodes_[operation->initiator_node].crashed) return;  // reset or crashed: void
  if (initiator->state != ConnectionState::connected) {
    complete(operation, CompletionStatus::flushed);
    return;
  }
  EndState* target_end = nullptr;
  RegionStorage* region = nullptr;
  const CompletionStatus status = check_at_target(*operation, target_end, region);
  if (status != CompletionStatus::success) {
    if (is_remote_rejection(status) && target_end != nullptr) target_end->state = ConnectionState::error;
    complete(operation, status);
    return;
  }
  std::byte* remote = region->memory.data() + operation->remote_offset;
  if (operation->opcode == Opcode::read) {
    std::memcpy(operation->local_region->memory.data() + operation->local_offset, remote, operation->length);
    complete(operation, CompletionStatus::success);
    return;
  }
  // The source is read now, as a NIC reads it by DMA some time after the post.
  operation->payload = !operation->inline_payload.empty()
                           ? operation->inline_payload
                           : std::vector<std::byte>(operation->local_region->memory.begin() +
                                                        static_cast<std::ptrdiff_t>(operation->local_offset),
                                                    operation->local_region->memory.begin() +
                                                        static_cast<std::ptrdiff_t>(operation->local_offset +
                                                                                    operation->length));
  if (operation->chunk_order.empty()) {
    std::memcpy(remote, operation->payload.data(), operation->length);
    complete(operation, CompletionStatus::success);
    return;
  }
  // Torn: the chunks land at the steps chosen at post, in the order chosen there; the
  // completion follows the last one. The target's end keeps access changes pending
  // meanwhile, since this write was admitted under the flags of its first packet.
  const std::uint64_t chunk_count = operation->chunk_order.size();
  const std::uint64_t chunk_bytes = (operation->length + chunk_count - 1) / chunk_count;
  ++target_end->writes_being_applied;
  std::uint64_t due = now_;
  for (std::uint64_t position = 0; position < chunk_count; ++position) {
    const std::uint64_t offset = std::min<std::uint64_t>(operation->chunk_order[position] * chunk_bytes,
                                                         operation->length);
    const std::uint64_t bytes = std::min<std::uint64_t>(chunk_bytes, operation->length - offset);
    due += operation->chunk_delays[position];
    schedule(Event{due, 0, EventKind::chunk, operation, offset, bytes, position + 1 == chunk_count,
                   CompletionStatus::success});
  }
}

void NetworkImpl::complete(const std::shared_ptr<Operation>& operation, CompletionStatus status) {
  EndState* initiator = initiator_end(*operation);
  if (initiator == nullptr) return;
  initiator->last_completion_step = std::max(initiator->last_completion_step, now_ + random_delay());
  schedule(Event{initiator->last_completion_step, 0, EventKind::complete, operation, 0, 0, false, status});
  if (status != CompletionStatus::success && status != CompletionStatus::flushed) {
    // The initiator's queue pair enters the error state when the NAK arrives; later
    // requests of this connection are flushed rather than delivered.
    initiator->state = ConnectionState::error;
  }
}

}  // namespace

std::shared_ptr<SimNetwork> SimNetwork::create(std::uint64_t seed, SimFaults faults, bool auto_step) {
  if (faults.min_delay_steps == 0 || faults.max_delay_steps < faults.min_delay_steps) {
    throw FabricError("sim: delays must satisfy 1 <= min_delay_steps <= max_delay_steps");
  }
  return std::make_shared<NetworkImpl>(seed, faults, auto_step);
}

}  // namespace mu::fabric::sim
