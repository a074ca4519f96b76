#include "simulator/simulation.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include "engine/quorum.hpp"
#include "simulator/sim_cluster.hpp"

namespace mu::engine::simulator {
namespace {

// splitmix64: tiny, fast, and the same on every platform (unlike <random>'s distributions).
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t bound) { return next() % bound; }
  bool chance(double probability) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < probability; }

 private:
  std::uint64_t state_;
};

class Run {
 public:
  Run(std::uint64_t seed, const SimulationOptions& options, const std::function<void(const std::string&)>& trace)
      : options_(options), trace_(trace), random_(seed ^ 0x6d75'7369'6d00ULL), cluster_(cluster_options(seed, options)) {}

  SimulationResult run() {
    for (; result_.steps < options_.fault_steps && result_.ok; ++result_.steps) {
      inject_faults();
      step();
      check();
    }
    if (result_.ok) liveness_phase();
    result_.commands_applied = history_.size();
    for (fabric::NodeId id = 0; id < cluster_.size(); ++id) {
      if (cluster_.replica(id).apply->needs_state_transfer()) ++result_.replicas_needing_state_transfer;
    }
    return result_;
  }

 private:
  static SimClusterOptions cluster_options(std::uint64_t seed, const SimulationOptions& options) {
    SimClusterOptions cluster;
    cluster.replica_count = options.replica_count;
    cluster.seed = seed;
    cluster.faults = options.network;
    cluster.leader.log_area_bytes = options.log_area_bytes;
    cluster.leader.max_payload_bytes = options.max_payload_bytes;
    cluster.background_plane = true;
    return cluster;
  }

  void note(const std::string& line) {
    if (trace_) trace_(std::string("step ") + std::to_string(result_.steps) + std::string(" t=") + std::to_string(cluster_.clock().now_ns()) + "ns: " + line);
  }

  void fail(const std::string& what) {
    if (!result_.ok) return;
    result_.ok = false;
    result_.violation = std::string("step ") + std::to_string(result_.steps) + ": " + what;
    note("VIOLATION " + what);
    for (fabric::NodeId id = 0; id < cluster_.size(); ++id) note(describe(id));
  }

  std::string describe(fabric::NodeId id) {
    auto& replica = cluster_.replica(id);
    std::ostringstream out;
    out << "replica " << id << (cluster_.crashed(id) ? " crashed" : replica.paused ? " paused" : "")
        << ": leader role " << static_cast<int>(replica.leader->role()) << ", confirmed "
        << replica.leader->confirmed_count() << ", candidacy " << static_cast<int>(replica.background->candidacy())
        << ", holder " << (replica.background->holder() ? std::to_string(*replica.background->holder()) : "none")
        << ", alive view";
    for (fabric::NodeId peer = 0; peer < cluster_.size(); ++peer) out << ' ' << replica.background->detector().alive(peer);
    out << ", applied " << replica.applied.size() << (replica.apply->needs_state_transfer() ? " (needs state transfer)" : "");
    out << ", first uncommitted " << replica.leader->first_uncommitted_index() << ", pending "
        << replica.leader->pending_commands() << ", busy " << replica.leader->has_work_in_flight() << ", progress at "
        << replica.background->leader_progress_ns() << ", heartbeat " << replica.background->heartbeat() << "; leader: "
        << replica.leader->describe() << "; background: " << replica.background->describe()
        << "; apply: " << replica.apply->describe();
    return out.str();
  }

  bool runnable(fabric::NodeId id) { return !cluster_.crashed(id) && !cluster_.replica(id).paused; }

  // Paused, crashed, or out of the cluster until a state transfer: the fault budget counts
  // them all, so a majority always remains usable.
  std::uint32_t unavailable() {
    std::uint32_t count = 0;
    for (fabric::NodeId id = 0; id < cluster_.size(); ++id) {
      count += runnable(id) && !cluster_.replica(id).apply->needs_state_transfer() ? 0 : 1;
    }
    return count;
  }

