#include "engine/replication/leader_agent.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <stdexcept>

#include "engine/log_layout.hpp"
#include "engine/quorum.hpp"

namespace mu::engine {
namespace {

// work_id: operation (8 bits) | acceptor (8) | reign epoch (8) | value (40: an entry index)
constexpr std::uint64_t value_mask = (std::uint64_t{1} << 40) - 1;

std::uint8_t operation_of(std::uint64_t work_id) { return static_cast<std::uint8_t>(work_id >> 56); }
std::size_t acceptor_of(std::uint64_t work_id) { return static_cast<std::size_t>((work_id >> 48) & 0xff); }
std::uint8_t epoch_of(std::uint64_t work_id) { return static_cast<std::uint8_t>(work_id >> 40); }
std::uint64_t value_of(std::uint64_t work_id) { return work_id & value_mask; }

// Proposal numbers: a round in the high bits, the proposer's id in the low 8, so two
// replicas never choose the same number.
std::uint64_t next_proposal(std::uint64_t highest_seen, fabric::NodeId self) {
  return (((highest_seen >> 8) + 1) << 8) | (self & 0xff);
}

}  // namespace

LeaderAgent::LeaderAgent(const LeaderConfig& config, fabric::Fabric& fabric,
                         std::shared_ptr<fabric::CompletionQueue> queue, std::vector<AcceptorLink> acceptors,
                         fabric::LocalRegion& own_log, const Clock& clock)
    : config_(config),
      fabric_(fabric),
      own_log_(own_log),
      queue_(std::move(queue)),
      clock_(clock),
      geometry_(config.log_area_bytes, config.max_payload_bytes) {
  if (config_.replica_count == 0 || config_.replica_count > max_replicas) {
    throw std::invalid_argument("leader: replica count must be 1.." + std::to_string(max_replicas));
  }
  if (acceptors.size() != config_.replica_count) {
    throw std::invalid_argument("leader: need one acceptor link per replica, this one included");
  }
  if (config_.max_outstanding_entries == 0) throw std::invalid_argument("leader: the pipeline needs depth >= 1");
  for (const AcceptorLink& link : acceptors) {
    if (link.connection == nullptr || link.log == nullptr) throw std::invalid_argument("leader: incomplete acceptor link");
    // An entry may need a wrap marker and the entry itself; a few more for prepare and commit.
    if (link.connection->max_outstanding_operations() < 2 * config_.max_outstanding_entries + 4) {
      throw std::invalid_argument("leader: a connection allows fewer outstanding operations than the pipeline needs");
    }
    Acceptor acceptor;
    acceptor.link = link;
    acceptors_.push_back(acceptor);
  }
  scratch_window_bytes_ = (encoded_entry_bytes(config_.max_payload_bytes) + 63) & ~std::size_t{63};
  // Prepare windows, then one cursor-sized cell per acceptor for recycling reads.
  scratch_ = fabric_.register_region((scratch_window_bytes_ + 64) * acceptors_.size());
  if (own_log_.size_bytes() != log_layout::region_bytes(config_.log_area_bytes)) {
    throw std::invalid_argument("leader: this replica's log region does not match the configured log area");
  }
  if (std::none_of(acceptors_.begin(), acceptors_.end(),
                   [&](const Acceptor& acceptor) { return acceptor.link.node_id == config_.self; })) {
    throw std::invalid_argument("leader: no loopback link to this replica's own log");
  }
  own_view_.emplace(std::span(own_log_.data(), own_log_.size_bytes()), config_.max_payload_bytes);
  staging_slot_bytes_ = encoded_entry_bytes(config_.max_payload_bytes) + encoded_entry_bytes(0);
  staging_ = fabric_.register_region(staging_slot_bytes_ * config_.max_outstanding_entries);
}

std::uint64_t LeaderAgent::work_id(Operation operation, std::size_t acceptor, std::uint64_t value) const {
  assert(value <= value_mask && acceptor < 256);
  return (static_cast<std::uint64_t>(operation) << 56) | (static_cast<std::uint64_t>(acceptor) << 48) |
         (static_cast<std::uint64_t>(epoch_) << 40) | value;
}

fabric::PostStatus LeaderAgent::post_cursor_write(std::size_t acceptor, Operation operation, std::size_t header_offset,
                                                  const LogCursor& cursor) {
  const EncodedCursor encoded = encode_cursor(cursor);  // inline: copied at post time
  fabric::WriteRequest request;
  request.work_id = work_id(operation, acceptor, 0);
  request.remote = acceptors_[acceptor].link.log;
  request.remote_offset = header_offset;
  request.inline_payload = encoded;
  return acceptors_[acceptor].link.connection->post_write(request);
}

fabric::PostStatus LeaderAgent::post_header_read(std::size_t acceptor, Operation operation, std::size_t header_offset,
                                                 std::uint32_t length, std::uint64_t local_offset) {
  fabric::ReadRequest request;
  request.work_id = work_id(operation, acceptor, 0);
  request.remote = acceptors_[acceptor].link.log;
  request.remote_offset = header_offset;
  request.local_region = scratch_.get();
  request.local_offset = local_offset;
  request.length = length;
  return acceptors_[acceptor].link.connection->post_read(request);
}

LeaderAgent::RangeCopy LeaderAgent::post_range_copy(std::size_t acceptor, Operation operation, std::uint64_t from,
                                                    std::uint64_t to) {
  RangeCopy copy;
  for (std::uint64_t position = from; position < to;) {
    // Split where the circular area ends: the same places in both logs.
    const std::uint64_t bytes = std::min(to - position, geometry_.bytes_before_end(position));
    fabric::WriteRequest request;
    request.work_id = work_id(operation, acceptor, 0);
    request.remote = acceptors_[acceptor].link.log;
    request.remote_offset = log_layout::entry_area_offset + geometry_.place(position);
    request.local_region = &own_log_;
    request.local_offset = log_layout::entry_area_offset + geometry_.place(position);
    request.length = static_cast<std::uint32_t>(bytes);
    copy.status = acceptors_[acceptor].link.connection->post_write(request);
    if (copy.status != fabric::PostStatus::posted) break;
    ++copy.posted;
    position += bytes;
  }
  return copy;
}

LogCursor LeaderAgent::first_undecided_in(std::size_t acceptor) const {
  // The latest of the three cursors read at `aligned_offset`; one that is torn or
  // unwritten says nothing.
  LogCursor first_undecided = log_start;
  const std::byte* window = scratch_->data() + acceptor * scratch_window_bytes_;
  for (const std::size_t offset : {log_layout::aligned_offset, log_layout::committed_offset, log_layout::applied_offset}) {
    const auto cursor = decode_cursor(std::span(window + (offset - log_layout::aligned_offset), encoded_cursor_bytes));
    if (cursor && cursor->index > first_undecided.index) first_undecided = *cursor;
  }
  return first_undecided;
}

void LeaderAgent::write_cursor_to_confirmed(Operation operation, std::size_t header_offset, const LogCursor& cursor) {
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    if (acceptors_[i].confirmed) post_or_drop(i, post_cursor_write(i, operation, header_offset, cursor));
  }
}

