// The background plane (paper section 5): heartbeats, the pull-score failure detector,
// leader election, and the permission manager that makes every log writable by exactly
// one leader.
//
// Heartbeat. The replica bumps a counter in its background region every
// heartbeat_interval_ns, unless its own leader agent has had work in flight without
// committing anything for fate_sharing_timeout_ns: a leader whose replication plane is
// stuck stops looking alive, so the others replace it (fate sharing).
//
// A leader also reads, with each heartbeat, whom every log is granted to; when a majority
// no longer name it, another leader has replaced it, and it steps down even if it has
// written nothing since (a paused leader that resumes idle would otherwise keep refusing
// the new leader its own log).
//
// A replica that needs a state transfer (its log was recycled before it applied it) takes
// no part: it grants nothing, stands for nothing, and steps down if it led.
//
// Election. A replica wants to lead when it is the one it would follow: the replica its
// log is granted to (the holder), as long as the detector says that one is alive; when
// there is no holder or it failed, the lowest-id replica it considers alive. Sticking
// with a live holder means a leader that was paused and resumes does not take over again:
// it finds its writes refused, stops, and its log goes to the new leader.
//
// Permissions. A would-be leader writes a request (its next request sequence number) into
// every replica's background region, itself included. Each replica's manager serves
// pending requests one at a time, lowest requester id first: it revokes write access from
// every other connection to its log, waits until the revocations are settled (nothing of
// the old holder can land any more), grants the requester, waits for that too, and only
// then writes an acknowledgement into the requester's region. The requester leads once a
// majority acknowledged (its confirmed acceptors), starting with recovery. A manager
// grants a request only when it would itself follow the requester: the requester is its
// holder, or it has none, or its holder no longer leads (failed, or alive but no longer
// holding its own log, or this replica itself when it is not leading).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/background/failure_detector.hpp"
#include "engine/replication/apply_agent.hpp"
#include "engine/replication/leader_agent.hpp"
#include "engine/runtime/agent.hpp"
#include "engine/runtime/clock.hpp"
#include "fabric/fabric.hpp"

namespace mu::engine {

struct BackgroundConfig {
  fabric::NodeId self = 0;
  std::uint32_t replica_count = 3;
  DetectorConfig detector{};
  // A candidate that has no majority of grants after this long gives up for a while.
  std::uint64_t candidate_timeout_ns = 2'000'000;
  // How long a replica that gave up or was deposed waits before it may try again; scaled
  // by (1 + id) so that two candidates do not keep colliding.
  std::uint64_t candidate_backoff_ns = 500'000;
  std::uint64_t fate_sharing_timeout_ns = 10'000'000;
  // How often pending permission requests and the election are looked at.
  std::uint64_t housekeeping_interval_ns = 10'000;
};

// One replica's background region as this replica reaches it (itself included).
struct BackgroundLink {
  fabric::NodeId node_id = 0;
  fabric::Connection* connection = nullptr;
  const fabric::RemoteRegion* background = nullptr;
};

class BackgroundAgent final : public Agent {
 public:
  enum class Candidacy : std::uint8_t { idle, requesting, leading };

  // `links` has one entry per replica; `log_access[r]` is this replica's end of the log
  // connection from replica r (the end whose access flags are the permission).
  BackgroundAgent(const BackgroundConfig& config, fabric::Fabric& fabric,
                  std::shared_ptr<fabric::CompletionQueue> queue, std::vector<BackgroundLink> links,
                  fabric::LocalRegion& own_background, std::vector<fabric::Connection*> log_access,
                  LeaderAgent& leader, const ApplyAgent& apply, const Clock& clock);

  int do_work() override;
  std::string_view name() const override { return "background"; }

  const FailureDetector& detector() const { return detector_; }
  // Who may write this replica's log now.
  std::optional<fabric::NodeId> holder() const { return holder_; }
  // True when nobody can write this replica's log: no holder and every revocation settled
  // (what a state transfer waits for before it resets the log's header).
  bool log_closed();
  Candidacy candidacy() const { return candidacy_; }
  std::uint64_t heartbeat() const { return heartbeat_; }
  // When this agent last saw the leader agent make progress or have nothing to do (fate
  // sharing; diagnostics).
  std::uint64_t leader_progress_ns() const { return leader_progress_ns_; }
  // Heartbeats not given: by fate sharing, or while out for a state transfer.
  std::uint64_t beats_withheld() const { return beats_withheld_; }
  // Grants this replica served (for tests and status).
  std::uint64_t grants_served() const { return grants_served_; }
  // Rounds of heartbeat reads started (one READ per reachable peer each).
  std::uint64_t heartbeat_read_rounds() const { return heartbeat_read_rounds_; }
  // One line of state for diagnostics (mu-sim traces, status).
  std::string describe() const;
  // Replica `peer` restarted: its connection (already reset and reconnected by the
  // caller) and background region are new. Forget everything learned from the previous
  // incarnation: its broken link, its outstanding read, its last request (a stale request
  // word must not be served as the new one's), what it said about holders and leading.
  // Completions still queued from the old connection are ignored (link epochs).
  void peer_restarted(fabric::NodeId peer, const fabric::RemoteRegion* background);
  // Replica `peer` has not been heard from (Replica::connect without its card): its link
  // has no remote end to cycle toward, so it stays broken, and is never retried, until
  // peer_restarted() brings its first card.
  void peer_absent(fabric::NodeId peer);
  // The link to `peer` is held (the first half of a paired reset, Replica::reconnect_peer):
  // like an absent peer's, its ends stay unconnected, so the detector counts it as silent,
  // nothing is posted and the link is not cycled on its own (that would undo the reset),
  // until the hold ends.
  void hold_link(fabric::NodeId peer, bool held);
  // This replica's ends of the background connections (peers read and write through
  // them); one left in the error state by a peer's refused operation is cycled.
  void set_background_access(std::vector<fabric::Connection*> ends) { background_access_ = std::move(ends); }

