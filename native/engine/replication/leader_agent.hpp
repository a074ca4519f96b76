// The proposing side of the replication plane (paper section 4.1): what a replica does
// while it leads. It writes each entry straight into the logs of its confirmed acceptors
// (the replicas that granted it exclusive write access, itself included through a loopback
// connection, so its own log obeys the same permission rule) and counts an entry committed
// once a majority of them acknowledged it.
//
// Becoming leader runs the prepare step once: read every confirmed acceptor's
// min_proposal, choose a higher proposal, write it, and read the entry at the first
// undecided index. Values found there are adopted (the highest proposal wins) and accepted
// again under the new proposal, one index after another; only when a majority shows no
// value at the next index does the leader switch to the fast path, where an entry costs
// one WRITE per acceptor. The commands waiting to be proposed are never dropped by an
// adoption (the original Mu code dropped the caller's value): they simply go next.
//
// Fast path: up to `max_outstanding_entries` entries in flight (pipelining), each a batch
// of as many queued commands as fit (batching), each carrying the commit index the leader
// knew when writing it (piggybacking). When the pipeline drains, the leader publishes its
// commit point to every acceptor, so no follower keeps its last entry uncommitted.
//
// Recycling: when more than half the log area is in use, the leader reads every confirmed
// acceptor's `applied` cursor and reuses the space below the position that a majority has
// applied (never waiting for all: a dead replica must not stop the log). A replica behind
// that point finds its next entry overwritten by a later lap and reports that it needs a
// state transfer (ApplyAgent::needs_state_transfer) instead of diverging. Recycled space is
// not zeroed: a reader trusts an entry only with the index it expects at that position,
// which an entry left from an earlier lap never has.
//
// An error completion from an acceptor (access revoked, connection broken, peer dead)
// removes it from the confirmed set; below a majority the leader is `deposed` and stops
// writing. Regaining leadership is the background plane's job.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/circular_log.hpp"
#include "engine/command_batch.hpp"
#include "engine/log_cursor.hpp"
#include "engine/log_entry.hpp"
#include "engine/log_layout.hpp"
#include "engine/replica_log.hpp"
#include "engine/replication/pending_commands.hpp"
#include "engine/runtime/agent.hpp"
#include "engine/runtime/clock.hpp"
#include "engine/runtime/spsc_ring.hpp"
#include "fabric/fabric.hpp"

namespace mu::engine {

inline constexpr std::uint32_t max_replicas = 16;

struct LeaderConfig {
  fabric::NodeId self = 0;
  std::uint32_t replica_count = 3;
  std::uint64_t log_area_bytes = 1 << 20;
  std::uint32_t max_payload_bytes = 64 * 1024;  // one entry's batch
  std::uint32_t max_outstanding_entries = 8;    // the pipeline depth, K
  // Commands waiting to be proposed, at most; propose() refuses beyond (backpressure).
  std::uint32_t max_pending_commands = 65536;
  // How long the pipeline must stay idle before the commit point is published: while
  // commands keep coming, the next entry carries it at no cost.
  std::uint64_t commit_publish_delay_ns = 20'000;
};

// One acceptor as the leader reaches it: its log region, through this leader's posting
// end of the connection whose other end (at the acceptor) grants or refuses write access.
struct AcceptorLink {
  fabric::NodeId node_id = 0;
  fabric::Connection* connection = nullptr;
  const fabric::RemoteRegion* log = nullptr;
};

class LeaderAgent final : public Agent {
 public:
  enum class Role : std::uint8_t { follower, recovering, preparing, steady, deposed };

  // `queue` is the completion queue of every link's connection. `acceptors` holds one link
  // per replica, this one included. `own_log` is this replica's log region (read locally
  // to update followers; written only through the loopback link, like any other log).
  LeaderAgent(const LeaderConfig& config, fabric::Fabric& fabric, std::shared_ptr<fabric::CompletionQueue> queue,
              std::vector<AcceptorLink> acceptors, fabric::LocalRegion& own_log, const Clock& clock);