std::byte* LeaderAgent::scratch_for(std::size_t acceptor) { return scratch_->data() + acceptor * scratch_window_bytes_; }

std::size_t LeaderAgent::cursor_scratch_offset(std::size_t acceptor) const {
  return scratch_window_bytes_ * acceptors_.size() + acceptor * 64;
}

std::uint32_t LeaderAgent::confirmed_count() const {
  return static_cast<std::uint32_t>(
      std::count_if(acceptors_.begin(), acceptors_.end(), [](const Acceptor& acceptor) { return acceptor.confirmed; }));
}

void LeaderAgent::lead(std::span<const fabric::NodeId> confirmed) {
  ++epoch_;
  for (Acceptor& acceptor : acceptors_) {
    acceptor.confirmed = std::find(confirmed.begin(), confirmed.end(), acceptor.link.node_id) != confirmed.end();
    acceptor.step_operations = 0;
    acceptor.step_succeeded = false;
    acceptor.applied_read_outstanding = false;
    acceptor.applied_position.reset();
    acceptor.first_undecided = log_start;
  }
  if (confirmed_count() < majority(config_.replica_count) || !acceptors_[own_acceptor()].confirmed) {
    throw std::invalid_argument("leader: lead() needs a majority of confirmed acceptors, this replica included");
  }
  in_flight_.clear();
  adopted_index_ = 0;
  joining_.clear();
  join_started_ = false;
  join_operations_ = 0;
  ++progress_count_;
  role_ = Role::recovering;
  recovery_step_ = RecoveryStep::read_cursors;
  // One READ covers the three cursors that say how far a log is decided.
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    if (!acceptors_[i].confirmed) continue;
    const auto status = post_header_read(i, Operation::read_cursors, log_layout::aligned_offset, cursors_read_bytes,
                                         i * scratch_window_bytes_);
    if (post_or_drop(i, status)) acceptors_[i].step_operations = 1;
  }
}

void LeaderAgent::reset_broken_connections() {
  for (Acceptor& acceptor : acceptors_) {
    fabric::Connection& connection = *acceptor.link.connection;
    if (connection.state() == fabric::ConnectionState::error) {
      const fabric::EndpointInfo remote = connection.remote_endpoint();
      connection.reset();
      try {
        connection.connect(remote, fabric::access_none);
      } catch (const fabric::FabricError&) {
        // The peer cannot be reached at all right now (a restarting process between its
        // old files and its new ones): left unconnected, its posts fail, and the next
        // request cycles it again.
      }
    }
  }
}

std::size_t LeaderAgent::own_acceptor() const {
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    if (acceptors_[i].link.node_id == config_.self) return i;
  }
  assert(false && "the constructor checked for a loopback link");
  return 0;
}

void LeaderAgent::step_down() {
  ++epoch_;
  role_ = Role::follower;
  in_flight_.clear();
  notice_reign_end();
}

void LeaderAgent::notice_reign_end() {
  const bool leading_now = leading();
  if (was_leading_ && !leading_now) {
    if (submissions_ != nullptr) {
      // Never written anywhere: the submitter learns now rather than at the next reign,
      // which may never come (a front end forwards to the new leader instead).
      pending_.for_each_record([this](std::span<const std::byte> record) { drop_command(record); });
      pending_.clear();
    }
    if (submission_events_.reign_ended) submission_events_.reign_ended(tail_.index, last_taken_sequence_);
  }
  was_leading_ = leading_now;
}

void LeaderAgent::drop_command(std::span<const std::byte> record) {
  if (!submission_events_.dropped) return;
  for_each_command(record, [this](const Command& command) { submission_events_.dropped(command.tag); });
}

std::optional<CommandTag> LeaderAgent::propose(std::span<const std::byte> command) {
  if (pending_.record_count() >= config_.max_pending_commands) return std::nullopt;
  if (command_record_header_bytes + command.size() > config_.max_payload_bytes) return std::nullopt;
  const CommandTag tag{config_.self, next_sequence_++};
  pending_.push_command(tag, command);
  return tag;
}

