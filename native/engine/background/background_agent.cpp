#include "engine/background/background_agent.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <cstring>
#include <stdexcept>

#include "engine/background/background_layout.hpp"
#include "engine/log_cursor.hpp"
#include "engine/quorum.hpp"

namespace mu::engine {
namespace {

// work_id: operation (8 bits) | peer (16)
std::uint8_t operation_of(std::uint64_t work_id) { return static_cast<std::uint8_t>(work_id >> 56); }
fabric::NodeId peer_of(std::uint64_t work_id) { return static_cast<fabric::NodeId>(work_id & 0xffff); }

}  // namespace

BackgroundAgent::BackgroundAgent(const BackgroundConfig& config, fabric::Fabric& fabric,
                                 std::shared_ptr<fabric::CompletionQueue> queue, std::vector<BackgroundLink> links,
                                 fabric::LocalRegion& own_background, std::vector<fabric::Connection*> log_access,
                                 LeaderAgent& leader, const ApplyAgent& apply, const Clock& clock)
    : config_(config),
      fabric_(fabric),
      queue_(std::move(queue)),
      links_(std::move(links)),
      own_background_(own_background),
      log_access_(std::move(log_access)),
      leader_(leader),
      apply_(apply),
      clock_(clock),
      detector_(config.detector, config.replica_count, config.self),
      read_outstanding_(config.replica_count, false),
      read_posted_ns_(config.replica_count, 0),
      peer_holder_(config.replica_count),
      peer_leading_(config.replica_count, false),
      peer_holder_read_ns_(config.replica_count, 0),
      link_broken_(config.replica_count, false),
      link_absent_(config.replica_count, false),
      link_epoch_(config.replica_count, 0),
      link_retry_at_ns_(config.replica_count, 0),
      confirmed_since_ns_(config.replica_count, 0),
      served_sequence_(config.replica_count, 0),
      admitted_sequence_(config.replica_count, 0) {
  if (links_.size() != config_.replica_count || log_access_.size() != config_.replica_count) {
    throw std::invalid_argument("background: need one link and one log access end per replica");
  }
  for (std::uint32_t r = 0; r < config_.replica_count; ++r) {
    if (links_[r].node_id != r || links_[r].connection == nullptr || links_[r].background == nullptr ||
        log_access_[r] == nullptr) {
      throw std::invalid_argument("background: links must be complete and ordered by replica id");
    }
  }
  if (own_background_.size_bytes() < background_layout::region_bytes) {
    throw std::invalid_argument("background: the background region is too small");
  }
  scratch_ = fabric_.register_region(64 * config_.replica_count);
}

std::uint64_t BackgroundAgent::work_id(Operation operation, fabric::NodeId peer) const {
  return (static_cast<std::uint64_t>(operation) << 56) | (static_cast<std::uint64_t>(link_epoch_[peer]) << 16) | peer;
}

void BackgroundAgent::cycle_failed_background_ends() {
  // A peer's refused operation puts this end in the error state too (RC semantics), and a
  // peer that cycles its own end would then fail against this one forever: cycle it here,
  // the other half of the paired reset. Its access stays open: anyone may read heartbeats.
  for (fabric::Connection* end : background_access_) {
    if (end->state() != fabric::ConnectionState::error) continue;
    const fabric::EndpointInfo remote = end->remote_endpoint();
    end->reset();
    ++background_ends_cycled_;
    try {
      end->connect(remote, fabric::access_remote_all);
    } catch (const fabric::FabricError&) {
      // unreachable peer: left unconnected, cycled again when it comes back in error
    }
  }
}

void BackgroundAgent::retry_link(fabric::NodeId peer) {
  // A link breaks when its peer dies, or restarts before this end was reconnected to the
  // new incarnation (the restarted side connects first). Cycle this end now and then: once
  // both ends are fresh, reads succeed again. Stale completions carry the old link epoch.
  // A peer never heard from has no remote end to cycle toward: its first card does it.
  if (link_absent_[peer]) return;
  if (link_retry_at_ns_[peer] == 0) {
    link_retry_at_ns_[peer] = now_ns_ + link_retry_interval_ns();
    return;
  }
  if (now_ns_ < link_retry_at_ns_[peer]) return;
  fabric::Connection& connection = *links_[peer].connection;
  const fabric::EndpointInfo remote = connection.remote_endpoint();
  connection.reset();
  ++link_epoch_[peer];
  ++links_retried_;
  link_retry_at_ns_[peer] = 0;
  try {
    connection.connect(remote, fabric::access_none);
  } catch (const fabric::FabricError&) {
    return;  // not reachable at all (a restarting peer between its old files and new ones)
  }
  link_broken_[peer] = false;
  read_outstanding_[peer] = false;
}

std::uint64_t BackgroundAgent::link_retry_interval_ns() const { return 10 * config_.detector.read_interval_ns; }

void BackgroundAgent::peer_absent(fabric::NodeId peer) {
  assert(peer < config_.replica_count && peer != config_.self);
  link_absent_[peer] = true;
  link_broken_[peer] = true;
}

void BackgroundAgent::hold_link(fabric::NodeId peer, bool held) {
  if (held) {
    peer_absent(peer);
    return;
  }
  assert(peer < config_.replica_count && peer != config_.self);
  // Released: the peer has reset its ends too; read it from the next round on.
  link_absent_[peer] = false;
  link_broken_[peer] = false;
  link_retry_at_ns_[peer] = 0;
  read_outstanding_[peer] = false;
}

void BackgroundAgent::peer_restarted(fabric::NodeId peer, const fabric::RemoteRegion* background) {
  assert(peer < config_.replica_count && peer != config_.self);
  links_[peer].background = background;
  ++link_epoch_[peer];
  link_broken_[peer] = false;
  link_absent_[peer] = false;
  link_retry_at_ns_[peer] = 0;
  read_outstanding_[peer] = false;
  peer_holder_[peer].reset();
  peer_leading_[peer] = false;
  served_sequence_[peer] = 0;
  admitted_sequence_[peer] = 0;
  std::memset(own_background_.data() + background_layout::request_offset(peer), 0, encoded_cursor_bytes);
  std::memset(own_background_.data() + background_layout::ack_offset(peer), 0, encoded_cursor_bytes);
  if (serving_ && serving_->requester == peer) serving_.reset();
  if (holder_ == peer) {
    // Its log connection end was reset to no access: nobody holds this log now.
    holder_.reset();
    publish_holder();
  }
}

int BackgroundAgent::do_work() {
  // Heartbeats, detector reads and their completions are periodic chores: they do not
  // count as work, so an idle replica's runner may park between them (counting them would
  // keep every runner spinning, three replicas on two cores starving each other).
  std::array<fabric::Completion, 16> completions;
  const std::size_t polled = queue_->poll(completions);
  for (std::size_t i = 0; i < polled; ++i) handle_completion(completions[i]);
  now_ns_ = clock_.now_ns();  // one clock read per round: they cost tens of ns each here
  // Fate sharing measures how long work has waited without progress: from the last
  // progress, or from when work appeared after an idle spell, not from a commit long ago.
  if (leader_.progress_count() != seen_progress_count_ || !leader_.has_work_in_flight()) {
    seen_progress_count_ = leader_.progress_count();
    leader_progress_ns_ = now_ns_;
  }
  beat();
  read_heartbeats();
  // Permission requests and elections are rare: look at them every few microseconds, not
  // every round, which keeps this agent's share of a replication round small.
  if (!serving_ && now_ns_ < next_housekeeping_ns_) return 0;
  next_housekeeping_ns_ = now_ns_ + config_.housekeeping_interval_ns;
  cycle_failed_background_ends();
  int work = serve_permissions();
  work += run_candidacy();
  publish_leading();
  return work;
}

void BackgroundAgent::handle_completion(const fabric::Completion& completion) {
  const fabric::NodeId peer = peer_of(completion.work_id);
  if (peer >= config_.replica_count) return;
  // From a connection to a previous incarnation of the peer (reset since).
  if (static_cast<std::uint32_t>((completion.work_id >> 16) & 0xffff'ffff) != link_epoch_[peer]) return;
  const bool ok = completion.status == fabric::CompletionStatus::success;
  if (!ok) link_broken_[peer] = true;  // a dead or restarted peer: its reads fail from now on
  if (static_cast<Operation>(operation_of(completion.work_id)) == Operation::read_heartbeat) {
    read_outstanding_[peer] = false;
    std::optional<std::uint64_t> counter;
    if (ok) {
      std::uint64_t value = 0;
      std::memcpy(&value, scratch_->data() + 64 * peer, sizeof value);
      counter = value;
      std::uint64_t holder = 0;
      std::memcpy(&holder, scratch_->data() + 64 * peer + background_layout::holder_offset, sizeof holder);
      peer_holder_[peer] = holder == 0 || holder > config_.replica_count
                               ? std::nullopt
                               : std::optional<fabric::NodeId>(static_cast<fabric::NodeId>(holder - 1));
      peer_holder_read_ns_[peer] = read_posted_ns_[peer];
      std::uint64_t leading = 0;
      std::memcpy(&leading, scratch_->data() + 64 * peer + background_layout::leading_offset, sizeof leading);
      peer_leading_[peer] = leading == 1;
    }
    detector_.observe(peer, counter);
  }
}

// --- heartbeat and failure detection -------------------------------------------------

int BackgroundAgent::beat() {
  const std::uint64_t now = now_ns_;
  if (now - last_beat_ns_ < config_.detector.heartbeat_interval_ns && heartbeat_ != 0) return 0;
  // Out for a state transfer: it may not lead or grant, so it must not look like a live
  // candidate either (the lowest live id is elected, and it would never stand).
  if (apply_.needs_state_transfer()) {
    ++beats_withheld_;
    return 0;
  }
  // Fate sharing: a leader that cannot make progress must not look healthy.
  if (leader_.role() == LeaderAgent::Role::steady && leader_.has_work_in_flight() &&
      now - leader_progress_ns_ > config_.fate_sharing_timeout_ns) {
    ++beats_withheld_;
    return 0;
  }
  ++heartbeat_;
  last_beat_ns_ = now;
  std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(own_background_.data() +
                                                                   background_layout::heartbeat_offset))
      .store(heartbeat_, std::memory_order_release);
  return 1;
}

int BackgroundAgent::read_heartbeats() {
  const std::uint64_t now = now_ns_;
  if (now < next_read_ns_) return 0;
  // Reads keep to a grid: each is due an interval after the previous one was due, not
  // after it ran, so a runner that wakes a little late (a park, a long round) does not
  // stretch the detection window by that lateness at every one of its reads. A reader that
  // fell more than half an interval behind (its own thread stalled) starts the grid afresh
  // instead of firing reads back to back, faster than a healthy peer's heartbeat moves.
  const std::uint64_t interval = config_.detector.read_interval_ns;
  next_read_ns_ = std::max(next_read_ns_ + interval, now + interval / 2);
  ++heartbeat_read_rounds_;
  for (fabric::NodeId peer = 0; peer < config_.replica_count; ++peer) {
    if (peer == config_.self) continue;
    if (link_broken_[peer]) {
      detector_.observe(peer, std::nullopt);
      retry_link(peer);
      continue;
    }
    if (read_outstanding_[peer]) {
      // Reads come at least half an interval apart (see above): one younger than a whole
      // interval is not late yet, and this round's read of the peer is skipped.
      if (now - read_posted_ns_[peer] < config_.detector.read_interval_ns) continue;
      ++reads_overdue_;
      // The previous read has not come back within a whole interval: that says as much as
      // a counter that did not move.
      detector_.observe(peer, std::nullopt);
      continue;
    }
    fabric::ReadRequest request;
    request.work_id = work_id(Operation::read_heartbeat, peer);
    request.remote = links_[peer].background;
    request.remote_offset = background_layout::heartbeat_offset;
    request.local_region = scratch_.get();
    request.local_offset = 64 * peer;
    request.length = background_layout::status_bytes;  // heartbeat, holder, leading
    if (links_[peer].connection->post_read(request) == fabric::PostStatus::posted) {
      read_outstanding_[peer] = true;
      read_posted_ns_[peer] = now;
    } else {
      link_broken_[peer] = true;
    }
  }
  return 1;
}

// --- the permission manager ------------------------------------------------------------

fabric::ChangeStatus BackgroundAgent::change_access(fabric::Connection& end, fabric::AccessFlags access) {
  fabric::ChangeStatus status = end.change_access(access, fabric::AccessPath::fast);
  if (status == fabric::ChangeStatus::failed) status = end.change_access(access, fabric::AccessPath::robust);
  return status;
}

bool BackgroundAgent::leading() const {
  if (candidacy_ == Candidacy::requesting) return true;
  if (candidacy_ != Candidacy::leading) return false;
  const auto role = leader_.role();
  return role != LeaderAgent::Role::deposed && role != LeaderAgent::Role::follower;
}

bool BackgroundAgent::holder_leads() const {
  if (!holder_) return false;
  if (*holder_ == config_.self) return leading();
  // Alive, and saying that it leads (or stands for election): one that stepped down
  // (deposed, gave up, or out for a state transfer) says it does not.
  return detector_.alive(*holder_) && peer_leading_[*holder_];
}

bool BackgroundAgent::may_grant(fabric::NodeId requester) const {
  if (!holder_ || *holder_ == requester) return true;
  return !holder_leads();
}

int BackgroundAgent::serve_permissions() {
  if (!serving_ && apply_.needs_state_transfer()) {
    // Out of the cluster until a state transfer: nobody may write this log meanwhile.
    if (!holder_) return 0;
    for (fabric::Connection* end : log_access_) {
      if (end->access() != fabric::access_none || end->state() == fabric::ConnectionState::error) {
        change_access(*end, fabric::access_none);
      }
    }
    holder_.reset();
    publish_holder();
    return 1;
  }
  if (!serving_) {
    // The lowest-id requester with a request not yet served, if this replica would follow it.
    for (fabric::NodeId requester = 0; requester < config_.replica_count; ++requester) {
      const auto request = decode_cursor(std::span<const std::byte>(
          own_background_.data() + background_layout::request_offset(requester), encoded_cursor_bytes));
      if (!request || request->index <= served_sequence_[requester]) continue;
      if (requester != config_.self && !may_grant(requester)) continue;
      if (requester == config_.self && holder_ && *holder_ != config_.self && holder_leads()) continue;
      serving_ = Serving{requester, request->index, false};
      for (fabric::NodeId other = 0; other < config_.replica_count; ++other) {
        if (other == requester) continue;
        fabric::Connection& end = *log_access_[other];
        if (end.access() != fabric::access_none || end.state() == fabric::ConnectionState::error) {
          change_access(end, fabric::access_none);
        }
      }
      break;
    }
    if (!serving_) return 0;
  }
  Serving& serving = *serving_;
  if (!serving.granting) {
    for (fabric::NodeId other = 0; other < config_.replica_count; ++other) {
      if (other != serving.requester && !log_access_[other]->access_change_settled()) return 0;
    }
    // Nothing of any other writer can land any more: now the requester may write.
    change_access(*log_access_[serving.requester], fabric::access_remote_all);
    serving.granting = true;
  }
  if (!log_access_[serving.requester]->access_change_settled()) return 0;
  holder_ = serving.requester;
  publish_holder();
  served_sequence_[serving.requester] = serving.sequence;
  ++grants_served_;
  const EncodedCursor ack = encode_cursor(LogCursor{serving.sequence, 1});
  fabric::WriteRequest request;
  request.work_id = work_id(Operation::write_ack, serving.requester);
  request.remote = links_[serving.requester].background;
  request.remote_offset = background_layout::ack_offset(config_.self);
  request.inline_payload = ack;
  if (links_[serving.requester].connection->post_write(request) != fabric::PostStatus::posted) {
    link_broken_[serving.requester] = true;
  }
  serving_.reset();
  return 1;
}

// --- election ----------------------------------------------------------------------

fabric::NodeId BackgroundAgent::leader_to_follow() const {
  // Stick with the holder while it is alive and says it leads.
  if (holder_ && *holder_ != config_.self && holder_leads()) return *holder_;
  // Someone alive already says it leads: follow it rather than compete, whatever its id
  // (a replica that resumes after a pause, or recovers from a false suspicion, must not
  // keep standing against a leader that a majority follows).
  for (fabric::NodeId replica = 0; replica < config_.replica_count; ++replica) {
    if (replica != config_.self && detector_.alive(replica) && peer_leading_[replica]) return replica;
  }
  for (fabric::NodeId replica = 0; replica < config_.replica_count; ++replica) {
    if (detector_.alive(replica)) return replica;
  }
  return config_.self;  // unreachable: a replica always considers itself alive
}

bool BackgroundAgent::log_closed() {
  if (holder_ || serving_) return false;
  for (fabric::Connection* end : log_access_) {
    if ((end->access() & fabric::access_remote_write) != 0 || !end->access_change_settled()) return false;
  }
  return true;
}

void BackgroundAgent::publish_holder() {
  const std::uint64_t word = holder_ ? std::uint64_t{*holder_} + 1 : 0;
  std::atomic_ref<std::uint64_t>(
      *reinterpret_cast<std::uint64_t*>(own_background_.data() + background_layout::holder_offset))
      .store(word, std::memory_order_release);
}

void BackgroundAgent::publish_leading() {
  const bool now_leading = leading();
  if (now_leading == published_leading_) return;
  published_leading_ = now_leading;
  std::atomic_ref<std::uint64_t>(
      *reinterpret_cast<std::uint64_t*>(own_background_.data() + background_layout::leading_offset))
      .store(now_leading ? 1 : 0, std::memory_order_release);
}

bool BackgroundAgent::replaced() const {
  // Only reads posted after leadership began count: earlier ones may predate the grants.
  std::uint32_t naming_others = 0;
  for (fabric::NodeId peer = 0; peer < config_.replica_count; ++peer) {
    if (peer == config_.self || peer_holder_read_ns_[peer] <= leading_since_ns_) continue;
    if (peer_holder_[peer] && *peer_holder_[peer] != config_.self) ++naming_others;
  }
  // This replica names itself; it is replaced when it cannot count on a majority any more.
  return config_.replica_count - naming_others < majority(config_.replica_count);
}

void BackgroundAgent::back_off() {
  candidacy_ = Candidacy::idle;
  backoff_until_ns_ = now_ns_ + config_.candidate_backoff_ns * (1 + config_.self);
}

int BackgroundAgent::run_candidacy() {
  const std::uint64_t now = now_ns_;
  switch (candidacy_) {
    case Candidacy::idle: {
      if (now < backoff_until_ns_ || leader_to_follow() != config_.self || apply_.needs_state_transfer()) return 0;
      leader_.reset_broken_connections();
      ++request_sequence_;
      const EncodedCursor request_word = encode_cursor(LogCursor{request_sequence_, 0});
      for (fabric::NodeId replica = 0; replica < config_.replica_count; ++replica) {
        if (link_broken_[replica]) continue;
        fabric::WriteRequest request;
        request.work_id = work_id(Operation::write_request, replica);
        request.remote = links_[replica].background;
        request.remote_offset = background_layout::request_offset(config_.self);
        request.inline_payload = request_word;
        if (links_[replica].connection->post_write(request) != fabric::PostStatus::posted) link_broken_[replica] = true;
      }
      candidacy_ = Candidacy::requesting;
      requested_at_ns_ = now;
      ++stood_;
      return 1;
    }
    case Candidacy::requesting: {
      std::vector<fabric::NodeId> granted;
      for (fabric::NodeId grantor = 0; grantor < config_.replica_count; ++grantor) {
        const auto ack = decode_cursor(std::span<const std::byte>(
            own_background_.data() + background_layout::ack_offset(grantor), encoded_cursor_bytes));
        if (ack && ack->index == request_sequence_) granted.push_back(grantor);
      }
      const bool self_granted =
          std::find(granted.begin(), granted.end(), config_.self) != granted.end();
      if (granted.size() >= majority(config_.replica_count) && self_granted) {
        leader_.lead(granted);
        candidacy_ = Candidacy::leading;
        leading_since_ns_ = now;
        std::fill(confirmed_since_ns_.begin(), confirmed_since_ns_.end(), now);
        return 1;
      }
      if (now - requested_at_ns_ > config_.candidate_timeout_ns) {
        ++timed_out_;
        back_off();
      }
      return 0;
    }
    case Candidacy::leading: {
      if (leader_.role() == LeaderAgent::Role::deposed || replaced() || apply_.needs_state_transfer()) {
        ++(leader_.role() == LeaderAgent::Role::deposed ? stepped_down_deposed_ : stepped_down_replaced_);
        // Someone else holds a majority of the logs: follow, and let this log go to them.
        leader_.step_down();
        back_off();
        return 1;
      }
      // A replica that took its log back (it stood for election itself, say) says so in
      // its published holder word; an idle leader would otherwise learn it only from its
      // next failed write, and keep counting that log meanwhile. Only reads posted after
      // the grant count (earlier ones may predate it).
      for (fabric::NodeId grantor = 0; grantor < config_.replica_count; ++grantor) {
        if (grantor == config_.self || !leader_.is_confirmed(grantor)) continue;
        if (peer_holder_read_ns_[grantor] <= confirmed_since_ns_[grantor]) continue;
        if (peer_holder_[grantor] == config_.self) continue;
        ++grants_withdrawn_;
        leader_.lose_acceptor(grantor);
      }
      // Grants that arrive after leadership began (late, or from a replica that resumed):
      // the leader brings that log up to date and adds it, once per grant.
      bool someone_missing = false;
      for (fabric::NodeId grantor = 0; grantor < config_.replica_count; ++grantor) {
        if (leader_.is_confirmed(grantor)) continue;
        someone_missing = true;
        const auto ack = decode_cursor(std::span<const std::byte>(
            own_background_.data() + background_layout::ack_offset(grantor), encoded_cursor_bytes));
        if (ack && ack->index == request_sequence_ && admitted_sequence_[grantor] != request_sequence_) {
          admitted_sequence_[grantor] = request_sequence_;
          confirmed_since_ns_[grantor] = now;
          leader_.admit(grantor);
        }
      }
      // A replica that took its log back (it suspected this leader for a while) or whose
      // grant was lost grants again only to a new request: ask the missing ones again now
      // and then.
      if (someone_missing && now - requested_at_ns_ > config_.candidate_timeout_ns) {
        // Their ends of the log connections may be in the error state from a refused write;
        // the grant cycles the far end, so cycle this one first (resets are paired).
        leader_.reset_broken_connections();
        ++request_sequence_;
        requested_at_ns_ = now;
        const EncodedCursor request_word = encode_cursor(LogCursor{request_sequence_, 0});
        for (fabric::NodeId replica = 0; replica < config_.replica_count; ++replica) {
          if (link_broken_[replica] || leader_.is_confirmed(replica)) continue;
          fabric::WriteRequest request;
          request.work_id = work_id(Operation::write_request, replica);
          request.remote = links_[replica].background;
          request.remote_offset = background_layout::request_offset(config_.self);
          request.inline_payload = request_word;
          if (links_[replica].connection->post_write(request) != fabric::PostStatus::posted) {
            link_broken_[replica] = true;
          }
        }
        return 1;
      }
      return 0;
    }
  }
  return 0;
}

}  // namespace mu::engine

namespace mu::engine {

std::string BackgroundAgent::describe() const {
  std::string out = "stood " + std::to_string(stood_) + " timed out " + std::to_string(timed_out_) + " deposed " +
                    std::to_string(stepped_down_deposed_) + " replaced " + std::to_string(stepped_down_replaced_) +
                    " heartbeat " + std::to_string(heartbeat_) + " withheld " + std::to_string(beats_withheld_) + " overdue " + std::to_string(reads_overdue_) + " links retried " + std::to_string(links_retried_) + " ends cycled " + std::to_string(background_ends_cycled_) + " grants withdrawn " + std::to_string(grants_withdrawn_) + " candidacy " + std::to_string(static_cast<int>(candidacy_)) + " request " +
                    std::to_string(request_sequence_) + " holder " +
                    (holder_ ? std::to_string(*holder_) : std::string("none")) + " peers";
  for (fabric::NodeId peer = 0; peer < config_.replica_count; ++peer) {
    out += " [" + std::to_string(peer) + " score " + std::to_string(detector_.score(peer)) +
           (link_broken_[peer] ? " broken" : "") + " served " + std::to_string(served_sequence_[peer]) + " admitted " +
           std::to_string(admitted_sequence_[peer]) + "]";
  }
  return out;
}

}  // namespace mu::engine
