// One replica of the engine running on its own thread, with the two bounded rings that
// are its only contact with the thread that owns it (Node's main thread, in the addon):
// submissions go in through one, events (applied entries, dropped commands, the end of a
// reign, role changes) come out through the other. Nothing here knows about Node-API,
// so the tests drive it directly; the addon wraps it.
//
// Thread rules: card(), connect(), start(), stop(), submit(), drain_events() and status()
// are called from the owner's thread; everything else runs on the engine thread. The
// engine thread never blocks on the owner: when the event ring is full, the apply agent
// waits (backpressure) and the other events queue in a list bounded by the submissions.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/command_batch.hpp"
#include "engine/replica.hpp"
#include "engine/replication/command_submitter.hpp"
#include "engine/runtime/agent_runner.hpp"
#include "engine/runtime/clock.hpp"
#include "engine/runtime/spsc_ring.hpp"
#include "fabric/fabric.hpp"

namespace mu::addon {

struct EngineHostConfig {
  engine::ReplicaConfig replica{};
  fabric::FabricConfig fabric{};
  std::string idle_strategy = "backoff";
  std::size_t submission_ring_bytes = std::size_t{4} << 20;
  std::size_t event_ring_bytes = std::size_t{16} << 20;  // at least twice the largest entry
  std::uint64_t status_interval_ns = 1'000'000;
  // A replica that does not lead tells its owner about a new entry this long after it
  // applied it (with whatever followed meanwhile): nobody waits on a follower's applied
  // entries within microseconds, and on a machine with few cores a follower's event loop
  // woken at once competes with the leader's for the request in flight. Measured with
  // bench:redis (docs/PERFORMANCE.md). 0: at once.
  std::uint64_t follower_notify_interval_ns = 200'000;
};

// Every event record starts with this header (little-endian, 24 bytes); an `applied`
// record continues with the entry's command batch (engine/command_batch.hpp).
enum class EventKind : std::uint32_t {
  applied = 1,               // value: log index; extra: the log position just past the entry
                             // (with value + 1, the cursor a snapshot taken after it resumes
                             // from); payload: the entry's commands
  dropped = 2,               // value: the sequence of a command that will never be applied
  reign_ended = 3,           // value: the index below which this reign's commands may still
                             // land; extra: the last sequence the reign took (LeaderAgent::SubmissionEvents)
  role = 4,                  // detail: leader role | candidacy << 8 | (holder + 1) << 16; value: proposal
  needs_state_transfer = 5,  // value: the next index this replica would have applied
  fates_known = 6,           // value: every command up to this sequence not applied by now never will be
                             // (this replica applied past the index a reign_ended named)
  peer_reconnected = 7,      // value: the peer; detail: 1 when done, 0 when it failed (a card refused,
                             // or a held link that could not be connected on release); extra: the
                             // change's number (what reconnect_peer / release_link returned)
  state_transfer_resumed = 8,  // value: the next index to apply; detail: 1 when resumed, 0 when
                               // refused (no state transfer was needed)
};
struct EventHeader {
  EventKind kind;
  std::uint32_t detail;
  std::uint64_t value;
  std::uint64_t extra;
};
static_assert(sizeof(EventHeader) == 24);

// What status() reports: a snapshot the engine thread refreshes every status interval
// (and at every role change), so reading it never touches engine state.
struct HostStatus {
  bool running = false;
  engine::LeaderAgent::Role role = engine::LeaderAgent::Role::follower;
  engine::BackgroundAgent::Candidacy candidacy = engine::BackgroundAgent::Candidacy::idle;
  std::optional<fabric::NodeId> holder;  // whom this replica's log is granted to
  std::uint64_t proposal = 0;
  std::uint64_t first_uncommitted_index = 0;  // as known by this replica's leader agent
  std::uint64_t first_undecided_index = 0;    // as known by the apply agent
  std::uint64_t applied_index = 0;            // the next index to apply
  std::uint64_t heartbeat = 0;
  std::uint64_t grants_served = 0;
  std::vector<std::uint32_t> peer_scores;
  std::vector<bool> peer_alive;
  bool needs_state_transfer = false;
  std::uint64_t rounds = 0;
  std::uint64_t idle_rounds = 0;
  std::uint64_t entries_applied = 0;
  std::uint64_t commands_dropped = 0;
  std::uint64_t reigns_ended = 0;
  std::string leader_detail;  // the agents' own one-line descriptions
  std::string background_detail;
};

class EngineHost {
 public:
  // `notify` is called on the engine thread when events are waiting and the owner has
  // not been told yet since its last drain_events(). It must not block.
  EngineHost(const EngineHostConfig& config, std::function<void()> notify);
  ~EngineHost();
  EngineHost(const EngineHost&) = delete;
  EngineHost& operator=(const EngineHost&) = delete;