int LeaderAgent::do_work() {
  int work = 0;
  std::array<fabric::Completion, 32> completions;
  const std::size_t polled = queue_->poll(completions);
  for (std::size_t i = 0; i < polled; ++i) handle_completion(completions[i]);
  work += static_cast<int>(polled);
  notice_reign_end();  // deposed since the last round (by a failed completion or step)
  if (submissions_ != nullptr) work += take_submissions();
  if (role_ == Role::recovering) work += advance_recovery();
  if (role_ == Role::preparing) {
    work += start_recycling_round();
    work += advance_prepare();
  }
  if (role_ == Role::steady) {
    int entries = 0;
    work += advance_join();
    work += start_recycling_round();
    if (joining_.empty()) {  // a join waits for a drained pipeline
      entries = propose_entries() + write_no_ops();
      work += entries;
      // Completions may be ready at once (shm completes at post): take them in the same
      // round rather than the next, which saves a round of every agent on the thread.
      if (entries > 0) {
        const std::size_t again = queue_->poll(completions);
        for (std::size_t i = 0; i < again; ++i) handle_completion(completions[i]);
      }
    }
    work += publish_commit_point(entries > 0);
  }
  notice_reign_end();
  return work;
}

// --- completions ---------------------------------------------------------------------

void LeaderAgent::handle_completion(const fabric::Completion& completion) {
  if (epoch_of(completion.work_id) != epoch_ || role_ == Role::follower || role_ == Role::deposed) return;
  const std::size_t index = acceptor_of(completion.work_id);
  if (index >= acceptors_.size()) return;
  Acceptor& acceptor = acceptors_[index];
  const auto operation = static_cast<Operation>(operation_of(completion.work_id));
  const bool ok = completion.status == fabric::CompletionStatus::success;
  if (operation == Operation::join_read || operation == Operation::join_write) {
    // The joiner is not confirmed yet: its failures concern only the join.
    if (join_operations_ > 0) --join_operations_;
    if (!ok) join_failed_ = true;
    return;
  }
  if (operation == Operation::read_applied) {
    acceptor.applied_read_outstanding = false;
    if (ok) {
      const auto cursor = decode_cursor(std::span(scratch_->data() + cursor_scratch_offset(index), encoded_cursor_bytes));
      if (cursor) acceptor.applied_position = cursor->position;  // a torn read just waits for the next round
    }
  }
  if (!ok) {
    drop_acceptor(index);
    if (operation == Operation::catch_up_read || operation == Operation::catch_up_write) {
      catch_up_outstanding_ = false;  // advance_recovery sees the dropped acceptor
    } else if (operation != Operation::write_entry && operation != Operation::write_commit &&
               operation != Operation::read_applied && acceptor.step_operations > 0) {
      --acceptor.step_operations;
    }
    return;
  }
  switch (operation) {
    case Operation::read_min_proposal:
    case Operation::write_min_proposal:
    case Operation::read_slot:
    case Operation::read_cursors:
    case Operation::update_write:
      assert(acceptor.step_operations > 0);
      if (--acceptor.step_operations == 0 && acceptor.confirmed) acceptor.step_succeeded = true;
      break;
    case Operation::write_entry:
      acceptor.acknowledged_index = std::max(acceptor.acknowledged_index, value_of(completion.work_id));
      advance_commit();
      break;
    case Operation::write_commit:
      break;
    case Operation::read_applied:
      finish_recycling_round();
      break;
    case Operation::catch_up_read:
    case Operation::catch_up_write:
      catch_up_outstanding_ = false;
      break;
    case Operation::join_read:
    case Operation::join_write:
      break;  // counted above
  }
}

void LeaderAgent::acceptor_restarted(fabric::NodeId acceptor, const fabric::RemoteRegion* log) {
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    if (acceptors_[i].link.node_id != acceptor) continue;
    drop_acceptor(i);
    acceptors_[i].link.log = log;
    acceptors_[i].applied_read_outstanding = false;
    acceptors_[i].applied_position.reset();
    // A join of the previous incarnation is abandoned: one under way fails once its
    // operations are back (the usual path), one still waiting is forgotten.
    const bool under_way = !joining_.empty() && joining_.front() == i && join_started_;
    if (under_way) {
      join_failed_ = true;
    } else {
      joining_.erase(std::remove(joining_.begin(), joining_.end(), i), joining_.end());
    }
  }
}

void LeaderAgent::lose_acceptor(fabric::NodeId acceptor) {
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    if (acceptors_[i].link.node_id == acceptor && acceptor != config_.self) drop_acceptor(i);
  }
}

void LeaderAgent::drop_acceptor(std::size_t index) {
  Acceptor& acceptor = acceptors_[index];
  if (!acceptor.confirmed) return;
  acceptor.confirmed = false;
  acceptor.step_succeeded = false;
  if (confirmed_count() < majority(config_.replica_count)) {
    // Another leader holds the permissions of a majority now (or they are unreachable):
    // every further write would fail or be meaningless.
    role_ = Role::deposed;
    in_flight_.clear();
  }
}

bool LeaderAgent::post_or_drop(std::size_t index, fabric::PostStatus status) {
  if (status == fabric::PostStatus::posted) return true;
  // The pipeline bound keeps every connection below its outstanding limit, so a refused
  // post means the connection is not usable (reset, not connected): treat it as a failure.
  drop_acceptor(index);
  return false;
}

// --- prepare (paper 4.1) ---------------------------------------------------------------

void LeaderAgent::start_read_min_proposals() {
  prepare_step_ = PrepareStep::read_min_proposals;
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    Acceptor& acceptor = acceptors_[i];
    acceptor.step_succeeded = false;
    if (!acceptor.confirmed) continue;
    const auto status = post_header_read(i, Operation::read_min_proposal, log_layout::min_proposal_offset,
                                         encoded_cursor_bytes, i * scratch_window_bytes_);
    if (post_or_drop(i, status)) acceptor.step_operations = 1;
  }
}

