// Backend `sim`: a deterministic, in-process fabric for tests and the engine's simulator.
//
// One SimNetwork holds every simulated node of a run. Time is a step counter, advanced
// only by step(); every choice (delays, reordering, tearing) comes from one seeded random
// generator, so a seed replays a run exactly. Operations behave as on an RDMA NIC:
//   - A posted operation is delivered to the target some steps later, and its completion
//     reaches the initiator's queue some steps after that. Within one connection both
//     happen in posting order; across connections anything may overtake anything.
//   - The target's access flags, connection state and region bounds are checked when the
//     operation is delivered, as a responder NIC checks each request on arrival.
//   - A write may be torn: it lands in chunks over several steps, in random order, so a
//     reader can see any mix of old and new bytes until the last chunk lands.
//   - A crashed node's memory is unreachable (operations to it fail with
//     peer_unreachable); its own posted operations are lost.
// An access change takes effect at once for requests not yet delivered; a torn write
// already being applied keeps the change pending until its last chunk lands, so a settled
// revoke is final, as the contract demands.
//
// For code written against real backends (the conformance suite), `auto_step` makes a
// completion queue's poll() step the network while it has nothing to return, and then
// through every event due at that same step.
#pragma once

#include <cstdint>
#include <memory>

#include "fabric/fabric.hpp"

namespace mu::fabric::sim {

struct SimFaults {
  std::uint32_t min_delay_steps = 1;  // from post to delivery, and from delivery to completion
  std::uint32_t max_delay_steps = 4;
  double tear_probability = 0.0;      // chance that a write lands in several chunks
  std::uint32_t max_tear_chunks = 4;
};

class SimNetwork {
 public:
  static std::shared_ptr<SimNetwork> create(std::uint64_t seed, SimFaults faults = {}, bool auto_step = true);
  virtual ~SimNetwork() = default;

  // A node of this network; its regions, queues and connections talk to the other nodes.
  virtual std::shared_ptr<Fabric> create_node(NodeId node_id, std::uint32_t max_outstanding_operations = 256) = 0;
  // Delivers the next due event (an operation's effect, a chunk of a torn write, or a
  // completion), advancing time to it. Returns false when nothing is pending.
  virtual bool step() = 0;
  virtual std::uint64_t now_steps() const = 0;
  virtual std::size_t pending_events() const = 0;
  // The node's memory becomes unreachable and its pending operations vanish. Its Fabric
  // object stays valid (so the harness can tear it down) but nothing reaches it again.
  virtual void crash(NodeId node_id) = 0;
  virtual bool crashed(NodeId node_id) const = 0;
};

}  // namespace mu::fabric::sim
