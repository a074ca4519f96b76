// Replicas as real processes on the shm fabric (or verbs), for tests and benchmarks: one forked
// process per replica, each running the engine's agents (and the caller's, through hooks)
// on one thread with an idle strategy, as a deployment on a small machine would. The
// parent carries the replicas' cards to one another over pipes (standing in for the
// control plane), releases them together once every one has connected, and can stop,
// resume or kill any of them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/replica.hpp"
#include "engine/runtime/agent.hpp"
#include "fabric/fabric.hpp"

namespace mu::harness {

// What a test or benchmark adds to each replica process. Runs in the child.
class ReplicaHooks {
 public:
  virtual ~ReplicaHooks() = default;
  // Extra plain data for the other replicas (a benchmark's own connections, say).
  virtual std::vector<std::byte> card() { return {}; }
  // Every replica's extra card, indexed by replica id; called before any agent runs.
  virtual void connect(std::span<const std::vector<std::byte>> cards) { static_cast<void>(cards); }
  // Agents to run after the engine's, on the same thread.
  virtual std::vector<engine::Agent*> agents() { return {}; }
  // The replica's apply callback (on that thread).
  virtual void on_applied(std::uint64_t log_index, std::span<const std::byte> payload) {
    static_cast<void>(log_index);
    static_cast<void>(payload);
  }
  // After the runner stopped, before the process exits.
  virtual void before_exit() {}
};

using HooksFactory =
    std::function<std::unique_ptr<ReplicaHooks>(fabric::NodeId id, fabric::Fabric& fabric, engine::Replica& replica)>;

struct ProcessClusterOptions {
  std::uint32_t replica_count = 3;
  // The fabric each replica creates (node id and cluster name are set per process):
  // shm by default; verbs needs verbs_device (and the GID index) set.
  fabric::FabricConfig fabric{};
  engine::ReplicaConfig replica{};  // self and replica_count are set per process
  std::string idle_strategy = "backoff";
  std::string cluster_name;  // unique per cluster (the shm directory is named after it)
};

class ProcessCluster {
 public:
  // Returns once every replica is connected and running. Throws on failure.
  ProcessCluster(const ProcessClusterOptions& options, const HooksFactory& hooks);
  // Resumes stopped replicas, asks every live one to stop, reaps them (SIGKILL after 5 s).
  ~ProcessCluster();
  ProcessCluster(const ProcessCluster&) = delete;
  ProcessCluster& operator=(const ProcessCluster&) = delete;

  pid_t pid(fabric::NodeId id) const { return pids_[id]; }
  void stop(fabric::NodeId id);    // SIGSTOP; returns once the process is stopped
  void resume(fabric::NodeId id);  // SIGCONT
  void kill(fabric::NodeId id);    // SIGKILL, then reap

  // Polls `condition` every 50 us until it holds or `limit` passes.
  static bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds limit);

 private:
  struct Channels;
  std::uint32_t replica_count_;
  std::string shm_directory_;  // the cluster's files on shm (empty on verbs): removed at the end
  std::vector<pid_t> pids_;
  std::vector<bool> reaped_;
  std::unique_ptr<Channels> channels_;
};

// Memory shared with the replica processes: allocate before constructing the cluster.
template <typename T>
class SharedMemory {
 public:
  SharedMemory();
  ~SharedMemory();
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  T* operator->() { return object_; }
  T& operator*() { return *object_; }

 private:
  void* memory_;
  T* object_;
};

void* map_shared(std::size_t bytes);
void unmap_shared(void* memory, std::size_t bytes);

template <typename T>
SharedMemory<T>::SharedMemory() : memory_(map_shared(sizeof(T))), object_(new (memory_) T{}) {}

template <typename T>
SharedMemory<T>::~SharedMemory() {
  object_->~T();
  unmap_shared(memory_, sizeof(T));
}

}  // namespace mu::harness