  // Starts leading with the acceptors that confirmed this replica (granted it exclusive
  // write access: a majority, itself included). Recovery comes first (paper 4.3): read
  // every confirmed log's first undecided entry, copy the decided entries this replica
  // lacks from the most advanced one, bring the other confirmed logs up to the same point
  // and align them; then the prepare step; then the fast path.
  void lead(std::span<const fabric::NodeId> confirmed);
  // Adds an acceptor that granted this leader write access after it started leading (a
  // late grant, or a replica that resumed or restarted): once the pipeline has drained,
  // its log is brought up to the commit point from this replica's log and aligned, and it
  // receives every entry from then on. One that is too far behind (its entries recycled
  // here) is left out: it needs a state transfer.
  void admit(fabric::NodeId acceptor);
  // Replica `acceptor` restarted with a new log region (its connection was reset and
  // reconnected by the caller): it is no longer confirmed, and is reached at `log` from
  // now on. It rejoins like any late acceptor: it grants, then admit().
  void acceptor_restarted(fabric::NodeId acceptor, const fabric::RemoteRegion* log);
  // Acceptor `acceptor` took its grant back (its published holder says so): stop counting
  // it; below a majority this leader is deposed.
  void lose_acceptor(fabric::NodeId acceptor);
  bool is_confirmed(fabric::NodeId acceptor) const;

  // Resets and reconnects this replica's ends of connections left in the error state, so
  // that a new grant finds both ends connected (resets are paired: the acceptor's permission
  // manager cycles its end when it grants). Call before requesting permissions.
  void reset_broken_connections();
  // Stops writing at once; entries in flight are left to the next leader's prepare.
  void step_down();

  // What becomes of commands taken from the submission ring, told to whoever submitted
  // them (on this agent's thread). `dropped`: the command was never written to any log
  // (taken while this replica did not lead, or still queued when its reign ended), so it
  // will never be applied and may be retried through the new leader. `reign_ended`: this
  // replica stopped leading; a command it had taken from the ring (sequence up to
  // `last_taken_sequence`) and not dropped may still be chosen, but only at an index below
  // `next_index` (an entry's index never changes), so once this replica has applied that
  // far, each one's fate is known: applied, or lost for good. The next leader writes
  // no-ops until every such index is decided, so this happens even when no new command
  // arrives. Commands still in the ring are not covered: they are dropped when taken, or
  // proposed normally if this replica leads again by then.
  struct SubmissionEvents {
    std::function<void(const CommandTag&)> dropped;
    std::function<void(std::uint64_t next_index, std::uint64_t last_taken_sequence)> reign_ended;
  };

  // Commands submitted from another thread (CommandSubmitter) are taken from `ring` in
  // every round, in order, as long as the pending queue has room. The ring must outlive
  // this agent. Then do not call propose(): the submitter numbers the commands.
  void accept_submissions(SpscRing& ring, SubmissionEvents events = {}) {
    submissions_ = &ring;
    submission_events_ = std::move(events);
  }

  // Queues a command for the next entries; nullopt when the queue is full. Call from the
  // agent's thread. A command is proposed only while leading; one queued while following
  // waits for leadership (the front end forwards or refuses it first).
  std::optional<CommandTag> propose(std::span<const std::byte> command);
  // While leading (recovering, preparing or steady).
  bool leading() const { return role_ == Role::recovering || role_ == Role::preparing || role_ == Role::steady; }

  int do_work() override;
  std::string_view name() const override { return "leader"; }

