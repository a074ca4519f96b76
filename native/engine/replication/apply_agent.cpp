#include "engine/replication/apply_agent.hpp"

#include <algorithm>
#include <cassert>

namespace mu::engine {

ApplyAgent::ApplyAgent(ReplicaLog& log, ApplyEntry apply, std::uint32_t max_entries_per_round)
    : log_(log),
      apply_(std::move(apply)),
      max_entries_per_round_(max_entries_per_round),
      applied_(log.read_cursor(log_layout::applied_offset).value_or(log_start)),
      first_undecided_index_(applied_.index) {
  assert(max_entries_per_round_ > 0);
}

void ApplyAgent::learn_commit_point() {
  if (const auto recycled = log_.read_cursor(log_layout::recycled_offset);
      recycled && recycled->position > applied_.position) {
    needs_state_transfer_ = true;  // a leader reused space this replica has not applied
    return;
  }
  if (local_commit_hint_) first_undecided_index_ = std::max(first_undecided_index_, local_commit_hint_());
  for (const std::size_t offset : {log_layout::committed_offset, log_layout::aligned_offset}) {
    if (const auto cursor = log_.read_cursor(offset)) {
      first_undecided_index_ = std::max(first_undecided_index_, cursor->index);
    }
  }
}

void ApplyAgent::check_overwritten() {
  const auto found = log_.index_at_least(applied_.position, applied_.index + 1, scratch_);
  if (found && *found > applied_.index) needs_state_transfer_ = true;
}

void ApplyAgent::resume_from_state_transfer(const LogCursor& applied) {
  applied_ = applied;
  first_undecided_index_ = applied.index;
  for (const std::size_t offset : {log_layout::aligned_offset, log_layout::committed_offset,
                                   log_layout::applied_offset, log_layout::recycled_offset}) {
    log_.write_cursor(offset, applied);
  }
  needs_state_transfer_ = false;
}

int ApplyAgent::do_work() {
  if (needs_state_transfer_) return 0;
  // What is known committed before any entry is read this round.
  learn_commit_point();
  if (needs_state_transfer_) return 0;
  const std::uint64_t known = first_undecided_index_;
  // One walk. An entry below `known` was read after its commit was learned, so it is the
  // chosen one and is applied now; an entry at or beyond it only teaches, through its
  // piggybacked commit index, a later commit point, and is applied in a later round after
  // being read again (it may have been an unchosen value that a new leader rewrites).
  LogCursor at = applied_;
  int applied_count = 0;
  for (std::uint32_t seen = 0; seen < max_entries_per_round_; ++seen) {
    const auto entry = log_.read_entry(at.position, at.index, scratch_);
    if (!entry) {
      // Still landing (torn) or being rewritten with the same value; or, when a later
      // index sits here, recycled before this replica applied it.
      if (at == applied_) check_overwritten();
      break;
    }
    const std::uint64_t next_position = log_.geometry().position_after(entry->position, entry->header);
    const bool apply_now = at.index < known && at == applied_;
    if (entry->header.kind == EntryKind::wrap) {
      if (apply_now) applied_.position = next_position;
      at.position = next_position;
      continue;
    }
    first_undecided_index_ = std::max(first_undecided_index_, entry->header.leader_commit_index + 1);
    if (apply_now && entry->header.kind == EntryKind::commands && ready_ && !ready_(entry->payload.size())) break;
    if (apply_now) {
      if (entry->header.kind == EntryKind::commands) {
        applying_next_ = LogCursor{at.index + 1, next_position};
        apply_(at.index, entry->payload);
      }
      applied_ = LogCursor{at.index + 1, next_position};
      ++applied_count;
    }
    at = LogCursor{at.index + 1, next_position};
  }
  if (applied_count > 0) log_.write_cursor(log_layout::applied_offset, applied_);
  return applied_count;
}

std::string ApplyAgent::describe() {
  std::string out = "applied " + std::to_string(applied_.index) + "@" + std::to_string(applied_.position) +
                    " first undecided " + std::to_string(first_undecided_index_);
  const auto found = log_.index_at(applied_.position, scratch_);
  out += " found " + (found ? std::to_string(*found) : std::string("nothing valid"));
  for (const auto& [name, offset] : {std::pair{"aligned", log_layout::aligned_offset},
                                     std::pair{"committed", log_layout::committed_offset},
                                     std::pair{"recycled", log_layout::recycled_offset}}) {
    const auto cursor = log_.read_cursor(offset);
    out += std::string(" ") + name + " " +
           (cursor ? std::to_string(cursor->index) + "@" + std::to_string(cursor->position) : std::string("-"));
  }
  return out;
}

}  // namespace mu::engine
