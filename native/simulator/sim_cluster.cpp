#include "simulator/sim_cluster.hpp"

#include <stdexcept>

#include "engine/background/background_layout.hpp"
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
    : network_(fabric::sim::SimNetwork::create(options.seed, options.faults, /*auto_step=*/false)) {
  const auto n = static_cast<fabric::NodeId>(options.replica_count);
  for (fabric::NodeId id = 0; id < n; ++id) {
    auto replica = std::make_unique<Replica>();
    replica->fabric = network_->create_node(id);
    replica->log_region = replica->fabric->register_region(log_layout::region_bytes(options.leader.log_area_bytes));
    replica->log = std::make_unique<ReplicaLog>(
        std::span(replica->log_region->data(), replica->log_region->size_bytes()), options.leader.max_payload_bytes);
    replica->leader_queue = replica->fabric->create_completion_queue(4096);
    replica->access_queue = replica->fabric->create_completion_queue(64);
    replica->background_region = replica->fabric->register_region(background_layout::region_bytes);
    replica->background_queue = replica->fabric->create_completion_queue(1024);
    replicas_.push_back(std::move(replica));
  }
  for (fabric::NodeId leader = 0; leader < n; ++leader) {
    for (fabric::NodeId acceptor = 0; acceptor < n; ++acceptor) {
      Replica& from = *replicas_[leader];
      Replica& to = *replicas_[acceptor];
      from.to_log.push_back(from.fabric->create_connection(from.leader_queue));
      to.from_leader.resize(n);
      to.from_leader[leader] = to.fabric->create_connection(to.access_queue);
      from.to_background.push_back(from.fabric->create_connection(from.background_queue));
      to.from_background.resize(n);
      to.from_background[leader] = to.fabric->create_connection(to.access_queue);
    }
  }
  for (fabric::NodeId leader = 0; leader < n; ++leader) {
    Replica& from = *replicas_[leader];
    for (fabric::NodeId acceptor = 0; acceptor < n; ++acceptor) {
      Replica& to = *replicas_[acceptor];
      to.from_leader[leader]->connect(from.to_log[acceptor]->local_endpoint(), fabric::access_none);
      from.to_log[acceptor]->connect(to.from_leader[leader]->local_endpoint(), fabric::access_none);
      from.remote_logs.push_back(from.fabric->attach_remote_region(to.log_region->descriptor()));
      to.from_background[leader]->connect(from.to_background[acceptor]->local_endpoint(), fabric::access_remote_all);
      from.to_background[acceptor]->connect(to.from_background[leader]->local_endpoint(), fabric::access_none);
      from.remote_backgrounds.push_back(from.fabric->attach_remote_region(to.background_region->descriptor()));
    }
    std::vector<AcceptorLink> links;
    for (fabric::NodeId acceptor = 0; acceptor < n; ++acceptor) {
      links.push_back(AcceptorLink{acceptor, from.to_log[acceptor].get(), from.remote_logs[acceptor].get()});
    }
    LeaderConfig config = options.leader;
    config.self = leader;
    config.replica_count = n;
    from.leader = std::make_unique<LeaderAgent>(config, *from.fabric, from.leader_queue, std::move(links),
                                                *from.log_region, clock_);
    Replica* self = &from;
    from.apply = std::make_unique<ApplyAgent>(*from.log, [self](std::uint64_t index, std::span<const std::byte> payload) {
      const bool well_formed = for_each_command(payload, [&](const Command& command) {
        self->applied.push_back(AppliedCommand{index, command.tag, text(command.bytes)});
      });
      if (!well_formed) throw std::logic_error("applied a malformed batch");
    });
    if (options.background_plane) {
      // Every from_leader end exists by now: the first loop made all of them.
      std::vector<BackgroundLink> background_links;
      std::vector<fabric::Connection*> log_access;
      for (fabric::NodeId peer = 0; peer < n; ++peer) {
        background_links.push_back(
            BackgroundLink{peer, from.to_background[peer].get(), from.remote_backgrounds[peer].get()});
        log_access.push_back(from.from_leader[peer].get());
      }
      BackgroundConfig background = options.background;
      background.self = leader;
      background.replica_count = n;
      from.background = std::make_unique<BackgroundAgent>(background, *from.fabric, from.background_queue,
                                                          std::move(background_links), *from.background_region,
                                                          std::move(log_access), *from.leader, *from.apply, clock_);
    }
  }
}

SimCluster::~SimCluster() {
  for (auto& replica : replicas_) {
    replica->background.reset();
    replica->leader.reset();
    replica->apply.reset();
    replica->to_log.clear();
    replica->from_leader.clear();
    replica->to_background.clear();
    replica->from_background.clear();
  }
}

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
    replica->leader->do_work();
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