  Role role() const { return role_; }
  // One line of state for diagnostics (mu-sim traces, status).
  std::string describe() const;
  std::uint64_t proposal() const { return proposal_; }
  // Every index below this is committed (chosen by a majority).
  std::uint64_t first_uncommitted_index() const { return committed_.index; }
  std::size_t pending_commands() const { return pending_.record_count(); }
  std::uint32_t confirmed_count() const;
  // Entries adopted from earlier leaders by the prepare step (for tests and status).
  std::uint64_t adopted_entries() const { return adopted_entries_; }
  // Entries copied into this replica's log from a more advanced one during recovery.
  std::uint64_t caught_up_entries() const { return caught_up_entries_; }
  // Confirmed acceptors left out by recovery because their log could not be brought up to
  // date from this one (they need a state transfer).
  std::uint32_t acceptors_left_behind() const { return acceptors_left_behind_; }
  // Counts commit-point advances and reigns begun. The background agent stamps each change
  // with its once-per-round clock read (fate sharing), which keeps clock reads, tens of ns
  // each, off the replication path.
  std::uint64_t progress_count() const { return progress_count_; }
  // Commit points written on their own, when idle (entries carry it while they flow).
  std::uint64_t commit_points_published() const { return commit_points_published_; }
  // True while entries or commands wait on this leader.
  bool has_work_in_flight() const { return !in_flight_.empty() || !pending_.empty() || role_ == Role::recovering || role_ == Role::preparing; }
  // Log space below this position may be overwritten: a majority has applied it.
  std::uint64_t recycled_position() const { return recycled_position_; }

 private:
  enum class Operation : std::uint8_t {
    read_min_proposal = 1,
    write_min_proposal,
    read_slot,
    write_entry,
    write_commit,
    read_applied,
    read_cursors,
    catch_up_read,
    catch_up_write,
    update_write,
    join_read,
    join_write,
  };
  enum class RecoveryStep : std::uint8_t { read_cursors, catch_up, update_followers };
  // The steps are sequential: read the cursors of every confirmed log; copy, one entry at
  // a time (READ from the most advanced log, WRITE into this replica's own log through
  // the loopback link), what this replica lacks; then write every other lagging log's
  // missing range from this replica's log and align all of them.
  enum class PrepareStep : std::uint8_t { read_min_proposals, read_slots, accept_adopted };

  struct Acceptor {
    AcceptorLink link;
    bool confirmed = false;
    std::uint32_t step_operations = 0;  // prepare operations outstanding
    bool step_succeeded = false;
    std::uint64_t slot_position = 0;    // where its slot at the undecided index was read
    std::uint64_t acknowledged_index = 0;
    bool applied_read_outstanding = false;
    std::optional<std::uint64_t> applied_position;  // as last read, for recycling
    LogCursor first_undecided;                      // as read by recovery
  };
  struct InFlightEntry {
    std::uint64_t index;
    std::uint64_t next_position;
  };

  std::uint64_t work_id(Operation operation, std::size_t acceptor, std::uint64_t value) const;
  void handle_completion(const fabric::Completion& completion);
  void drop_acceptor(std::size_t acceptor);
  bool post_or_drop(std::size_t acceptor, fabric::PostStatus status);

  int advance_join();
  void tell_left_behind(std::size_t acceptor);
  int advance_recovery();
  void start_catch_up_read();
  void start_update_followers();
  bool own_log_holds(LogCursor from, const LogCursor& to);
  std::size_t own_acceptor() const;

  int advance_prepare();
  void start_read_min_proposals();
  void start_read_slots(bool write_proposal);
  void read_slot(std::size_t acceptor, std::uint64_t position);
  bool prepare_step_done() const;
  void decide_from_slots();

  int propose_entries();
  int write_no_ops();
  // Reports the end of a reign (once per transition out of leading), and drops what was
  // still queued when commands come from the submission ring.
  void notice_reign_end();
  void drop_command(std::span<const std::byte> record);
  int take_submissions();
  bool pipeline_has_room() const;
  bool write_entry(EntryKind kind, std::span<const std::byte> payload);
  void advance_commit();
  int publish_commit_point(bool wrote_entries);
  int start_recycling_round();
  void finish_recycling_round();
  void finish_recycling_round_up_to(std::uint64_t decided_position);
  void write_adopted();
  void publish_recycled_position();