void LeaderAgent::read_slot(std::size_t i, std::uint64_t position) {
  Acceptor& acceptor = acceptors_[i];
  position = geometry_.readable_position(position);
  acceptor.slot_position = position;
  fabric::ReadRequest request;
  request.work_id = work_id(Operation::read_slot, i, 0);
  request.remote = acceptor.link.log;
  request.remote_offset = log_layout::entry_area_offset + geometry_.place(position);
  request.local_region = scratch_.get();
  request.local_offset = i * scratch_window_bytes_;
  request.length = static_cast<std::uint32_t>(std::min<std::uint64_t>(scratch_window_bytes_, geometry_.bytes_before_end(position)));
  if (post_or_drop(i, acceptor.link.connection->post_read(request))) ++acceptor.step_operations;
}

void LeaderAgent::start_read_slots(bool write_proposal) {
  prepare_step_ = PrepareStep::read_slots;
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    Acceptor& acceptor = acceptors_[i];
    acceptor.step_succeeded = false;
    if (!acceptor.confirmed) continue;
    if (write_proposal) {
      // Posted before the read on the same connection, so it takes effect first.
      const auto status =
          post_cursor_write(i, Operation::write_min_proposal, log_layout::min_proposal_offset, LogCursor{proposal_, 0});
      if (!post_or_drop(i, status)) continue;
      ++acceptor.step_operations;
    }
    read_slot(i, tail_.position);
  }
}

bool LeaderAgent::prepare_step_done() const {
  return std::none_of(acceptors_.begin(), acceptors_.end(),
                      [](const Acceptor& acceptor) { return acceptor.confirmed && acceptor.step_operations > 0; });
}

int LeaderAgent::advance_prepare() {
  if (prepare_step_ == PrepareStep::accept_adopted) {
    if (!adopted_written_) {
      write_adopted();
      return adopted_written_ ? 1 : 0;
    }
    if (committed_.index <= adopted_index_) return 0;  // not yet on a majority
    adopted_index_ = 0;
    start_read_slots(/*write_proposal=*/false);  // the same proposal covers the next index
    return 1;
  }
  if (!prepare_step_done()) return 0;
  std::uint32_t succeeded = 0;
  for (const Acceptor& acceptor : acceptors_) succeeded += acceptor.confirmed && acceptor.step_succeeded ? 1 : 0;
  if (succeeded < majority(config_.replica_count)) {
    role_ = Role::deposed;
    return 1;
  }
  if (prepare_step_ == PrepareStep::read_min_proposals) {
    for (std::size_t i = 0; i < acceptors_.size(); ++i) {
      if (!acceptors_[i].confirmed || !acceptors_[i].step_succeeded) continue;
      // A torn or never-written word reads as no promise at all.
      const auto promised = decode_cursor(std::span(scratch_for(i), encoded_cursor_bytes));
      if (promised) highest_seen_proposal_ = std::max(highest_seen_proposal_, promised->index);
    }
    proposal_ = next_proposal(std::max(highest_seen_proposal_, proposal_), config_.self);
    highest_seen_proposal_ = proposal_;
    start_read_slots(/*write_proposal=*/true);
    return 1;
  }
  decide_from_slots();
  return 1;
}

void LeaderAgent::decide_from_slots() {
  // A wrap marker for the undecided index sends that acceptor's read to the next lap.
  bool rereading = false;
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    Acceptor& acceptor = acceptors_[i];
    if (!acceptor.confirmed || !acceptor.step_succeeded) continue;
    const auto window = std::span<const std::byte>(scratch_for(i), scratch_window_bytes_);
    const DecodedEntry entry = decode_entry(window);
    if (entry.state == EntryState::valid && entry.header.log_index == tail_.index &&
        entry.header.kind == EntryKind::wrap && geometry_.place(acceptor.slot_position) != 0) {
      acceptor.step_succeeded = false;
      read_slot(i, geometry_.position_after(acceptor.slot_position, entry.header));
      rereading = true;
    }
  }
  if (rereading) return;  // decide when the rereads are in

  // Adopt the value with the highest proposal among a majority's slots (Paxos phase 1b).
  std::optional<std::size_t> adopt_from;
  std::uint64_t adopt_proposal = 0;
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    const Acceptor& acceptor = acceptors_[i];
    if (!acceptor.confirmed || !acceptor.step_succeeded) continue;
    const DecodedEntry entry = decode_entry(std::span<const std::byte>(scratch_for(i), scratch_window_bytes_));
    if (entry.state != EntryState::valid || entry.header.log_index != tail_.index ||
        entry.header.kind == EntryKind::wrap) {
      continue;  // empty, torn (never completed, so never chosen) or an older lap
    }
    if (!adopt_from || entry.header.proposal > adopt_proposal) {
      adopt_from = i;
      adopt_proposal = entry.header.proposal;
    }
  }
  if (!adopt_from) {
    // No acceptor of a majority holds anything at this index, and logs are written in
    // index order, so none holds anything beyond it: the fast path is safe from here.
    role_ = Role::steady;
    // An earlier leader may have written up to K entries past what it committed, and
    // this reign starts at or beyond that commit point (paper 4.3: the pipeline bound).
    decide_through_index_ = tail_.index + config_.max_outstanding_entries;
    return;
  }
  const DecodedEntry adopted =
      decode_entry(std::span<const std::byte>(scratch_for(*adopt_from), scratch_window_bytes_));
  // Kept until written: the log may be full until a recycling round frees space.
  adopted_payload_.assign(adopted.payload.begin(), adopted.payload.end());
  adopted_kind_ = adopted.header.kind;
  adopted_written_ = false;
  adopted_index_ = tail_.index;
  prepare_step_ = PrepareStep::accept_adopted;
  write_adopted();
}

