// Helpers shared by the fabric tests: backend selection from the environment, a
// connected pair of nodes, and bounded waits for completions.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fabric/fabric.hpp"
#include "fabric/sim/sim_network.hpp"

namespace mu::fabric::testing {

// MU_FABRIC_BACKENDS (comma-separated, default "shm,sim") picks the backends a run covers. A
// named backend that is absent makes the tests fail; it never skips them.
inline std::vector<Backend> selected_backends() {
  const char* list = std::getenv("MU_FABRIC_BACKENDS");
  std::string names = list != nullptr && *list != '\0' ? list : "shm,sim";
  std::vector<Backend> backends;
  std::size_t start = 0;
  while (start <= names.size()) {
    const std::size_t end = std::min(names.find(',', start), names.size());
    if (end > start) backends.push_back(parse_backend(names.substr(start, end - start)));
    start = end + 1;
  }
  return backends;
}

inline FabricConfig config_for(Backend backend, NodeId node_id, const std::string& cluster_name) {
  FabricConfig config;
  config.backend = backend;
  config.node_id = node_id;
  config.cluster_name = cluster_name;
  if (const char* device = std::getenv("MU_VERBS_DEVICE")) config.verbs_device = device;
  if (const char* gid_index = std::getenv("MU_VERBS_GID_INDEX")) {
    config.verbs_gid_index = static_cast<std::uint8_t>(std::atoi(gid_index));
  }
  return config;
}

// Creates a node of the backend. sim nodes of one cluster share a network, seeded
// from the cluster name so a failing test replays; its writes are torn a third of the time.
inline std::shared_ptr<Fabric> create_test_fabric(Backend backend, NodeId node_id, const std::string& cluster_name) {
  if (backend != Backend::sim) return create_fabric(config_for(backend, node_id, cluster_name));
  static std::map<std::string, std::weak_ptr<sim::SimNetwork>> networks;
  auto network = networks[cluster_name].lock();
  if (!network) {
    sim::SimFaults faults;
    faults.tear_probability = 0.3;
    network = sim::SimNetwork::create(std::hash<std::string>{}(cluster_name), faults);
    networks[cluster_name] = network;
  }
  return network->create_node(node_id);
}

inline std::string unique_cluster_name(const std::string& stem) {
  static int counter = 0;
  return stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// Waits for one completion. Verbs reports an unreachable peer only after its retry
// timeout, which emulated hardware stretches, so the bound is generous.
inline std::optional<Completion> wait_for_completion(CompletionQueue& queue,
                                                     std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  Completion completion;
  while (std::chrono::steady_clock::now() < deadline) {
    if (queue.poll(std::span(&completion, 1)) == 1) return completion;
  }
  return std::nullopt;
}

// Waits until an access change is in force.
inline bool wait_until_settled(Connection& connection, ChangeStatus status,
                               std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  if (status == ChangeStatus::settled) return true;
  if (status == ChangeStatus::failed) return false;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (connection.access_change_settled()) return true;
  }
  return false;
}

}  // namespace mu::fabric::testing