  std::byte* scratch_for(std::size_t acceptor);
  // One checksummed cursor into a header word of an acceptor's log (inline).
  fabric::PostStatus post_cursor_write(std::size_t acceptor, Operation operation, std::size_t header_offset,
                                       const LogCursor& cursor);
  void write_cursor_to_confirmed(Operation operation, std::size_t header_offset, const LogCursor& cursor);
  // A READ of header words of an acceptor's log into this leader's scratch region.
  fabric::PostStatus post_header_read(std::size_t acceptor, Operation operation, std::size_t header_offset,
                                      std::uint32_t length, std::uint64_t local_offset);
  // Writes the entry-area bytes [from, to) of this replica's log to the same places of an
  // acceptor's log (the decided entries it lacks).
  struct RangeCopy {
    std::uint32_t posted = 0;
    fabric::PostStatus status = fabric::PostStatus::posted;
  };
  RangeCopy post_range_copy(std::size_t acceptor, Operation operation, std::uint64_t from, std::uint64_t to);
  // After a READ of cursors_read_bytes at aligned_offset into the acceptor's window.
  LogCursor first_undecided_in(std::size_t acceptor) const;
  static constexpr std::uint32_t cursors_read_bytes =
      static_cast<std::uint32_t>(log_layout::applied_offset + encoded_cursor_bytes - log_layout::aligned_offset);
  std::size_t cursor_scratch_offset(std::size_t acceptor) const;

  LeaderConfig config_;
  fabric::Fabric& fabric_;
  fabric::LocalRegion& own_log_;
  std::optional<ReplicaLog> own_view_;  // this replica's log, read locally (never written so)
  std::vector<std::byte> own_scratch_;
  std::shared_ptr<fabric::CompletionQueue> queue_;
  const Clock& clock_;
  CircularLog geometry_;
  std::vector<Acceptor> acceptors_;
  std::unique_ptr<fabric::LocalRegion> scratch_;  // prepare reads, one window per acceptor
  std::unique_ptr<fabric::LocalRegion> staging_;  // encoded entries in flight, one slot each
  std::size_t scratch_window_bytes_;
  std::size_t staging_slot_bytes_;

  Role role_ = Role::follower;
  PrepareStep prepare_step_ = PrepareStep::read_min_proposals;
  RecoveryStep recovery_step_ = RecoveryStep::read_cursors;
  LogCursor recovery_target_;    // the most advanced first undecided entry found
  LogCursor catch_up_cursor_;    // the next entry to copy into this replica's log
  std::size_t catch_up_source_ = 0;
  bool catch_up_outstanding_ = false;  // the one copy operation in flight
  bool catch_up_writing_ = false;      // it is the write (else the read)
  EntryHeader catch_up_header_{};
  std::uint64_t caught_up_entries_ = 0;
  std::uint32_t acceptors_left_behind_ = 0;
  std::uint64_t progress_count_ = 0;
  std::uint64_t commit_points_published_ = 0;
  std::deque<std::size_t> joining_;      // acceptors waiting to be admitted
  bool join_started_ = false;            // the front one is being brought up to date
  std::uint32_t join_operations_ = 0;    // its operations in flight
  bool join_failed_ = false;
  std::uint8_t epoch_ = 0;  // bumped at every lead(): completions of an earlier reign are ignored
  std::uint64_t proposal_ = 0;
  std::uint64_t highest_seen_proposal_ = 0;
  LogCursor tail_;       // where the next entry goes
  LogCursor committed_;  // the first uncommitted entry
  LogCursor published_;  // the commit point last published
  std::optional<std::uint64_t> idle_since_ns_;  // the first round that wrote no entry, in the latest such run
  std::uint64_t recycled_position_ = 0;
  std::deque<InFlightEntry> in_flight_;
  std::uint64_t adopted_index_ = 0;  // the entry the prepare step is re-accepting, 0 = none
  std::uint64_t adopted_entries_ = 0;
  std::vector<std::byte> adopted_payload_;
  EntryKind adopted_kind_ = EntryKind::commands;
  bool adopted_written_ = false;

  PendingCommands pending_;
  SpscRing* submissions_ = nullptr;
  SubmissionEvents submission_events_;
  std::uint64_t last_taken_sequence_ = 0;  // of the commands taken from the ring
  bool was_leading_ = false;  // as of the last notice_reign_end()
  std::uint64_t decide_through_index_ = 0;  // this reign writes no-ops up to here while idle
  std::uint64_t next_sequence_ = 1;
};

}  // namespace mu::engine
