#include "harness/process_cluster.hpp"

#include <filesystem>

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "engine/runtime/agent_runner.hpp"
#include "engine/runtime/clock.hpp"

namespace mu::harness {
namespace {

using Steady = std::chrono::steady_clock;

// A one-way byte channel; length-prefixed blobs on top.
class Pipe {
 public:
  Pipe() {
    if (::pipe(ends_.data()) != 0) throw std::runtime_error("process cluster: pipe() failed");
  }
  ~Pipe() {
    ::close(ends_[0]);
    ::close(ends_[1]);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  void send(const void* data, std::size_t bytes) const {
    const auto* cursor = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t sent = ::write(ends_[1], cursor, bytes);
      if (sent <= 0) std::_Exit(4);  // the other side is gone
      cursor += sent;
      bytes -= static_cast<std::size_t>(sent);
    }
  }
  void receive(void* data, std::size_t bytes) const {
    auto* cursor = static_cast<char*>(data);
    while (bytes > 0) {
      const ssize_t got = ::read(ends_[0], cursor, bytes);
      if (got <= 0) std::_Exit(3);  // the parent went away
      cursor += got;
      bytes -= static_cast<std::size_t>(got);
    }
  }
  void send_blob(const std::vector<std::byte>& blob) const {
    const auto size = static_cast<std::uint32_t>(blob.size());
    send(&size, sizeof size);
    send(blob.data(), blob.size());
  }
  std::vector<std::byte> receive_blob() const {
    std::uint32_t size = 0;
    receive(&size, sizeof size);
    std::vector<std::byte> blob(size);
    receive(blob.data(), size);
    return blob;
  }

