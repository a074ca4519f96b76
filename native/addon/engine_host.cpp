#include "addon/engine_host.hpp"

#include <cstring>
#include <optional>
#include <stdexcept>

#include "engine/runtime/idle_strategy.hpp"

namespace mu::addon {

// The last agent of every round on the engine thread: moves queued events into the ring,
// reports role changes, refreshes the status snapshot and tells the owner.
class EngineHost::Bridge final : public engine::Agent {
 public:
  explicit Bridge(EngineHost& host) : host_(host) {}
  std::string_view name() const override { return "host bridge"; }
  int do_work() override {
    host_.apply_reconnects();
    host_.apply_state_transfer_requests();
    host_.flush_overflow();
    engine::Replica& replica = *host_.replica_;
    const std::uint32_t role_detail = role_detail_of(replica);
    const bool role_changed = role_detail != host_.last_role_detail_;
    if (role_changed) {
      host_.last_role_detail_ = role_detail;
      host_.emit(EventKind::role, role_detail, replica.leader().proposal());
    }
    // No-op entries are not delivered, so the owner cannot see the apply agent pass them.
    while (!host_.horizons_.empty() && replica.apply().applied().index >= host_.horizons_.front().next_index) {
      host_.emit(EventKind::fates_known, 0, host_.horizons_.front().last_taken_sequence);
      host_.horizons_.pop_front();
    }
    if (replica.apply().needs_state_transfer() && !host_.reported_state_transfer_) {
      host_.reported_state_transfer_ = true;
      host_.emit(EventKind::needs_state_transfer, 0, replica.apply().applied().index);
    }
    // A clock read every 64 rounds is enough for a snapshot refreshed every millisecond.
    if (role_changed || ++rounds_ % 64 == 0) host_.refresh_status(role_changed);
    // Work is what was pushed this round: a follower holding its notification back for a
    // while is idle meanwhile (counting the held records as work kept its thread spinning).
    const std::uint64_t pushed = host_.pushes_ - pushes_seen_;
    pushes_seen_ = host_.pushes_;
    host_.notify_if_needed();
    return pushed > 0 ? 1 : 0;
  }

  static std::uint32_t role_detail_of(engine::Replica& replica) {
    const auto holder = replica.background().holder();
    return static_cast<std::uint32_t>(replica.leader().role()) |
           static_cast<std::uint32_t>(replica.background().candidacy()) << 8 |
           (holder ? static_cast<std::uint32_t>(*holder) + 1 : 0u) << 16;
  }