  // Stands in for the application's snapshot transfer: a replica that needs one copies the
  // applied history of the most advanced healthy replica and resumes from its cursor.
  void transfer_state() {
    for (fabric::NodeId id = 0; id < cluster_.size(); ++id) {
      auto& replica = cluster_.replica(id);
      if (!runnable(id) || !replica.apply->needs_state_transfer() || !replica.background->log_closed()) continue;
      std::optional<fabric::NodeId> donor;
      for (fabric::NodeId other = 0; other < cluster_.size(); ++other) {
        auto& candidate = cluster_.replica(other);
        if (other == id || !runnable(other) || candidate.apply->needs_state_transfer()) continue;
        if (!donor || candidate.applied.size() > cluster_.replica(*donor).applied.size()) donor = other;
      }
      if (!donor) continue;
      auto& source = cluster_.replica(*donor);
      replica.applied = source.applied;
      replica.apply->resume_from_state_transfer(source.apply->applied());
      checked_.resize(cluster_.size(), 0);
      checked_[id] = std::min(checked_[id], replica.applied.size());
      ++result_.state_transfers;
      note(std::string("replica ") + std::to_string(id) + " restored a snapshot from replica " + std::to_string(*donor) +
           " (" + std::to_string(replica.applied.size()) + " commands)");
    }
  }

  void inject_faults() {
    const auto n = cluster_.size();
    const bool room = unavailable() < tolerated_failures(n);
    if (room && random_.chance(options_.pause_probability)) {
      const auto id = static_cast<fabric::NodeId>(random_.below(n));
      if (runnable(id)) {
        cluster_.replica(id).paused = true;
        ++result_.pauses;
        note(std::string("pause replica ") + std::to_string(id));
      }
    }
    if (random_.chance(options_.resume_probability)) {
      const auto id = static_cast<fabric::NodeId>(random_.below(n));
      if (!cluster_.crashed(id) && cluster_.replica(id).paused) {
        cluster_.replica(id).paused = false;
        note(std::string("resume replica ") + std::to_string(id));
      }
    }
    if (random_.chance(options_.link_reset_probability)) start_link_reset();
    advance_link_resets(false);
    if (unavailable() < tolerated_failures(n) && random_.chance(options_.crash_probability)) {
      const auto id = static_cast<fabric::NodeId>(random_.below(n));
      if (runnable(id)) {
        cluster_.network().crash(id);
        ++result_.crashes;
        note(std::string("crash replica ") + std::to_string(id));
      }
    }
  }

  // A paired reset of the link between two live replicas, as mu/link_resets.ts runs it:
  // a list of actions, each taken by one end at a random later step (an end that is
  // paused acts once it resumes; one that crashed never does).
  struct LinkAction {
    fabric::NodeId actor;
    fabric::NodeId peer;
    enum class Kind { reset_and_hold, reset, release } kind;
  };
  struct LinkReset {
    std::vector<LinkAction> actions;
    std::size_t next = 0;
    std::uint64_t due_step = 0;
  };

  bool link_busy(fabric::NodeId a, fabric::NodeId b) const {
    for (const auto& reset : link_resets_) {
      const auto& first = reset.actions.front();
      if ((first.actor == a && first.peer == b) || (first.actor == b && first.peer == a)) return true;
    }
    return false;
  }

  void start_link_reset() {
    const auto n = cluster_.size();
    const auto a = static_cast<fabric::NodeId>(random_.below(n));
    const auto b = static_cast<fabric::NodeId>((a + 1 + random_.below(n - 1)) % n);
    if (!runnable(a) || cluster_.crashed(b) || link_busy(a, b)) return;
    using Kind = LinkAction::Kind;
    LinkReset reset;
    if (random_.chance(0.3)) {
      // Both started at once: each holds, each answers the other (still holding, its own
      // reset not answered yet), each releases once answered.
      reset.actions = {{a, b, Kind::reset_and_hold}, {b, a, Kind::reset_and_hold}, {a, b, Kind::reset_and_hold},
                       {b, a, Kind::reset_and_hold}, {a, b, Kind::release}, {b, a, Kind::release}};
    } else {
      reset.actions = {{a, b, Kind::reset_and_hold}, {b, a, Kind::reset}, {a, b, Kind::release}};
    }
    reset.due_step = result_.steps;
    link_resets_.push_back(reset);
    ++result_.link_resets;
    note(std::string("paired reset of the link ") + std::to_string(a) + "-" + std::to_string(b) + " starts");
  }