  fabric::NodeId node_id() const { return config_.replica.leader.self; }
  std::vector<std::byte> card() const;
  // cards[i] is replica i's encoded card (this one's included), or empty for a peer not heard
  // from (a majority must be there: Replica::connect). Throws
  // std::invalid_argument with the reason when a card is malformed or out of place.
  void connect(std::span<const std::vector<std::byte>> cards);
  void start();
  void stop();
  bool running() const { return runner_ != nullptr; }

  // The command's tag, or nullopt when the submission ring is full (retry later) or the
  // command is larger than an entry can carry (check max_command_bytes() first).
  std::optional<engine::CommandTag> submit(std::span<const std::byte> command);
  // After a burst of submit(): a parked engine thread wakes at once (one system call at
  // most per burst, none while the thread is running).
  void wake();
  std::size_t max_command_bytes() const;

  // Hands waiting event records to `visit` (valid only during the call), up to
  // `max_records`; returns how many. Re-arms the notification first, so an event that
  // arrives during the drain is either seen now or notified again.
  std::size_t drain_events(const std::function<void(std::span<const std::byte>)>& visit, std::size_t max_records);

  HostStatus status() const;

  // Spins (no system call) until an event record is waiting or `timeout_ns` passes;
  // true when one is. The owner uses it right after submitting, when an answer is
  // expected within microseconds: it saves the wake-up of a thread asleep in epoll.
  bool wait_for_events(std::uint64_t timeout_ns) const;

  // Replica `card`'s node restarted (the control plane learned a new incarnation). The
  // card is checked here (std::invalid_argument) and applied on the engine thread between
  // rounds; a peer_reconnected event says how it went.
  // `hold`: reset the link to a live peer that is out of step, holding this replica's
  // posting ends until release_link() (Replica::reconnect_peer); the card is the peer's
  // current one.
  // Returns the change's number, which its peer_reconnected event carries.
  std::uint64_t reconnect_peer(std::span<const std::byte> card, bool hold = false);
  // The peer has reset its ends too; applied between rounds, in order with reconnects; a
  // peer_reconnected event says how it went.
  std::uint64_t release_link(std::uint32_t peer);

  // The application's store lost its state: the replica stops applying and takes no part
  // (ApplyAgent::request_state_transfer) from the engine thread's next round; a
  // needs_state_transfer event follows.
  void request_state_transfer();
  // The application restored a snapshot covering every entry before `next_index` (taken on
  // a replica right after applying the entry that ends at `position`): continue from there,
  // once the background plane has closed this log (no leader can write it). A
  // state_transfer_resumed event says when.
  void resume_from_state_transfer(std::uint64_t next_index, std::uint64_t position);

 private:
  class Bridge;

  void on_applied(std::uint64_t log_index, std::span<const std::byte> payload);
  void apply_reconnects();
  void apply_state_transfer_requests();
  void emit(EventKind kind, std::uint32_t detail, std::uint64_t value, std::uint64_t extra = 0);
  void flush_overflow();
  void notify_if_needed();
  void refresh_status(bool force);

  EngineHostConfig config_;
  std::function<void()> notify_;
  engine::SteadyClock clock_;
  std::shared_ptr<fabric::Fabric> fabric_;
  std::unique_ptr<engine::Replica> replica_;
  engine::SpscRing submissions_;
  engine::CommandSubmitter submitter_;
  engine::SpscRing events_;
  std::unique_ptr<Bridge> bridge_;
  std::unique_ptr<engine::AgentRunner> runner_;

  // Engine-thread state.
  std::deque<EventHeader> overflow_;  // events the ring had no room for, in order
  struct Horizon {
    std::uint64_t next_index;
    std::uint64_t last_taken_sequence;
  };
  std::deque<Horizon> horizons_;  // reigns whose commands' fate is not known yet
  bool pushed_since_notify_ = false;
  std::uint64_t pushes_ = 0;  // event records pushed, ever (the bridge counts a round's)
  bool notify_pending_ = false;
  std::uint64_t first_unnotified_ns_ = 0;
  std::uint64_t next_status_ns_ = 0;
  std::uint64_t entries_applied_ = 0;
  std::uint64_t commands_dropped_ = 0;
  std::uint64_t reigns_ended_ = 0;
  std::uint32_t last_role_detail_ = 0xffff'ffff;
  bool reported_state_transfer_ = false;

  std::mutex reconnect_mutex_;
  struct LinkChange {
    std::optional<engine::ReplicaCard> card;  // reconnect to it; none: release the link
    fabric::NodeId peer = 0;
    bool hold = false;
    std::uint64_t number = 0;
  };
  std::uint64_t next_change_number_ = 1;  // under reconnect_mutex_
  std::vector<LinkChange> reconnects_;  // from the owner, for the engine thread, in order
  std::mutex transfer_mutex_;                    // the two below: from the owner, for the engine thread
  bool transfer_requested_ = false;
  std::optional<engine::LogCursor> resume_at_;

  std::atomic<bool> notify_armed_{true};  // the owner will drain before it needs another call
  mutable std::mutex status_mutex_;
  HostStatus status_;
};

}  // namespace mu::addon