void LeaderAgent::write_adopted() {
  if (adopted_written_ || !write_entry(adopted_kind_, adopted_payload_)) return;
  adopted_written_ = true;
  ++adopted_entries_;
}

// --- the fast path -------------------------------------------------------------------

int LeaderAgent::take_submissions() {
  const std::size_t room =
      config_.max_pending_commands - std::min<std::size_t>(pending_.record_count(), config_.max_pending_commands);
  return static_cast<int>(submissions_->drain(
      [this](std::span<const std::byte> record) {
        // A record the producer encoded with append_command(); one too large for an entry
        // could never be proposed, and would block every command behind it.
        for_each_command(record, [this](const Command& command) { last_taken_sequence_ = command.tag.sequence; });
        if (record.size() > config_.max_payload_bytes) return drop_command(record);
        // Only a leader proposes; a follower's front end forwards to the leader.
        if (!leading()) return drop_command(record);
        pending_.push_record(record);
      },
      room));
}

int LeaderAgent::propose_entries() {
  int entries = 0;
  while (!pending_.empty() && role_ == Role::steady && pipeline_has_room()) {
    // As many queued commands as fit in one entry, in order.
    const PendingCommands::Prefix batch = pending_.prefix_within(config_.max_payload_bytes);
    assert(batch.records > 0);  // propose() and take_submissions() refuse a record larger than an entry
    const auto bytes = static_cast<std::uint32_t>(batch.payload.size());
    if (!geometry_.place_entry(tail_.position, bytes, recycled_position_)) break;  // full
    const bool written = write_entry(EntryKind::commands, batch.payload);
    assert(written);
    static_cast<void>(written);
    pending_.pop(batch.records);
    ++entries;
  }
  return entries;
}

int LeaderAgent::write_no_ops() {
  // The indices an earlier reign may have written (to a minority, so the prepare step
  // did not see them) stay undecided until this reign writes them; until then that
  // leader cannot tell its submitters whether their commands were chosen. Commands decide
  // them too, so no-ops fill in only when none are waiting.
  int written = 0;
  while (tail_.index < decide_through_index_ && pending_.empty() && pipeline_has_room() &&
         write_entry(EntryKind::no_op, {})) {
    ++written;
  }
  return written;
}

bool LeaderAgent::pipeline_has_room() const {
  // An entry's staging slot is reused K entries later, and its bytes must stay untouched
  // until every acceptor still writing from it has completed: the window is measured from
  // the slowest confirmed acceptor, not from the commit point.
  std::uint64_t slowest = tail_.index - 1;
  for (const Acceptor& acceptor : acceptors_) {
    if (acceptor.confirmed) slowest = std::min(slowest, acceptor.acknowledged_index);
  }
  return tail_.index - 1 - slowest < config_.max_outstanding_entries;
}

bool LeaderAgent::write_entry(EntryKind kind, std::span<const std::byte> payload) {
  const auto placement =
      geometry_.place_entry(tail_.position, static_cast<std::uint32_t>(payload.size()), recycled_position_);
  if (!placement) return false;
  const std::size_t slot = tail_.index % config_.max_outstanding_entries;
  std::byte* const staging = staging_->data() + slot * staging_slot_bytes_;
  const std::size_t entry_bytes = encoded_entry_bytes(payload.size());
  // Piggyback the commit point: every index below committed_.index is chosen.
  const EntryHeader header{static_cast<std::uint32_t>(payload.size()), kind, proposal_, tail_.index,
                           committed_.index - 1};
  encode_entry(std::span(staging, entry_bytes), header, payload);
  std::byte* const marker = staging + entry_bytes;
  if (placement->wrap_marker_position) {
    const EntryHeader wrap{0, EntryKind::wrap, proposal_, tail_.index, committed_.index - 1};
    encode_entry(std::span(marker, encoded_entry_bytes(0)), wrap, {});
  }
  const bool inline_entry = entry_bytes <= fabric_.max_inline_bytes();
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    Acceptor& acceptor = acceptors_[i];
    if (!acceptor.confirmed) continue;
    if (placement->wrap_marker_position) {
      fabric::WriteRequest request;
      request.work_id = work_id(Operation::write_entry, i, 0);  // unsignaled: reports only failure
      request.remote = acceptor.link.log;
      request.remote_offset = log_layout::entry_area_offset + geometry_.place(*placement->wrap_marker_position);
      request.inline_payload = std::span<const std::byte>(marker, encoded_entry_bytes(0));
      request.signaled = false;
      if (!post_or_drop(i, acceptor.link.connection->post_write(request))) continue;
    }
    fabric::WriteRequest request;
    request.work_id = work_id(Operation::write_entry, i, tail_.index);
    request.remote = acceptor.link.log;
    request.remote_offset = log_layout::entry_area_offset + geometry_.place(placement->entry_position);
    if (inline_entry) {
      request.inline_payload = std::span<const std::byte>(staging, entry_bytes);
    } else {
      request.local_region = staging_.get();
      request.local_offset = slot * staging_slot_bytes_;
      request.length = static_cast<std::uint32_t>(entry_bytes);
    }
    post_or_drop(i, acceptor.link.connection->post_write(request));
  }
  if (role_ == Role::deposed) return true;  // consumed; the next leader decides its fate
  in_flight_.push_back(InFlightEntry{tail_.index, placement->next_position});
  tail_ = LogCursor{tail_.index + 1, placement->next_position};
  return true;
}

