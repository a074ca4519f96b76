// The apply side of the replication plane, on every replica (the leader included): walks
// the replica's own log, learns how far it is committed, and hands each committed entry to
// the application in log order.
//
// The commit point comes from four places: the commit index piggybacked in every entry
// (the leader's knowledge when it wrote it), the `committed` cursor a leader publishes
// when it goes idle, the `aligned` cursor a new leader writes after bringing this log up
// to date, and, on the leader's own replica, the leader agent itself. An entry is applied
// only if it was read after its commit became known: one read before a new leader rewrote
// it (prepare adoption) may be a value that was never chosen, and only a read that happens
// after learning the commit point is sure to see the chosen one. So each round learns
// first, then walks the entries once, applying those below what it knew and learning
// from the rest for the next round.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/log_cursor.hpp"
#include "engine/replica_log.hpp"
#include "engine/runtime/agent.hpp"

namespace mu::engine {

class ApplyAgent final : public Agent {
 public:
  // Called for every committed `commands` entry, in log order (no_op and wrap entries are
  // skipped). The payload is valid only during the call.
  using ApplyEntry = std::function<void(std::uint64_t log_index, std::span<const std::byte> payload)>;

  ApplyAgent(ReplicaLog& log, ApplyEntry apply, std::uint32_t max_entries_per_round = 64);

  int do_work() override;
  std::string_view name() const override { return "apply"; }

  // On the leader's own replica, the leader agent knows the commit point before any
  // cursor or entry in this log says so: a hint (the first uncommitted index) saves the
  // wait for the next entry or the commit publication. Safe for the same reason the
  // piggybacked commit index is: entries are still read only after learning it, and only
  // the ones with the expected index and a valid checksum.
  void set_local_commit_hint(std::function<std::uint64_t()> first_uncommitted_index) {
    local_commit_hint_ = std::move(first_uncommitted_index);
  }

  // Backpressure from the application: before each `commands` entry, asked whether it can
  // take a payload of that many bytes now; when not, the entry is applied in a later
  // round. (The Node addon hands entries to JavaScript through a bounded ring.)
  void set_application_ready(std::function<bool(std::size_t payload_bytes)> ready) { ready_ = std::move(ready); }

  // The next entry to apply (everything before it has been applied).
  LogCursor applied() const { return applied_; }
  // During the ApplyEntry callback: the cursor just past the entry being applied (what
  // applied() becomes once it returns). An application that snapshots its state after that
  // entry hands this cursor to resume_from_state_transfer on another replica.
  LogCursor applying_next() const { return applying_next_; }
  // The first entry not known to be committed.
  std::uint64_t first_undecided_index() const { return first_undecided_index_; }
  // True once the entry this replica needs next was overwritten by a later lap of the
  // circular log (the leader recycled it after a majority applied it): this replica can
  // only continue from a state transfer. It applies nothing more meanwhile.
  bool needs_state_transfer() const { return needs_state_transfer_; }
  // After the application restored a snapshot that covers every entry before `applied`
  // (taken from a replica that applied that far), continue from there. Call only while no
  // leader can write this log (the background plane revokes every grant while a state
  // transfer is needed): the header cursors leaders write are reset to `applied` too, so
  // no stale cursor claims entries this log does not hold.
  void resume_from_state_transfer(const LogCursor& applied);
  // The application lost its state (its store failed or restarted empty): this replica
  // stops applying and takes no part, as when recycling overtook it, until
  // resume_from_state_transfer.
  void request_state_transfer() { needs_state_transfer_ = true; }
  // One line of state for diagnostics (mu-sim traces, status).
  std::string describe();

 private:
  void learn_commit_point();
  void check_overwritten();

  ReplicaLog& log_;
  ApplyEntry apply_;
  std::uint32_t max_entries_per_round_;
  LogCursor applied_;
  LogCursor applying_next_{};
  std::uint64_t first_undecided_index_;
  bool needs_state_transfer_ = false;
  std::vector<std::byte> scratch_;
  std::function<std::uint64_t()> local_commit_hint_;
  std::function<bool(std::size_t)> ready_;
};

}  // namespace mu::engine