 private:
  EngineHost& host_;
  std::uint64_t rounds_ = 0;
  std::uint64_t pushes_seen_ = 0;
};

EngineHost::EngineHost(const EngineHostConfig& config, std::function<void()> notify)
    : config_(config),
      notify_(std::move(notify)),
      submissions_(config.submission_ring_bytes),
      submitter_(submissions_, config.replica.leader.self),
      events_(config.event_ring_bytes) {
  if (events_.max_record_bytes() < sizeof(EventHeader) + config_.replica.leader.max_payload_bytes) {
    throw std::invalid_argument("engine host: the event ring must hold at least two of the largest entries");
  }
  config_.fabric.node_id = config_.replica.leader.self;
  fabric_ = fabric::create_fabric(config_.fabric);
  replica_ = std::make_unique<engine::Replica>(
      config_.replica, fabric_,
      [this](std::uint64_t log_index, std::span<const std::byte> payload) { on_applied(log_index, payload); }, clock_);
}

EngineHost::~EngineHost() { stop(); }

std::vector<std::byte> EngineHost::card() const { return replica_->card().encode(); }

void EngineHost::connect(std::span<const std::vector<std::byte>> cards) {
  // An empty card stands for a peer not heard from (see Replica::connect).
  std::vector<std::optional<engine::ReplicaCard>> decoded;
  decoded.reserve(cards.size());
  for (const auto& bytes : cards) {
    decoded.push_back(bytes.empty() ? std::nullopt : std::optional(engine::ReplicaCard::decode(bytes)));
  }
  replica_->connect(std::span<const std::optional<engine::ReplicaCard>>(decoded));
  replica_->apply().set_application_ready(
      [this](std::size_t payload_bytes) { return events_.can_push(sizeof(EventHeader) + payload_bytes); });
  replica_->leader().accept_submissions(
      submissions_,
      engine::LeaderAgent::SubmissionEvents{
          [this](const engine::CommandTag& tag) {
            ++commands_dropped_;
            emit(EventKind::dropped, 0, tag.sequence);
          },
          [this](std::uint64_t next_index, std::uint64_t last_taken_sequence) {
            ++reigns_ended_;
            emit(EventKind::reign_ended, 0, next_index, last_taken_sequence);
            horizons_.push_back(Horizon{next_index, last_taken_sequence});
          }});
  bridge_ = std::make_unique<Bridge>(*this);
}

void EngineHost::start() {
  if (!bridge_) throw std::logic_error("engine host: start() before connect()");
  if (runner_) return;
  std::vector<engine::Agent*> agents = replica_->agents();
  agents.push_back(bridge_.get());
  runner_ = std::make_unique<engine::AgentRunner>(
      agents, engine::make_idle_strategy(config_.idle_strategy,
                                         engine::backoff_limits_for(config_.replica.background.detector.read_interval_ns,
                                                                    config_.replica.background.detector.heartbeat_interval_ns)));
  runner_->start();
}

void EngineHost::stop() {
  if (!runner_) return;
  runner_->stop();
  runner_.reset();
  std::lock_guard lock(status_mutex_);
  status_.running = false;
}

std::optional<engine::CommandTag> EngineHost::submit(std::span<const std::byte> command) {
  if (command.size() > max_command_bytes()) return std::nullopt;
  return submitter_.submit(command);
}

void EngineHost::wake() {
  if (runner_) runner_->wake();
}

std::size_t EngineHost::max_command_bytes() const {
  return config_.replica.leader.max_payload_bytes - engine::command_record_header_bytes;
}

std::size_t EngineHost::drain_events(const std::function<void(std::span<const std::byte>)>& visit,
                                     std::size_t max_records) {
  notify_armed_.store(true, std::memory_order_seq_cst);
  return events_.drain(visit, max_records);
}

std::uint64_t EngineHost::reconnect_peer(std::span<const std::byte> card, bool hold) {
  engine::ReplicaCard decoded = engine::ReplicaCard::decode(card);
  if (decoded.node_id == node_id() || decoded.node_id >= config_.replica.leader.replica_count) {
    throw std::invalid_argument("engine host: a restarted peer's card must name another replica of this cluster");
  }
  const fabric::NodeId peer = decoded.node_id;
  std::lock_guard lock(reconnect_mutex_);
  const std::uint64_t number = next_change_number_++;
  reconnects_.push_back(LinkChange{std::move(decoded), peer, hold, number});
  return number;
}

std::uint64_t EngineHost::release_link(std::uint32_t peer) {
  if (peer == node_id() || peer >= config_.replica.leader.replica_count) {
    throw std::invalid_argument("engine host: release_link names another replica of this cluster");
  }
  std::lock_guard lock(reconnect_mutex_);
  const std::uint64_t number = next_change_number_++;
  reconnects_.push_back(LinkChange{std::nullopt, static_cast<fabric::NodeId>(peer), false, number});
  return number;
}

void EngineHost::request_state_transfer() {
  std::lock_guard lock(transfer_mutex_);
  transfer_requested_ = true;
}

void EngineHost::resume_from_state_transfer(std::uint64_t next_index, std::uint64_t position) {
  std::lock_guard lock(transfer_mutex_);
  resume_at_ = engine::LogCursor{next_index, position};
}

void EngineHost::apply_state_transfer_requests() {
  std::unique_lock lock(transfer_mutex_, std::try_to_lock);
  if (!lock.owns_lock() || (!transfer_requested_ && !resume_at_)) return;
  engine::ApplyAgent& apply = replica_->apply();
  if (transfer_requested_) {
    transfer_requested_ = false;
    apply.request_state_transfer();
  }
  if (!resume_at_) return;
  if (!apply.needs_state_transfer()) {
    emit(EventKind::state_transfer_resumed, 0, apply.applied().index);
    resume_at_.reset();
    return;
  }
  // Only once no leader can write this log: the background plane revokes every grant
  // first (a round or a few after the need is known).
  if (!replica_->background().log_closed()) return;
  apply.resume_from_state_transfer(*resume_at_);
  resume_at_.reset();
  reported_state_transfer_ = false;
  emit(EventKind::state_transfer_resumed, 1, apply.applied().index);
}

void EngineHost::apply_reconnects() {
  std::vector<LinkChange> changes;
  {
    std::unique_lock lock(reconnect_mutex_, std::try_to_lock);
    if (!lock.owns_lock() || reconnects_.empty()) return;
    changes.swap(reconnects_);
  }
  for (const auto& change : changes) {
    std::uint32_t done = 1;
    try {
      if (change.card) {
        replica_->reconnect_peer(*change.card, change.hold);
      } else {
        replica_->release_link(change.peer);
      }
    } catch (const std::exception&) {
      done = 0;  // e.g. its regions are gone again (it restarted twice): a newer card follows
    }
    emit(EventKind::peer_reconnected, done, change.peer, change.number);
  }
}

bool EngineHost::wait_for_events(std::uint64_t timeout_ns) const {
  if (events_.has_records()) return true;
  const std::uint64_t deadline = clock_.now_ns() + timeout_ns;
  do {
    for (int i = 0; i < 64; ++i) {
      if (events_.has_records()) return true;
      __builtin_ia32_pause();
    }
  } while (clock_.now_ns() < deadline);
  return events_.has_records();
}

HostStatus EngineHost::status() const {
  std::lock_guard lock(status_mutex_);
  return status_;
}

// --- engine thread ------------------------------------------------------------------

void EngineHost::on_applied(std::uint64_t log_index, std::span<const std::byte> payload) {
  const EventHeader header{EventKind::applied, 0, log_index, replica_->apply().applying_next().position};
  // The apply agent asked can_push() first, and only this thread pushes.
  const bool pushed = events_.try_push(std::as_bytes(std::span(&header, 1)), payload);
  if (!pushed) throw std::logic_error("engine host: the event ring refused an entry it had room for");
  ++entries_applied_;
  ++pushes_;
  pushed_since_notify_ = true;
}

void EngineHost::emit(EventKind kind, std::uint32_t detail, std::uint64_t value, std::uint64_t extra) {
  const EventHeader header{kind, detail, value, extra};
  // Order matters (a dropped command before the reign end that follows it): once one
  // event waits in the overflow list, every later one queues behind it.
  if (overflow_.empty() && events_.try_push(std::as_bytes(std::span(&header, 1)))) {
    ++pushes_;
    pushed_since_notify_ = true;
    return;
  }
  overflow_.push_back(header);
}

void EngineHost::flush_overflow() {
  while (!overflow_.empty() && events_.try_push(std::as_bytes(std::span(&overflow_.front(), 1)))) {
    overflow_.pop_front();
    ++pushes_;
    pushed_since_notify_ = true;
  }
}

void EngineHost::notify_if_needed() {
  if (!pushed_since_notify_) return;
  if (!replica_->leader().leading() && config_.follower_notify_interval_ns != 0) {
    const std::uint64_t now = clock_.now_ns();
    // A follower's entries wait a little, so its event loop (and then its redis-server)
    // wakes after the leader's request is answered rather than competing with it for the
    // cores, and takes several entries per wake-up.
    if (!notify_pending_) {
      notify_pending_ = true;
      first_unnotified_ns_ = now;
    }
    if (now - first_unnotified_ns_ < config_.follower_notify_interval_ns) return;  // later, with more
    notify_pending_ = false;
  }
  pushed_since_notify_ = false;
  if (notify_armed_.exchange(false, std::memory_order_seq_cst) && notify_) notify_();
}

void EngineHost::refresh_status(bool force) {
  const std::uint64_t now = clock_.now_ns();
  if (!force && now < next_status_ns_) return;
  std::unique_lock lock(status_mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return;  // the owner is reading it: next round
  next_status_ns_ = now + config_.status_interval_ns;
  engine::Replica& replica = *replica_;
  HostStatus& status = status_;
  status.running = true;
  status.role = replica.leader().role();
  status.candidacy = replica.background().candidacy();
  status.holder = replica.background().holder();
  status.proposal = replica.leader().proposal();
  status.first_uncommitted_index = replica.leader().first_uncommitted_index();
  status.first_undecided_index = replica.apply().first_undecided_index();
  status.applied_index = replica.apply().applied().index;
  status.heartbeat = replica.background().heartbeat();
  status.grants_served = replica.background().grants_served();
  const std::uint32_t count = config_.replica.leader.replica_count;
  status.peer_scores.resize(count);
  status.peer_alive.resize(count);
  for (fabric::NodeId peer = 0; peer < count; ++peer) {
    status.peer_scores[peer] = replica.background().detector().score(peer);
    status.peer_alive[peer] = replica.background().detector().alive(peer);
  }
  status.needs_state_transfer = replica.apply().needs_state_transfer();
  status.rounds = runner_ ? runner_->rounds() : 0;
  status.idle_rounds = runner_ ? runner_->idle_rounds() : 0;
  status.entries_applied = entries_applied_;
  status.commands_dropped = commands_dropped_;
  status.reigns_ended = reigns_ended_;
  status.leader_detail = replica.leader().describe();
  status.background_detail = replica.background().describe();
}

}  // namespace mu::addon