void LeaderAgent::advance_commit() {
  // The highest index acknowledged by a majority of acceptors (each acknowledges in order).
  std::array<std::uint64_t, max_replicas> acknowledged{};
  std::size_t count = 0;
  for (const Acceptor& acceptor : acceptors_) {
    if (acceptor.confirmed) acknowledged[count++] = acceptor.acknowledged_index;
  }
  const std::uint32_t needed = majority(config_.replica_count);
  if (count < needed) return;
  std::sort(acknowledged.begin(), acknowledged.begin() + static_cast<std::ptrdiff_t>(count), std::greater<>());
  const std::uint64_t chosen_through = acknowledged[needed - 1];
  while (!in_flight_.empty() && in_flight_.front().index <= chosen_through) {
    committed_ = LogCursor{in_flight_.front().index + 1, in_flight_.front().next_position};
    in_flight_.pop_front();
    ++progress_count_;
  }
}

int LeaderAgent::publish_commit_point(bool wrote_entries) {
  // Only when idle: while entries flow, each one carries the commit point. Idle means no
  // entry written for a while, not a drained pipeline: on shm an entry commits in the round
  // that writes it, so the pipeline is empty after every round, and a commit-point write
  // per entry would cost each command a second WRITE to every acceptor.
  if (wrote_entries || !in_flight_.empty() || !pending_.empty()) {
    idle_since_ns_.reset();
    return 0;
  }
  if (committed_ == published_) return 0;
  const std::uint64_t now = clock_.now_ns();
  if (!idle_since_ns_) idle_since_ns_ = now;
  if (now - *idle_since_ns_ < config_.commit_publish_delay_ns) return 0;
  write_cursor_to_confirmed(Operation::write_commit, log_layout::committed_offset, committed_);
  published_ = committed_;
  ++commit_points_published_;
  return 1;
}


// Recycling is lazy, with hysteresis: nothing is reclaimed until three quarters of the
// area are in use, and then only down to half of it. The newest half of the log stays
// readable, so a replica that restarts or resumes after a while can still be brought up
// to date from the log instead of needing a state transfer.
int LeaderAgent::start_recycling_round() {
  if (tail_.position - recycled_position_ <= geometry_.area_bytes() / 4 * 3) return 0;
  if (std::any_of(acceptors_.begin(), acceptors_.end(),
                  [](const Acceptor& acceptor) { return acceptor.applied_read_outstanding; })) {
    return 0;
  }
  int posted = 0;
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    Acceptor& acceptor = acceptors_[i];
    if (!acceptor.confirmed) continue;
    const auto status = post_header_read(i, Operation::read_applied, log_layout::applied_offset, encoded_cursor_bytes,
                                         cursor_scratch_offset(i));
    if (post_or_drop(i, status)) {
      acceptor.applied_read_outstanding = true;
      ++posted;
    }
  }
  return posted > 0 ? 1 : 0;
}

void LeaderAgent::finish_recycling_round() { finish_recycling_round_up_to(committed_.position); }

void LeaderAgent::publish_recycled_position() {
  // Posted before any entry that reuses the space, so on each connection it lands first:
  // an acceptor that has not applied that far learns it needs a state transfer.
  write_cursor_to_confirmed(Operation::write_commit, log_layout::recycled_offset,
                            LogCursor{committed_.index, recycled_position_});
}

void LeaderAgent::finish_recycling_round_up_to(std::uint64_t decided_position) {
  std::array<std::uint64_t, max_replicas> applied{};
  std::size_t count = 0;
  for (const Acceptor& acceptor : acceptors_) {
    if (acceptor.confirmed && acceptor.applied_position) applied[count++] = *acceptor.applied_position;
  }
  const std::uint32_t needed = majority(config_.replica_count);
  if (count < needed) return;
  std::sort(applied.begin(), applied.begin() + static_cast<std::ptrdiff_t>(count), std::greater<>());
  // A majority has applied everything below this; only committed entries are ever applied.
  const std::uint64_t keep_from = tail_.position > geometry_.area_bytes() / 2 ? tail_.position - geometry_.area_bytes() / 2 : 0;
  const std::uint64_t safe = std::min({applied[needed - 1], decided_position, keep_from});
  if (safe <= recycled_position_) return;
  recycled_position_ = safe;
  if (role_ == Role::steady || role_ == Role::preparing) publish_recycled_position();
}


// --- recovery (paper 4.3) ------------------------------------------------------------