  // Takes every action that is due (all of them, in order, when `finish`).
  void advance_link_resets(bool finish) {
    for (auto it = link_resets_.begin(); it != link_resets_.end();) {
      LinkReset& reset = *it;
      while (reset.next < reset.actions.size() && (finish || result_.steps >= reset.due_step)) {
        const LinkAction& action = reset.actions[reset.next];
        if (cluster_.crashed(action.actor) || cluster_.crashed(action.peer)) {
          reset.next = reset.actions.size();  // a crashed end never answers; its peer's hold no longer matters
          break;
        }
        if (!runnable(action.actor) && !finish) break;
        auto& actor = *cluster_.replica(action.actor).engine;
        if (action.kind == LinkAction::Kind::release) {
          actor.release_link(action.peer);
        } else {
          actor.reconnect_peer(cluster_.replica(action.peer).engine->card(), action.kind == LinkAction::Kind::reset_and_hold);
        }
        ++reset.next;
        reset.due_step = result_.steps + 1 + random_.below(3000);
      }
      it = reset.next == reset.actions.size() ? link_resets_.erase(it) : it + 1;
    }
  }

  // One scheduler step: one agent of one replica works, the network may deliver, time moves.
  void step() {
    const auto id = static_cast<fabric::NodeId>(random_.below(cluster_.size()));
    if (runnable(id)) {
      auto& replica = cluster_.replica(id);
      switch (random_.below(3)) {
        case 0:
          replica.background->do_work();
          break;
        case 1:
          replica.leader->do_work();
          break;
        default:
          replica.apply->do_work();
          break;
      }
    }
    if (random_.chance(0.001)) transfer_state();
    const std::uint64_t deliveries = random_.below(3);
    for (std::uint64_t i = 0; i < deliveries; ++i) cluster_.network().step();
    cluster_.clock().advance_ns(20 + random_.below(300));
    if (random_.chance(options_.propose_probability)) propose();
    observe_leader();
    fault_at_commit();
  }

  void fault_at_commit() {
    const auto leader = cluster_.steady_leader();
    if (!leader) return;
    // The leader's own applied history: a command there has been answered to its client,
    // while the followers may not know yet that it is committed.
    const std::uint64_t committed = cluster_.replica(*leader).applied.size();
    const bool moved = leader == commit_watch_leader_ && committed > commit_watch_index_;
    commit_watch_leader_ = leader;
    commit_watch_index_ = committed;
    if (!moved || unavailable() >= tolerated_failures(cluster_.size()) ||
        !random_.chance(options_.fault_at_commit_probability)) {
      return;
    }
    if (random_.chance(0.2) && options_.crash_probability > 0) {
      cluster_.network().crash(*leader);
      ++result_.crashes;
      note(std::string("crash leader ") + std::to_string(*leader) + " right after applying command " + std::to_string(committed - 1));
    } else {
      cluster_.replica(*leader).paused = true;
      ++result_.pauses;
      note(std::string("pause leader ") + std::to_string(*leader) + " right after applying command " + std::to_string(committed - 1));
    }
  }

  void propose() {
    std::vector<fabric::NodeId> leaders;
    for (fabric::NodeId id = 0; id < cluster_.size(); ++id) {
      if (runnable(id) && cluster_.replica(id).leader->role() == LeaderAgent::Role::steady) leaders.push_back(id);
    }
    if (leaders.empty()) return;
    const fabric::NodeId id = leaders[random_.below(leaders.size())];
    const std::string command = std::string("c") + std::to_string(result_.commands_proposed);
    const auto* data = reinterpret_cast<const std::byte*>(command.data());
    if (cluster_.replica(id).leader->propose(std::span(data, command.size()))) ++result_.commands_proposed;
  }

  void observe_leader() {
    const auto leader = cluster_.steady_leader();
    if (leader && leader != last_leader_) {
      ++result_.leader_changes;
      note(std::string("replica ") + std::to_string(*leader) + " leads");
      last_leader_ = leader;
    }
  }