 private:
  std::array<int, 2> ends_{};
};

}  // namespace

struct ProcessCluster::Channels {
  explicit Channels(std::uint32_t count) : to_parent(count), to_child(count) {}
  std::vector<Pipe> to_parent;
  std::vector<Pipe> to_child;
};

namespace {

[[noreturn]] void run_replica(fabric::NodeId id, const ProcessClusterOptions& options, const HooksFactory& make_hooks,
                              const Pipe& to_parent, const Pipe& from_parent) {
  fabric::FabricConfig fabric_config = options.fabric;
  fabric_config.node_id = id;
  fabric_config.cluster_name = options.cluster_name;
  auto fabric = fabric::create_fabric(fabric_config);

  engine::ReplicaConfig config = options.replica;
  config.leader.self = id;
  config.leader.replica_count = options.replica_count;
  engine::SteadyClock clock;
  ReplicaHooks* hooks_view = nullptr;
  engine::Replica replica(config, fabric,
                          [&hooks_view](std::uint64_t index, std::span<const std::byte> payload) {
                            if (hooks_view != nullptr) hooks_view->on_applied(index, payload);
                          },
                          clock);
  std::unique_ptr<ReplicaHooks> hooks = make_hooks(id, *fabric, replica);
  hooks_view = hooks.get();

  to_parent.send_blob(replica.card().encode());
  to_parent.send_blob(hooks->card());
  std::vector<engine::ReplicaCard> cards;
  std::vector<std::vector<std::byte>> extra_cards;
  for (std::uint32_t peer = 0; peer < options.replica_count; ++peer) {
    cards.push_back(engine::ReplicaCard::decode(from_parent.receive_blob()));
    extra_cards.push_back(from_parent.receive_blob());
  }
  replica.connect(cards);
  hooks->connect(extra_cards);
  // The contract: both ends of every connection are connected before either posts. The
  // parent releases every replica once all have connected.
  char signal_byte = 0;
  to_parent.send(&signal_byte, 1);
  from_parent.receive(&signal_byte, 1);

  std::vector<engine::Agent*> agents = replica.agents();
  for (engine::Agent* agent : hooks->agents()) agents.push_back(agent);
  engine::AgentRunner runner(
      agents, engine::make_idle_strategy(options.idle_strategy,
                                         engine::backoff_limits_for(config.background.detector.read_interval_ns,
                                                                    config.background.detector.heartbeat_interval_ns)));
  runner.start();
  from_parent.receive(&signal_byte, 1);  // the parent says when to stop
  runner.stop();
  hooks->before_exit();
  std::_Exit(0);
}

}  // namespace

ProcessCluster::ProcessCluster(const ProcessClusterOptions& options, const HooksFactory& hooks)
    : replica_count_(options.replica_count),
      shm_directory_(options.fabric.backend == fabric::Backend::shm
                         ? options.fabric.shm_root + "/mu-" + options.cluster_name
                         : std::string()),
      pids_(options.replica_count, -1),
      reaped_(options.replica_count, false),
      channels_(std::make_unique<Channels>(options.replica_count)) {
  if (options.cluster_name.empty()) throw std::invalid_argument("process cluster: a cluster name is needed");
  std::fflush(nullptr);  // nothing buffered is printed twice by the children
  for (fabric::NodeId id = 0; id < replica_count_; ++id) {
    pids_[id] = ::fork();
    if (pids_[id] < 0) throw std::runtime_error("process cluster: fork() failed");
    if (pids_[id] == 0) run_replica(id, options, hooks, channels_->to_parent[id], channels_->to_child[id]);
  }
  std::vector<std::vector<std::byte>> cards(replica_count_), extra_cards(replica_count_);
  for (fabric::NodeId id = 0; id < replica_count_; ++id) {
    cards[id] = channels_->to_parent[id].receive_blob();
    extra_cards[id] = channels_->to_parent[id].receive_blob();
  }
  for (fabric::NodeId id = 0; id < replica_count_; ++id) {
    for (fabric::NodeId peer = 0; peer < replica_count_; ++peer) {
      channels_->to_child[id].send_blob(cards[peer]);
      channels_->to_child[id].send_blob(extra_cards[peer]);
    }
  }
  char signal_byte = 0;
  for (fabric::NodeId id = 0; id < replica_count_; ++id) channels_->to_parent[id].receive(&signal_byte, 1);
  for (fabric::NodeId id = 0; id < replica_count_; ++id) channels_->to_child[id].send(&signal_byte, 1);
}

ProcessCluster::~ProcessCluster() {
  for (fabric::NodeId id = 0; id < replica_count_; ++id) {
    if (reaped_[id]) continue;
    ::kill(pids_[id], SIGCONT);
    const char stop_byte = 1;
    channels_->to_child[id].send(&stop_byte, 1);
  }
  for (fabric::NodeId id = 0; id < replica_count_; ++id) {
    if (reaped_[id]) continue;
    const auto deadline = Steady::now() + std::chrono::seconds(5);
    int status = 0;
    while (::waitpid(pids_[id], &status, WNOHANG) == 0) {
      if (Steady::now() > deadline) {
        ::kill(pids_[id], SIGKILL);
        ::waitpid(pids_[id], &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  // A replica that was killed could not remove its own files.
  if (!shm_directory_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(shm_directory_, ignored);
  }
}

void ProcessCluster::stop(fabric::NodeId id) {
  // A signal is delivered asynchronously: wait until the process has really stopped, so
  // that whatever the caller reads next about it no longer changes.
  ::kill(pids_[id], SIGSTOP);
  int status = 0;
  while (::waitpid(pids_[id], &status, WUNTRACED) == pids_[id] && !WIFSTOPPED(status)) {
  }
}
void ProcessCluster::resume(fabric::NodeId id) { ::kill(pids_[id], SIGCONT); }

void ProcessCluster::kill(fabric::NodeId id) {
  if (reaped_[id]) return;
  ::kill(pids_[id], SIGKILL);
  ::waitpid(pids_[id], nullptr, 0);
  reaped_[id] = true;
}

bool ProcessCluster::wait_for(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  const auto deadline = Steady::now() + limit;
  while (Steady::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return condition();
}

void* map_shared(std::size_t bytes) {
  void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw std::runtime_error("process cluster: shared mapping failed");
  return memory;
}

void unmap_shared(void* memory, std::size_t bytes) { ::munmap(memory, bytes); }

}  // namespace mu::harness