int LeaderAgent::advance_recovery() {
  const std::size_t self = own_acceptor();
  if (recovery_step_ == RecoveryStep::catch_up) {
    if (catch_up_outstanding_) return 0;
    if (!acceptors_[self].confirmed || !acceptors_[catch_up_source_].confirmed) {
      role_ = Role::deposed;  // lost the source or the own log mid-copy: start over later
      return 1;
    }
    if (catch_up_writing_) {
      // The entry landed in this replica's log: move to the next one.
      catch_up_writing_ = false;
      if (catch_up_header_.kind != EntryKind::wrap) {
        ++caught_up_entries_;
        ++catch_up_cursor_.index;
      }
      catch_up_cursor_.position = geometry_.position_after(catch_up_cursor_.position, catch_up_header_);
      if (catch_up_cursor_.index < recovery_target_.index) {
        start_catch_up_read();
      } else {
        start_update_followers();
      }
      return 1;
    }
    // A read from the source landed in this replica's scratch window.
    const DecodedEntry entry = decode_entry(std::span<const std::byte>(scratch_for(self), scratch_window_bytes_));
    if (entry.state != EntryState::valid || entry.header.log_index != catch_up_cursor_.index) {
      // Recycled at the source already: this replica can lead only after a state transfer.
      // Say so in its own log (through the loopback link, like every write to it), so its
      // apply agent stops and the background plane takes it out until then.
      tell_left_behind(self);
      role_ = Role::deposed;
      return 1;
    }
    catch_up_header_ = entry.header;
    fabric::WriteRequest request;
    request.work_id = work_id(Operation::catch_up_write, self, 0);
    request.remote = acceptors_[self].link.log;
    request.remote_offset = log_layout::entry_area_offset + geometry_.place(catch_up_cursor_.position);
    request.local_region = scratch_.get();
    request.local_offset = self * scratch_window_bytes_;
    request.length = static_cast<std::uint32_t>(
        encoded_entry_bytes(entry.header.kind == EntryKind::wrap ? 0 : entry.header.payload_bytes));
    if (post_or_drop(self, acceptors_[self].link.connection->post_write(request))) {
      catch_up_outstanding_ = true;
      catch_up_writing_ = true;
    }
    return 1;
  }

  if (!prepare_step_done()) return 0;
  std::uint32_t succeeded = 0;
  for (const Acceptor& acceptor : acceptors_) succeeded += acceptor.confirmed && acceptor.step_succeeded ? 1 : 0;
  if (succeeded < majority(config_.replica_count) || !acceptors_[self].confirmed) {
    role_ = Role::deposed;
    return 1;
  }
  if (recovery_step_ == RecoveryStep::read_cursors) {
    recovery_target_ = log_start;
    for (std::size_t i = 0; i < acceptors_.size(); ++i) {
      Acceptor& acceptor = acceptors_[i];
      if (!acceptor.confirmed || !acceptor.step_succeeded) continue;
      const LogCursor first_undecided = first_undecided_in(i);
      acceptor.first_undecided = first_undecided;
      if (first_undecided.index > recovery_target_.index) {
        recovery_target_ = first_undecided;
        catch_up_source_ = i;
      }
      const auto applied = decode_cursor(std::span(
          scratch_for(i) + (log_layout::applied_offset - log_layout::aligned_offset), encoded_cursor_bytes));
      acceptor.applied_position = applied ? applied->position : 0;
    }
    // Start from what the previous leaders declared reusable here (a majority had applied
    // it); the next recycling round reclaims more when space runs short.
    const auto published = own_view_->read_cursor(log_layout::recycled_offset);
    recycled_position_ = published ? std::min(published->position, recovery_target_.position) : 0;
    catch_up_cursor_ = acceptors_[self].first_undecided;
    if (catch_up_cursor_.index < recovery_target_.index) {
      recovery_step_ = RecoveryStep::catch_up;
      start_catch_up_read();
    } else {
      start_update_followers();
    }
    return 1;
  }
  // update_followers is done: every confirmed log agrees up to the target.
  for (Acceptor& acceptor : acceptors_) acceptor.acknowledged_index = recovery_target_.index - 1;
  tail_ = recovery_target_;
  committed_ = recovery_target_;
  published_ = recovery_target_;
  role_ = Role::preparing;
  start_read_min_proposals();
  return 1;
}

void LeaderAgent::start_catch_up_read() {
  const std::size_t self = own_acceptor();
  catch_up_cursor_.position = geometry_.readable_position(catch_up_cursor_.position);
  Acceptor& source = acceptors_[catch_up_source_];
  fabric::ReadRequest request;
  request.work_id = work_id(Operation::catch_up_read, catch_up_source_, 0);
  request.remote = source.link.log;
  request.remote_offset = log_layout::entry_area_offset + geometry_.place(catch_up_cursor_.position);
  request.local_region = scratch_.get();
  request.local_offset = self * scratch_window_bytes_;
  request.length = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(scratch_window_bytes_, geometry_.bytes_before_end(catch_up_cursor_.position)));
  if (post_or_drop(catch_up_source_, source.link.connection->post_read(request))) catch_up_outstanding_ = true;
}

bool LeaderAgent::own_log_holds(LogCursor from, const LogCursor& to) {
  while (from.index < to.index) {
    const auto entry = own_view_->read_entry(from.position, from.index, own_scratch_);
    if (!entry) return false;
    if (entry->header.kind != EntryKind::wrap) ++from.index;
    from.position = geometry_.position_after(entry->position, entry->header);
  }
  return geometry_.readable_position(from.position) == geometry_.readable_position(to.position);
}

void LeaderAgent::start_update_followers() {
  recovery_step_ = RecoveryStep::update_followers;
  const std::size_t self = own_acceptor();
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    Acceptor& acceptor = acceptors_[i];
    acceptor.step_succeeded = acceptor.confirmed;
    if (!acceptor.confirmed) continue;
    if (i != self && acceptor.first_undecided.index < recovery_target_.index) {
      // Copy the decided entries it lacks from this replica's own log, which now holds
      // them; if they were recycled here already, it needs a state transfer instead.
      const std::uint64_t from = acceptor.first_undecided.position;
      const std::uint64_t to = recovery_target_.position;
      if (from < recycled_position_ || to - from > geometry_.area_bytes() ||
          !own_log_holds(acceptor.first_undecided, recovery_target_)) {
        ++acceptors_left_behind_;
        tell_left_behind(i);
        drop_acceptor(i);
        if (role_ == Role::deposed) return;
        continue;
      }
      const auto copied = post_range_copy(i, Operation::update_write, from, to);
      acceptor.step_operations += copied.posted;
      if (!post_or_drop(i, copied.status)) continue;
    }
    // Every confirmed log now agrees up to the target: say so in its header, with the
    // space that may be reused from now on.
    if (recycled_position_ > 0) {
      const LogCursor recycled{recovery_target_.index, recycled_position_};
      if (post_or_drop(i, post_cursor_write(i, Operation::update_write, log_layout::recycled_offset, recycled))) {
        ++acceptor.step_operations;
      }
      if (!acceptor.confirmed) continue;
    }
    if (post_or_drop(i, post_cursor_write(i, Operation::update_write, log_layout::aligned_offset, recovery_target_))) {
      ++acceptor.step_operations;
    }
  }
  for (Acceptor& acceptor : acceptors_) {
    if (acceptor.confirmed && acceptor.step_operations > 0) acceptor.step_succeeded = false;
  }
}


