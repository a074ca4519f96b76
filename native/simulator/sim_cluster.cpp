#include "simulator/sim_cluster.hpp"

#include <stdexcept>

#include "engine/log_entry.hpp"

namespace mu::engine::simulator {

std::string text(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::vector<std::byte> bytes_of(const std::string& text) {
  const auto* data = reinterpret_cast<const std::byte*>(text.data());
  return std::vector<std::byte>(data, data + text.size());
}

SimCluster::SimCluster(const SimClusterOptions& options)
    : network_(fabric::sim::SimNetwork::create(options.seed, options.faults, options.completes_in_round)) {
  const auto n = static_cast<fabric::NodeId>(options.replica_count);
  std::vector<ReplicaCard> cards;
  for (fabric::NodeId id = 0; id < n; ++id) {
    auto replica = std::make_unique<Replica>();
    Replica* self = replica.get();
    ReplicaConfig config;
    config.leader = options.leader;
    config.leader.self = id;
    config.leader.replica_count = n;
    config.background = options.background;
    replica->fabric = network_->create_node(id);
    replica->engine = std::make_unique<engine::Replica>(
        config, replica->fabric,
        [self](std::uint64_t index, std::span<const std::byte> payload) {
          const bool well_formed = for_each_command(payload, [&](const Command& command) {
            self->applied.push_back(AppliedCommand{index, command.tag, text(command.bytes)});
          });
          if (!well_formed) throw std::logic_error("applied a malformed batch");
        },
        clock_);
    cards.push_back(replica->engine->card());
    replicas_.push_back(std::move(replica));
  }
  for (auto& replica : replicas_) {
    replica->engine->connect(cards);
    replica->leader = &replica->engine->leader();
    replica->apply = &replica->engine->apply();
    if (options.background_plane) replica->background = &replica->engine->background();
    replica->log_region = &replica->engine->log_region();
    replica->log = &replica->engine->log();
    for (fabric::NodeId leader = 0; leader < n; ++leader) {
      replica->from_leader.push_back(&replica->engine->log_access(leader));
    }
  }
}

SimCluster::~SimCluster() = default;

std::optional<fabric::NodeId> SimCluster::steady_leader() {
  std::optional<fabric::NodeId> found;
  for (fabric::NodeId id = 0; id < size(); ++id) {
    if (crashed(id) || replicas_[id]->paused) continue;
    if (replicas_[id]->leader->role() != LeaderAgent::Role::steady) continue;
    if (found) return std::nullopt;
    found = id;
  }
  return found;
}

void SimCluster::grant_all_to(fabric::NodeId holder) {
  std::vector<fabric::NodeId> everyone;
  for (fabric::NodeId id = 0; id < size(); ++id) everyone.push_back(id);
  grant_to(holder, everyone);
}

void SimCluster::grant_to(fabric::NodeId holder, const std::vector<fabric::NodeId>& acceptors) {
  for (const fabric::NodeId id : acceptors) {
    for (fabric::NodeId other = 0; other < size(); ++other) {
      if (other != holder) revoke(id, other);
    }
    auto& end = *replicas_[id]->from_leader[holder];
    auto status = end.change_access(fabric::access_remote_all, fabric::AccessPath::fast);
    while (status == fabric::ChangeStatus::pending && !end.access_change_settled()) network_->step();
  }
  replicas_[holder]->leader->reset_broken_connections();
  replicas_[holder]->leader->lead(acceptors);
}

void SimCluster::revoke(fabric::NodeId replica, fabric::NodeId holder) {
  auto& end = *replicas_[replica]->from_leader[holder];
  auto status = end.change_access(fabric::access_none, fabric::AccessPath::fast);
  while (status == fabric::ChangeStatus::pending && !end.access_change_settled()) network_->step();
}

void SimCluster::run_round() {
  for (auto& replica : replicas_) {
    if (network_->crashed(replica->fabric->node_id()) || replica->paused) continue;
    if (replica->background) replica->background->do_work();
    if (!replica->leader_stuck) replica->leader->do_work();
    if (!replica->apply_paused) replica->apply->do_work();
  }
  network_->step();
  clock_.advance_ns(100);
}

bool SimCluster::run_until(const std::function<bool()>& done, std::uint64_t max_rounds) {
  for (std::uint64_t round = 0; round < max_rounds; ++round) {
    if (done()) return true;
    run_round();
  }
  return done();
}

void SimCluster::plant_entry(fabric::NodeId replica, const LogCursor& at, std::uint64_t proposal,
                             const std::string& command, CommandTag tag) {
  std::vector<std::byte> batch;
  append_command(batch, tag, bytes_of(command));
  Replica& target = *replicas_[replica];
  const std::uint64_t place = target.log->geometry().place(at.position);
  const EntryHeader header{static_cast<std::uint32_t>(batch.size()), EntryKind::commands, proposal, at.index, 0};
  encode_entry(std::span(target.log_region->data() + log_layout::entry_area_offset + place,
                         encoded_entry_bytes(batch.size())),
               header, batch);
}

}  // namespace mu::engine::simulator