 private:
  enum class Operation : std::uint8_t { read_heartbeat = 1, write_request, write_ack };
  struct Serving {
    fabric::NodeId requester;
    std::uint64_t sequence;
    bool granting;  // false while the revocations settle
  };

  std::uint64_t work_id(Operation operation, fabric::NodeId peer) const;
  void handle_completion(const fabric::Completion& completion);
  int beat();
  int read_heartbeats();
  void retry_link(fabric::NodeId peer);
  void cycle_failed_background_ends();
  std::uint64_t link_retry_interval_ns() const;
  int serve_permissions();
  int run_candidacy();
  bool may_grant(fabric::NodeId requester) const;
  bool holder_leads() const;
  fabric::NodeId leader_to_follow() const;
  bool leading() const;
  void back_off();
  void publish_holder();
  void publish_leading();
  bool replaced() const;
  fabric::ChangeStatus change_access(fabric::Connection& end, fabric::AccessFlags access);

  BackgroundConfig config_;
  fabric::Fabric& fabric_;
  std::shared_ptr<fabric::CompletionQueue> queue_;
  std::vector<BackgroundLink> links_;
  fabric::LocalRegion& own_background_;
  std::vector<fabric::Connection*> log_access_;
  LeaderAgent& leader_;
  const ApplyAgent& apply_;
  const Clock& clock_;
  FailureDetector detector_;
  std::unique_ptr<fabric::LocalRegion> scratch_;  // one heartbeat cell per replica

  std::uint64_t now_ns_ = 0;  // read once per round
  // The leader agent's progress, stamped by the round that first saw it (fate sharing).
  std::uint64_t seen_progress_count_ = 0;
  std::uint64_t leader_progress_ns_ = 0;
  std::uint64_t next_housekeeping_ns_ = 0;
  std::uint64_t heartbeat_ = 0;
  std::uint64_t beats_withheld_ = 0;  // by fate sharing
  // Why candidacies ended (for status and diagnostics).
  std::uint64_t stood_ = 0, timed_out_ = 0, stepped_down_deposed_ = 0, stepped_down_replaced_ = 0;
  std::uint64_t suspicions_ = 0;
  std::uint64_t reads_overdue_ = 0;
  std::uint64_t last_beat_ns_ = 0;
  std::uint64_t next_read_ns_ = 0;
  std::uint64_t heartbeat_read_rounds_ = 0;
  std::vector<bool> read_outstanding_;
  std::vector<std::uint64_t> read_posted_ns_;
  // Per replica: whom its log was granted to, as last read, and when that read was posted.
  std::vector<std::optional<fabric::NodeId>> peer_holder_;
  std::vector<bool> peer_leading_;
  bool published_leading_ = false;
  std::vector<std::uint64_t> peer_holder_read_ns_;
  std::uint64_t leading_since_ns_ = 0;
  std::vector<bool> link_broken_;
  // Per peer: its ends are unconnected on purpose (no card yet, peer_absent; or held,
  // hold_link): the link counts as broken and is never retried.
  std::vector<bool> link_absent_;
  std::vector<std::uint32_t> link_epoch_;  // per peer, bumped when the link is cycled
  std::vector<std::uint64_t> link_retry_at_ns_;  // per broken link: when to cycle it (0 = not set)
  std::uint64_t links_retried_ = 0;
  std::vector<fabric::Connection*> background_access_;
  std::uint64_t background_ends_cycled_ = 0;
  std::vector<std::uint64_t> confirmed_since_ns_;  // per acceptor: when this leader last got its grant
  std::uint64_t grants_withdrawn_ = 0;

  std::optional<fabric::NodeId> holder_;
  std::vector<std::uint64_t> served_sequence_;
  std::vector<std::uint64_t> admitted_sequence_;  // per grantor: the request it was admitted for
  std::optional<Serving> serving_;
  std::uint64_t grants_served_ = 0;

  Candidacy candidacy_ = Candidacy::idle;
  std::uint64_t request_sequence_ = 0;
  std::uint64_t requested_at_ns_ = 0;
  std::uint64_t backoff_until_ns_ = 0;
};

}  // namespace mu::engine
