// One replica of the engine, assembled: its log and background regions, the connections
// of both planes to every replica (itself included, through loopback connections), and
// its three agents. The deployment wiring (threads, processes, the control plane that
// carries the cards) lives above this; the simulator and mu-bench use it as it is.
//
// Connections, per ordered pair (i, j), replica i holding the first end of each:
//   log:        i's posting end (its leader agent) -> j's access end (j's permission
//               manager decides whether i may write j's log)
//   background: i's posting end (its background agent) -> j's end, always open
// So no connection is ever used by two agents.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "engine/background/background_agent.hpp"
#include "engine/replica_log.hpp"
#include "engine/replication/apply_agent.hpp"
#include "engine/replication/leader_agent.hpp"
#include "engine/runtime/agent.hpp"
#include "engine/runtime/clock.hpp"
#include "fabric/fabric.hpp"

namespace mu::engine {

struct ReplicaConfig {
  LeaderConfig leader{};          // self and replica_count say who this is
  BackgroundConfig background{};  // self and replica_count are taken from `leader`
  std::uint32_t leader_queue_depth = 4096;
  std::uint32_t background_queue_depth = 1024;
};

// What a replica tells every other one so they can connect (through the control plane):
// plain data, with a byte encoding.
struct ReplicaCard {
  fabric::NodeId node_id = 0;
  fabric::RegionDescriptor log{};
  fabric::RegionDescriptor background{};
  // Indexed by peer id: this replica's end of each connection with that peer.
  std::vector<fabric::EndpointInfo> to_log;           // posting, toward the peer's log
  std::vector<fabric::EndpointInfo> from_leader;      // access, for the peer's writes to this log
  std::vector<fabric::EndpointInfo> to_background;    // posting, toward the peer's background region
  std::vector<fabric::EndpointInfo> from_background;  // the peer's background writes arrive here

  std::vector<std::byte> encode() const;
  // Throws std::invalid_argument when the bytes are not a card.
  static ReplicaCard decode(std::span<const std::byte> bytes);
};

class Replica {
 public:
  Replica(const ReplicaConfig& config, std::shared_ptr<fabric::Fabric> fabric, ApplyAgent::ApplyEntry apply,
          const Clock& clock);
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  ReplicaCard card() const;
  // Connects to every replica (cards[i] from replica i, this one's included) and builds
  // the agents. Call once.
  void connect(std::span<const ReplicaCard> cards);
  // The same with some peers' cards absent (they are down, or not heard from yet): a
  // majority of the cards, this replica's included, is enough to start. An absent peer's
  // connection ends stay unconnected (every post to it fails as not_connected, as to a
  // crashed peer) until its card arrives through reconnect_peer().
  void connect(std::span<const std::optional<ReplicaCard>> cards);

  // Replica `card.node_id` restarted (a new process: new regions, new connection ends):
  // reset and reconnect this replica's four ends toward it, attach its new regions and
  // tell the agents. Call on the agents' thread, between rounds. It then rejoins like a
  // late replica: it grants its log to the leader, which brings it up to date (or finds
  // it must wait for a state transfer, when the log was recycled past what it has).
  //
  // `hold`: the first half of a paired reset of the link to a live peer whose card this
  // is (mu/link_resets.ts): all four ends are reset and left unconnected until
  // release_link() connects them, once the peer has reset its own. Unconnected, this
  // replica posts nothing toward the peer, and nothing the peer sends lands here: so
  // neither end's stream moves between the first reset and the second, and both start
  // from the packet sequence numbers their cards name.
  void reconnect_peer(const ReplicaCard& card, bool hold = false);
  // The peer has reset its ends too: connect this replica's, held since reconnect_peer().
  void release_link(fabric::NodeId peer);

  fabric::NodeId node_id() const { return config_.leader.self; }
  LeaderAgent& leader() { return *leader_; }
  ApplyAgent& apply() { return *apply_; }
  BackgroundAgent& background() { return *background_; }
  std::vector<Agent*> agents() { return {background_.get(), leader_.get(), apply_.get()}; }

  fabric::LocalRegion& log_region() { return *log_region_; }
  ReplicaLog& log() { return *log_; }
  // This replica's end of the log connection from replica `leader` (its access flags are
  // the permission).
  fabric::Connection& log_access(fabric::NodeId leader) { return *from_leader_[leader]; }

 private:
  ReplicaConfig config_;
  std::shared_ptr<fabric::Fabric> fabric_;
  ApplyAgent::ApplyEntry apply_entry_;
  const Clock& clock_;
  std::unique_ptr<fabric::LocalRegion> log_region_;
  std::unique_ptr<fabric::LocalRegion> background_region_;
  std::unique_ptr<ReplicaLog> log_;
  std::shared_ptr<fabric::CompletionQueue> leader_queue_;
  std::shared_ptr<fabric::CompletionQueue> background_queue_;
  std::shared_ptr<fabric::CompletionQueue> passive_queue_;  // for ends that never post
  std::vector<std::unique_ptr<fabric::Connection>> to_log_;
  std::vector<std::unique_ptr<fabric::Connection>> from_leader_;
  std::vector<std::unique_ptr<fabric::Connection>> to_background_;
  std::vector<std::unique_ptr<fabric::Connection>> from_background_;
  std::vector<std::unique_ptr<fabric::RemoteRegion>> remote_logs_;
  std::vector<std::unique_ptr<fabric::RemoteRegion>> remote_backgrounds_;
  // Regions of previous incarnations: an operation posted before a reconnect may still
  // name one, so they are kept until the replica goes (a few per restart).
  std::vector<std::unique_ptr<fabric::RemoteRegion>> retired_regions_;
  void reset_ends(fabric::NodeId peer);
  // Resets and connects the four ends toward `peer` to `card`'s endpoints: all or none.
  void connect_ends(fabric::NodeId peer, const ReplicaCard& card);

  // Per peer: the card whose endpoints a held link connects to on release.
  std::vector<std::optional<ReplicaCard>> held_cards_;
  std::unique_ptr<ApplyAgent> apply_;
  std::unique_ptr<LeaderAgent> leader_;
  std::unique_ptr<BackgroundAgent> background_;
};

}  // namespace mu::engine
