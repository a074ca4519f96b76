// A cluster of engine replicas over one deterministic sim network, for engine tests:
// every replica has a log region, an apply agent, a leader agent, and for every replica
// (itself included) a connection pair whose far end grants or refuses write access to its
// log. Nothing here is threaded: run_until() interleaves the agents and the network.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/background/background_agent.hpp"
#include "engine/replica.hpp"
#include "engine/command_batch.hpp"
#include "engine/log_layout.hpp"
#include "engine/replica_log.hpp"
#include "engine/replication/apply_agent.hpp"
#include "engine/replication/leader_agent.hpp"
#include "engine/runtime/clock.hpp"
#include "fabric/sim/sim_network.hpp"

namespace mu::engine::simulator {

struct AppliedCommand {
  std::uint64_t log_index;
  CommandTag tag;
  std::string bytes;
  bool operator==(const AppliedCommand&) const = default;
};

struct SimClusterOptions {
  std::uint32_t replica_count = 3;
  std::uint64_t seed = 1;
  fabric::sim::SimFaults faults{};
  // A completion queue's poll() steps the network while it has nothing to return (the
  // fabric's auto_step); with equal delays an operation completes in the round that posted
  // it, as on shm.
  bool completes_in_round = false;
  LeaderConfig leader{};  // self and replica_count are filled in per replica
  // With the background plane, replicas elect and replace leaders by themselves; without
  // it, tests hand out permissions with grant_to().
  bool background_plane = false;
  BackgroundConfig background{};
};

class SimCluster {
 public:
  explicit SimCluster(const SimClusterOptions& options);
  ~SimCluster();

  struct Replica {
    std::shared_ptr<fabric::Fabric> fabric;
    std::unique_ptr<engine::Replica> engine;
    // Views into `engine`, named as the tests use them.
    LeaderAgent* leader = nullptr;
    ApplyAgent* apply = nullptr;
    BackgroundAgent* background = nullptr;  // null without the background plane
    fabric::LocalRegion* log_region = nullptr;
    ReplicaLog* log = nullptr;
    // from_leader[i]: this replica's end of the log connection from would-be leader i;
    // its access flags are the permission of Mu.
    std::vector<fabric::Connection*> from_leader;
    std::vector<AppliedCommand> applied;
    bool apply_paused = false;  // stands in for a replica whose backend stalls
    bool paused = false;        // SIGSTOP: no agent runs, but its memory stays reachable
    bool leader_stuck = false;  // only the replication plane stops (its thread stuck, say)
  };


  Replica& replica(fabric::NodeId id) { return *replicas_[id]; }
  fabric::NodeId size() const { return static_cast<fabric::NodeId>(replicas_.size()); }
  fabric::sim::SimNetwork& network() { return *network_; }
  ManualClock& clock() { return clock_; }

  // Gives replica `holder` exclusive write access to every log (what the permission
  // manager will do) and makes it lead with all replicas confirmed.
  void grant_all_to(fabric::NodeId holder);
  // The same with only `acceptors` granting (a majority, `holder` included).
  void grant_to(fabric::NodeId holder, const std::vector<fabric::NodeId>& acceptors);
  // Revokes `holder`'s write access at `replica`; settles it (the sim settles at once
  // unless a torn write is landing, in which case the network is stepped until it does).
  void revoke(fabric::NodeId replica, fabric::NodeId holder);

  // One round: every live replica's agents do their work, then the network takes a step.
  void run_round();
  // Runs rounds until `done` holds or `max_rounds` pass; returns whether `done` held.
  bool run_until(const std::function<bool()>& done, std::uint64_t max_rounds = 200000);

  // Writes an entry into a replica's log directly, standing in for a leader that reached
  // only that replica before it failed.
  void plant_entry(fabric::NodeId replica, const LogCursor& at, std::uint64_t proposal, const std::string& command,
                   CommandTag tag);

  bool crashed(fabric::NodeId id) const { return network_->crashed(id); }
  // The replica whose leader agent is in the steady state, if exactly one is.
  std::optional<fabric::NodeId> steady_leader();

 private:
  std::shared_ptr<fabric::sim::SimNetwork> network_;
  ManualClock clock_;
  std::vector<std::unique_ptr<Replica>> replicas_;
};

std::string text(std::span<const std::byte> bytes);
std::vector<std::byte> bytes_of(const std::string& text);

}  // namespace mu::engine::simulator