// --- admitting acceptors after the start ---------------------------------------------

void LeaderAgent::admit(fabric::NodeId node_id) {
  for (std::size_t i = 0; i < acceptors_.size(); ++i) {
    if (acceptors_[i].link.node_id != node_id) continue;
    if (acceptors_[i].confirmed || std::find(joining_.begin(), joining_.end(), i) != joining_.end()) return;
    joining_.push_back(i);
  }
}

bool LeaderAgent::is_confirmed(fabric::NodeId node_id) const {
  return std::any_of(acceptors_.begin(), acceptors_.end(), [&](const Acceptor& acceptor) {
    return acceptor.link.node_id == node_id && acceptor.confirmed;
  });
}

int LeaderAgent::advance_join() {
  if (joining_.empty() || !in_flight_.empty()) return 0;
  const std::size_t index = joining_.front();
  Acceptor& joiner = acceptors_[index];
  if (join_operations_ > 0) return 0;
  if (join_failed_) {
    join_failed_ = false;
    join_started_ = false;
    joining_.pop_front();  // it may be granted again later
    return 1;
  }
  if (!join_started_) {
    // Everything committed is in this replica's log; read how far the joiner is decided.
    join_started_ = true;
    const auto status = post_header_read(index, Operation::join_read, log_layout::aligned_offset, cursors_read_bytes,
                                         index * scratch_window_bytes_);
    if (status == fabric::PostStatus::posted) {
      join_operations_ = 1;
    } else {
      join_failed_ = true;
    }
    joiner.first_undecided = LogCursor{0, 0};  // marks "cursors requested"
    return 1;
  }
  if (joiner.first_undecided.index == 0) {
    const LogCursor first_undecided = first_undecided_in(index);
    joiner.first_undecided = first_undecided;
    if (first_undecided.index < committed_.index) {
      // Below the recycled position the space may be rewritten by the very next entry:
      // a joiner that has not applied that far cannot be brought up to date from the log.
      if (first_undecided.position < recycled_position_ ||
          committed_.position - first_undecided.position > geometry_.area_bytes() ||
          !own_log_holds(first_undecided, committed_)) {
        ++acceptors_left_behind_;
        tell_left_behind(index);
        joiner.first_undecided = log_start;
        join_started_ = false;
        joining_.pop_front();
        return 1;
      }
      const auto copied = post_range_copy(index, Operation::join_write, first_undecided.position, committed_.position);
      join_operations_ += copied.posted;
      if (copied.status != fabric::PostStatus::posted) {
        join_failed_ = true;
        return 1;
      }
    }
    if (post_cursor_write(index, Operation::join_write, log_layout::aligned_offset, committed_) !=
        fabric::PostStatus::posted) {
      join_failed_ = true;
      return 1;
    }
    ++join_operations_;
    joiner.first_undecided = committed_;
    return 1;
  }
  // Its log agrees with this one up to the commit point: from now on it gets every entry.
  joiner.confirmed = true;
  joiner.acknowledged_index = committed_.index - 1;
  joiner.step_operations = 0;
  joiner.applied_read_outstanding = false;
  joiner.applied_position.reset();
  join_started_ = false;
  joining_.pop_front();
  return 1;
}


std::string LeaderAgent::describe() const {
  std::string out = "role " + std::to_string(static_cast<int>(role_)) + " proposal " + std::to_string(proposal_) +
                    " tail " + std::to_string(tail_.index) + "@" + std::to_string(tail_.position) + " committed " +
                    std::to_string(committed_.index) + "@" + std::to_string(committed_.position) + " recycled " +
                    std::to_string(recycled_position_) + " in flight " + std::to_string(in_flight_.size()) +
                    " pending " + std::to_string(pending_.record_count()) + " joining " + std::to_string(joining_.size()) +
                    " acceptors";
  for (const Acceptor& acceptor : acceptors_) {
    out += " [" + std::to_string(acceptor.link.node_id) + (acceptor.confirmed ? " confirmed" : "") + " acked " +
           std::to_string(acceptor.acknowledged_index) + " applied " +
           (acceptor.applied_position ? std::to_string(*acceptor.applied_position) : std::string("?")) +
           (acceptor.applied_read_outstanding ? " reading" : "") + "]";
  }
  return out;
}


void LeaderAgent::tell_left_behind(std::size_t index) {
  // Best effort (the acceptor granted this leader write access, so it normally lands): the
  // owner learns from it that it cannot catch up from the log and needs a state transfer.
  // Past everything this leader knows decided: the acceptor has not applied that far.
  const LogCursor decided = role_ == Role::recovering ? recovery_target_ : committed_;
  const LogCursor recycled{decided.index, std::max({recycled_position_, decided.position, std::uint64_t{1}})};
  if (post_cursor_write(index, Operation::join_write, log_layout::recycled_offset, recycled) ==
      fabric::PostStatus::posted) {
    ++join_operations_;
  }
}

}  // namespace mu::engine
