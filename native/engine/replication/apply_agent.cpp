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
  LogCursor at = applied_;
  for (std::uint32_t seen = 0; seen < max_entries_per_round_; ++seen) {
    const auto entry = log_.read_entry(at.position, at.index, scratch_);
    if (!entry) {
      if (seen == 0) check_overwritten();
      break;
    }
    if (entry->header.kind != EntryKind::wrap) {
      first_undecided_index_ = std::max(first_undecided_index_, entry->header.leader_commit_index + 1);
      ++at.index;
    }
    at.position = log_.geometry().position_after(entry->position, entry->header);
  }
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

void ApplyAgent::check_overwritten() {
  const auto found = log_.index_at(applied_.position, scratch_);
  if (found && *found > applied_.index) needs_state_transfer_ = true;
}

int ApplyAgent::do_work() {
  if (needs_state_transfer_) return 0;
  learn_commit_point();
  if (needs_state_transfer_) return 0;
  int applied_count = 0;
  while (applied_.index < first_undecided_index_ &&
         static_cast<std::uint32_t>(applied_count) < max_entries_per_round_) {
    // Read after learning the commit point: see the class comment.
    const auto entry = log_.read_entry(applied_.position, applied_.index, scratch_);
    if (!entry) {
      // Still landing (torn) or being rewritten with the same value; or, when a later
      // index sits here, recycled before this replica applied it.
      check_overwritten();
      break;
    }
    const std::uint64_t next_position = log_.geometry().position_after(entry->position, entry->header);
    if (entry->header.kind == EntryKind::wrap) {
      applied_.position = next_position;
      continue;
    }
    if (entry->header.kind == EntryKind::commands) apply_(applied_.index, entry->payload);
    applied_ = LogCursor{applied_.index + 1, next_position};
    ++applied_count;
  }
  if (applied_count > 0) log_.write_cursor(log_layout::applied_offset, applied_);
  return applied_count;
}

}  // namespace mu::engine

namespace mu::engine {

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