  void check() {
    const auto n = cluster_.size();
    // Agreement and order, incrementally over what each replica applied since last time.
    checked_.resize(n, 0);
    for (fabric::NodeId id = 0; id < n; ++id) {
      const auto& applied = cluster_.replica(id).applied;
      for (std::size_t position = checked_[id]; position < applied.size(); ++position) {
        const AppliedCommand& command = applied[position];
        // A command applied at its own proposer is answered to its client.
        if (command.tag.origin == id) acknowledged_through_ = std::max(acknowledged_through_, position + 1);
        if (position < history_.size()) {
          if (!(history_[position] == command)) {
            fail(std::string("agreement: replica ") + std::to_string(id) + " applied '" + command.bytes + "' at position " +
                 std::to_string(position) + " where another applied '" + history_[position].bytes + "'");
            return;
          }
          continue;
        }
        auto& last_sequence = last_sequence_[command.tag.origin];
        if (command.tag.sequence <= last_sequence) {
          fail(std::string("order: command ") + std::to_string(command.tag.sequence) + " of replica " +
               std::to_string(command.tag.origin) + std::string(" applied after ") + std::to_string(last_sequence));
          return;
        }
        last_sequence = command.tag.sequence;
        history_.push_back(command);
        if (command.tag.origin == id) ++result_.commands_acknowledged;
      }
      checked_[id] = applied.size();
    }
    // One writer per log, and at most one replica with write access to a majority.
    std::vector<std::uint32_t> logs_writable_by(n, 0);
    for (fabric::NodeId log = 0; log < n; ++log) {
      auto& replica = cluster_.replica(log);
      std::optional<fabric::NodeId> writer;
      for (fabric::NodeId holder = 0; holder < n; ++holder) {
        if ((replica.from_leader[holder]->access() & fabric::access_remote_write) == 0) continue;
        if (writer) {
          fail(std::string("one writer: log ") + std::to_string(log) + " grants write access to replicas " +
               std::to_string(*writer) + std::string(" and ") + std::to_string(holder));
          return;
        }
        writer = holder;
        ++logs_writable_by[holder];
      }
    }
    std::uint32_t majority_holders = 0;
    for (fabric::NodeId holder = 0; holder < n; ++holder) {
      if (logs_writable_by[holder] >= majority(n)) ++majority_holders;
    }
    if (majority_holders > 1) fail("one leader: two replicas hold write access to a majority of the logs");
  }

  void liveness_phase() {
    note("faults stop");
    for (fabric::NodeId id = 0; id < cluster_.size(); ++id) cluster_.replica(id).paused = false;
    advance_link_resets(true);
    bool probe_proposed = false;
    fabric::NodeId probe_leader = 0;
    std::string probe;
    const std::uint64_t deadline = result_.steps + options_.liveness_steps;
    for (; result_.steps < deadline && result_.ok; ++result_.steps) {
      cluster_.run_round();
      if (result_.steps % 1000 == 0) transfer_state();
      observe_leader();
      check();
      if (!probe_proposed) {
        const auto leader = cluster_.steady_leader();
        if (!leader) continue;
        probe = std::string("probe after ") + std::to_string(result_.steps);
        const auto* data = reinterpret_cast<const std::byte*>(probe.data());
        if (cluster_.replica(*leader).leader->propose(std::span(data, probe.size()))) {
          probe_proposed = true;
          probe_leader = *leader;
        }
        continue;
      }
      if (cluster_.replica(probe_leader).leader->role() != LeaderAgent::Role::steady) {
        probe_proposed = false;  // that leader was replaced: the client retries with the next one
        continue;
      }
      if (probe_applied_everywhere(probe)) {
        check_durability();
        return;
      }
    }
    if (result_.ok) fail("liveness: no leader committed a new command on every live replica within the bound");
  }

  bool probe_applied_everywhere(const std::string& probe) {
    for (fabric::NodeId id = 0; id < cluster_.size(); ++id) {
      auto& replica = cluster_.replica(id);
      if (cluster_.crashed(id) || replica.apply->needs_state_transfer()) continue;
      if (replica.applied.empty() || replica.applied.back().bytes != probe) return false;
    }
    return true;
  }

  void check_durability() {
    for (fabric::NodeId id = 0; id < cluster_.size(); ++id) {
      auto& replica = cluster_.replica(id);
      if (cluster_.crashed(id) || replica.apply->needs_state_transfer()) continue;
      if (replica.applied.size() < acknowledged_through_) {
        fail(std::string("durability: replica ") + std::to_string(id) + std::string(" applied ") + std::to_string(replica.applied.size()) +
             " commands, fewer than the " + std::to_string(acknowledged_through_) + " acknowledged");
      }
    }
  }

  SimulationOptions options_;
  std::function<void(const std::string&)> trace_;
  Random random_;
  SimCluster cluster_;
  SimulationResult result_;
  std::vector<std::size_t> checked_;
  std::vector<AppliedCommand> history_;
  std::size_t acknowledged_through_ = 0;
  std::map<fabric::NodeId, std::uint64_t> last_sequence_;
  std::optional<fabric::NodeId> last_leader_;
  std::optional<fabric::NodeId> commit_watch_leader_;
  std::uint64_t commit_watch_index_ = 0;
  std::vector<LinkReset> link_resets_;
};

}  // namespace

SimulationResult run_simulation(std::uint64_t seed, const SimulationOptions& options,
                                const std::function<void(const std::string&)>& trace) {
  Run run(seed, options, trace);
  return run.run();
}

}  // namespace mu::engine::simulator
