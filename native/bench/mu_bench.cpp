// mu-bench: the engine measured on real processes (one per replica, on shm), with the
// threaded runtime: every replica runs its agents on one thread with the chosen idle
// strategy, as a deployment would on a small machine.
//
//   Every mode takes --backend shm|verbs (verbs: MU_VERBS_DEVICE, MU_VERBS_GID_INDEX, as
//   for the tests; inside the Soft-RoCE VM: scripts/rdma-vm/run-verbs-suite.sh -- ...).
//
//   mu-bench latency  [--iterations N] [--idle backoff|yield|spin]
//       replication latency (propose -> committed and applied at the leader) for commands
//       of 8 B to 4 KiB, beside the raw fabric floor measured in the same processes: one
//       WRITE of the same size to every replica's memory, done when a majority completed
//   mu-bench throughput [--seconds S] [--window N]
//       commands committed per second with pipelining and batching
//   mu-bench failover [--runs N] [--signal stop|kill]
//       stop (SIGSTOP) or kill (SIGKILL) the leader; time from the signal to the first
//       command committed by the new leader, split into detection, permission switch and
//       recovery
//   mu-bench idle [--seconds S]
//       a healthy idle cluster: counts leader changes (there should be none)
//   mu-bench stalls [--seconds S]
//       the machine, not the engine: three processes that only sleep 50 us in a loop report
//       the longest gaps they saw (what a failure detector cannot tell from a failure)
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "engine/command_batch.hpp"
#include "engine/replica.hpp"
#include "engine/runtime/agent_runner.hpp"
#include "harness/process_cluster.hpp"
#include "fabric/fabric.hpp"

namespace {

using namespace mu;
using Steady = std::chrono::steady_clock;

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Steady::now().time_since_epoch()).count());
}

constexpr fabric::NodeId replica_count = 3;
constexpr std::array<std::uint32_t, 5> sizes{8, 64, 256, 1024, 4096};

struct Options {
  std::string mode = "latency";
  int iterations = 20000;
  int runs = 20;
  int seconds = 5;
  int window = 256;
  bool kill_leader = false;
  std::string idle = "backoff";
  fabric::Backend backend = fabric::Backend::shm;
  std::uint64_t read_interval_us = 0;  // 0: the engine's default
  std::uint32_t failure_reads = 0;     // reads without a heartbeat before a peer is suspected
};

// Shared with the parent (an anonymous shared mapping made before the forks).
struct ReplicaStats {
  std::atomic<std::uint64_t> candidate_ns;  // first time it stood for election
  std::atomic<std::uint64_t> leading_ns;    // first time it got a majority of grants
  std::atomic<std::uint64_t> steady_ns;     // recovery and prepare done
  std::atomic<std::uint64_t> first_commit_ns;
  std::atomic<std::uint64_t> grants_served;
  std::atomic<std::uint32_t> done;
};
constexpr int max_iterations = 20000;
// Progress of a latency or throughput run, shared by every replica's driver: whichever
// replica leads carries the run on (a false suspicion on a noisy machine may move the
// leadership midway), and the parent computes the figures at the end.
struct RunProgress {
  std::atomic<std::uint32_t> size_index;
  std::atomic<std::uint32_t> samples_taken;
  std::atomic<std::uint32_t> done;
  std::atomic<std::uint64_t> commands_applied;  // throughput: own commands applied at their leader
  double engine_ns[sizes.size()][max_iterations];
  double floor_ns[sizes.size()][max_iterations];
};
struct Shared {
  ReplicaStats replicas[replica_count];
  RunProgress run;
};

// --- the raw fabric floor's wiring -----------------------------------------------------

struct BenchCard {
  fabric::RegionDescriptor region;
  std::array<fabric::EndpointInfo, replica_count> to_peer;    // posting ends
  std::array<fabric::EndpointInfo, replica_count> from_peer;  // target ends
};

struct Percentiles {
  double p50, p90, p99, p999;
};
Percentiles percentiles(std::vector<double>& samples) {
  std::sort(samples.begin(), samples.end());
  const auto at = [&](double q) { return samples[std::min(samples.size() - 1, static_cast<std::size_t>(q * static_cast<double>(samples.size())))]; };
  return {at(0.5), at(0.9), at(0.99), at(0.999)};
}

// --- the driver: an agent on each replica's thread ---------------------------------------

class Driver final : public engine::Agent {
 public:
  Driver(const Options& options, engine::Replica& replica, ReplicaStats& stats, RunProgress& progress,
         fabric::Fabric& fabric,
         std::shared_ptr<fabric::CompletionQueue> bench_queue, std::vector<fabric::Connection*> bench_connections,
         std::vector<const fabric::RemoteRegion*> bench_regions, fabric::LocalRegion& bench_source)
      : options_(options),
        replica_(replica),
        stats_(stats),
        progress_(progress),
        fabric_(fabric),
        bench_queue_(std::move(bench_queue)),
        bench_connections_(std::move(bench_connections)),
        bench_regions_(std::move(bench_regions)),
        bench_source_(bench_source) {}

  std::string_view name() const override { return "bench driver"; }

  void on_applied(std::span<const std::byte> payload) {
    engine::for_each_command(payload, [&](const engine::Command& command) {
      if (command.tag.origin != replica_.node_id()) return;
      last_applied_sequence_ = command.tag.sequence;
      if (options_.mode == "throughput") progress_.commands_applied.fetch_add(1, std::memory_order_relaxed);
    });
  }

  int do_work() override {
    if (options_.mode == "idle") record_gap();  // a clock read per round: only where it is the point
    observe_transitions();
    if (replica_.leader().role() != engine::LeaderAgent::Role::steady) {
      waiting_.reset();  // a command proposed in an earlier reign may never be applied here
      return 0;
    }
    if (options_.mode == "latency") return latency_step();
    if (options_.mode == "throughput") return throughput_step();
    if (options_.mode == "failover") return failover_step();
    return 0;
  }

  // How long this replica's thread went between two rounds: scheduling stalls, which no
  // failure detector can tell from a stopped process.
  std::string describe_gaps() const {
    char line[256];
    std::snprintf(line, sizeof line,
                  "max gap between rounds %llu us; gaps over 250 us: %llu, over 500 us: %llu, over 1 ms: %llu, "
                  "over 5 ms: %llu",
                  static_cast<unsigned long long>(max_gap_ns_ / 1000), static_cast<unsigned long long>(gaps_over_[0]),
                  static_cast<unsigned long long>(gaps_over_[1]), static_cast<unsigned long long>(gaps_over_[2]),
                  static_cast<unsigned long long>(gaps_over_[3]));
    return line;
  }

 private:
  // Stamps rising edges only, so the parent can clear the stamps and see what happens next.
  void record_gap() {
    const std::uint64_t round_ns = now_ns();
    if (last_round_ns_ != 0) {
      const std::uint64_t gap = round_ns - last_round_ns_;
      max_gap_ns_ = std::max(max_gap_ns_, gap);
      for (std::size_t i = 0; i < gap_limits_us_.size(); ++i) gaps_over_[i] += gap > gap_limits_us_[i] * 1000 ? 1 : 0;
    }
    last_round_ns_ = round_ns;
  }

  void observe_transitions() {
    const auto candidacy = replica_.background().candidacy();
    const bool steady = replica_.leader().role() == engine::LeaderAgent::Role::steady;
    if (candidacy == previous_candidacy_ && steady == was_steady_) return;  // the common case: no clock read
    const std::uint64_t now = now_ns();
    if (candidacy == engine::BackgroundAgent::Candidacy::requesting && previous_candidacy_ != candidacy) {
      stats_.candidate_ns = now;
    }
    if (candidacy == engine::BackgroundAgent::Candidacy::leading && previous_candidacy_ != candidacy) {
      stats_.leading_ns = now;
    }
    if (steady && !was_steady_) {
      stats_.steady_ns = now;
      marker_.reset();  // a new reign: its first commit is measured afresh
    }
    previous_candidacy_ = candidacy;
    was_steady_ = steady;
    stats_.grants_served = replica_.background().grants_served();
  }

  std::optional<engine::CommandTag> propose(std::uint32_t bytes) {
    command_.assign(bytes, std::byte{0x5a});
    return replica_.leader().propose(command_);
  }

  int failover_step() {
    if (marker_) {
      if (!marker_committed_ && last_applied_sequence_ >= marker_->sequence) {
        marker_committed_ = true;
        stats_.first_commit_ns = now_ns();
      }
      return 0;
    }
    marker_ = propose(64);
    marker_committed_ = false;
    return 1;
  }

  // Raw floor: one WRITE of `bytes` to every replica's bench region; done at the majority.
  double raw_write_to_majority(std::uint32_t bytes) {
    const std::uint64_t started = now_ns();
    for (std::size_t peer = 0; peer < replica_count; ++peer) {
      fabric::WriteRequest request;
      request.work_id = peer;
      request.remote = bench_regions_[peer];
      if (bytes <= fabric_.max_inline_bytes()) {
        request.inline_payload = std::span<const std::byte>(bench_source_.data(), bytes);
      } else {
        request.local_region = &bench_source_;
        request.length = bytes;
      }
      if (bench_connections_[peer]->post_write(request) != fabric::PostStatus::posted) std::abort();
    }
    std::size_t completed = 0;
    double at_majority = 0;
    std::array<fabric::Completion, 4> completions;
    while (completed < replica_count) {
      const std::size_t got = bench_queue_->poll(completions);
      for (std::size_t i = 0; i < got; ++i) {
        if (completions[i].status != fabric::CompletionStatus::success) std::abort();
        if (++completed == 2) at_majority = static_cast<double>(now_ns() - started);
      }
    }
    return at_majority;
  }

  int latency_step() {
    if (progress_.done.load() != 0) return 0;
    const std::uint32_t size_index = progress_.size_index.load();
    if (waiting_) {
      if (last_applied_sequence_ < waiting_->sequence) return 0;
      const std::uint32_t taken = progress_.samples_taken.load();
      if (static_cast<int>(taken) < options_.iterations && size_index < sizes.size()) {
        progress_.engine_ns[size_index][taken] = static_cast<double>(now_ns() - proposed_at_);
        progress_.samples_taken = taken + 1;
      }
      waiting_.reset();
      if (static_cast<int>(progress_.samples_taken.load()) == options_.iterations) {
        // The floor for this size, in the same processes, right after.
        for (int i = 0; i < options_.iterations; ++i) {
          progress_.floor_ns[size_index][i] = raw_write_to_majority(sizes[size_index] + 16 + 48);
        }
        progress_.samples_taken = 0;
        progress_.size_index = size_index + 1;
        if (size_index + 1 == sizes.size()) progress_.done = 1;
      }
      return 1;
    }
    if (size_index >= sizes.size()) return 0;
    proposed_at_ = now_ns();
    waiting_ = propose(sizes[size_index]);
    return 1;
  }

  int throughput_step() {
    if (progress_.done.load() != 0) return 0;
    int proposed = 0;
    while (next_sequence_ - 1 - last_applied_sequence_ < static_cast<std::uint64_t>(options_.window)) {
      const auto tag = propose(64);
      if (!tag) break;
      next_sequence_ = tag->sequence + 1;
      ++proposed;
    }
    return proposed;
  }

  Options options_;
  engine::Replica& replica_;
  ReplicaStats& stats_;
  RunProgress& progress_;
  fabric::Fabric& fabric_;
  std::shared_ptr<fabric::CompletionQueue> bench_queue_;
  std::vector<fabric::Connection*> bench_connections_;
  std::vector<const fabric::RemoteRegion*> bench_regions_;
  fabric::LocalRegion& bench_source_;
  std::vector<std::byte> command_;
  std::uint64_t last_applied_sequence_ = 0;
  std::optional<engine::CommandTag> waiting_;
  std::optional<engine::CommandTag> marker_;
  bool marker_committed_ = false;
  engine::BackgroundAgent::Candidacy previous_candidacy_ = engine::BackgroundAgent::Candidacy::idle;
  bool was_steady_ = false;
  std::uint64_t proposed_at_ = 0;
  std::uint64_t next_sequence_ = 1;
  std::uint64_t last_round_ns_ = 0;
  std::uint64_t max_gap_ns_ = 0;
  static constexpr std::array<std::uint64_t, 4> gap_limits_us_{250, 500, 1000, 5000};
  std::array<std::uint64_t, 4> gaps_over_{};
};

// --- one replica process ------------------------------------------------------------

// What mu-bench adds to each replica process: the floor's own connections and the driver.
class BenchHooks final : public harness::ReplicaHooks {
 public:
  BenchHooks(const Options& options, Shared& shared, fabric::NodeId id, fabric::Fabric& fabric,
             engine::Replica& replica)
      : options_(options), shared_(shared), id_(id), fabric_(fabric), replica_(replica) {
    queue_ = fabric.create_completion_queue(64);
    region_ = fabric.register_region(8192);
    source_ = fabric.register_region(8192);
    for (fabric::NodeId peer = 0; peer < replica_count; ++peer) {
      to_peer_.push_back(fabric.create_connection(queue_));
      from_peer_.push_back(fabric.create_connection(queue_));
    }
  }

  std::vector<std::byte> card() override {
    BenchCard mine{};
    mine.region = region_->descriptor();
    for (fabric::NodeId peer = 0; peer < replica_count; ++peer) {
      mine.to_peer[peer] = to_peer_[peer]->local_endpoint();
      mine.from_peer[peer] = from_peer_[peer]->local_endpoint();
    }
    std::vector<std::byte> bytes(sizeof mine);
    std::memcpy(bytes.data(), &mine, sizeof mine);
    return bytes;
  }

  void connect(std::span<const std::vector<std::byte>> cards) override {
    std::vector<fabric::Connection*> connections;
    std::vector<const fabric::RemoteRegion*> regions;
    for (fabric::NodeId peer = 0; peer < replica_count; ++peer) {
      BenchCard theirs{};
      if (cards[peer].size() != sizeof theirs) std::abort();
      std::memcpy(&theirs, cards[peer].data(), sizeof theirs);
      from_peer_[peer]->connect(theirs.to_peer[id_], fabric::access_remote_all);
      to_peer_[peer]->connect(theirs.from_peer[id_], fabric::access_none);
      remote_.push_back(fabric_.attach_remote_region(theirs.region, fabric::Fabric::AttachTiming::at_startup));
      connections.push_back(to_peer_[peer].get());
      regions.push_back(remote_.back().get());
    }
    driver_ = std::make_unique<Driver>(options_, replica_, shared_.replicas[id_], shared_.run, fabric_, queue_,
                                       std::move(connections), std::move(regions), *source_);
  }

  std::vector<engine::Agent*> agents() override { return {driver_.get()}; }
  void on_applied(std::uint64_t, std::span<const std::byte> payload) override { driver_->on_applied(payload); }

  void before_exit() override {
    if (std::getenv("MU_BENCH_DEBUG") != nullptr) {
      std::fprintf(stderr, "replica %u: %s; %s\n", id_, replica_.leader().describe().c_str(),
                   replica_.background().describe().c_str());
    }
    if (options_.mode == "idle") std::fprintf(stderr, "  replica %u: %s\n", id_, driver_->describe_gaps().c_str());
  }

 private:
  const Options& options_;
  Shared& shared_;
  fabric::NodeId id_;
  fabric::Fabric& fabric_;
  engine::Replica& replica_;
  std::shared_ptr<fabric::CompletionQueue> queue_;
  std::unique_ptr<fabric::LocalRegion> region_;
  std::unique_ptr<fabric::LocalRegion> source_;
  std::vector<std::unique_ptr<fabric::Connection>> to_peer_;
  std::vector<std::unique_ptr<fabric::Connection>> from_peer_;
  std::vector<std::unique_ptr<fabric::RemoteRegion>> remote_;
  std::unique_ptr<Driver> driver_;
};

engine::ReplicaConfig replica_config(const Options& options) {
  engine::ReplicaConfig config;
  config.leader.log_area_bytes = 4 << 20;
  config.leader.max_payload_bytes = 64 * 1024;
  if (options.read_interval_us != 0) {
    config.background.detector.read_interval_ns = options.read_interval_us * 1000;
    config.background.detector.heartbeat_interval_ns = options.read_interval_us * 1000 / 4;
  }
  if (options.failure_reads != 0) {
    config.background.detector.max_score = options.failure_reads + 2;
    config.background.detector.failure_threshold = 2;
    config.background.detector.recovery_threshold = std::max(3u, config.background.detector.max_score * 3 / 4);
  }
  return config;
}

// Three replica processes and the memory they share with this one.
struct Cluster {
  harness::SharedMemory<Shared> memory;
  Shared* shared = &*memory;
  std::unique_ptr<harness::ProcessCluster> processes;

  Cluster(const Options& options, int run) {
    harness::ProcessClusterOptions cluster_options;
    cluster_options.replica_count = replica_count;
    cluster_options.replica = replica_config(options);
    cluster_options.fabric.backend = options.backend;
    if (const char* device = std::getenv("MU_VERBS_DEVICE")) cluster_options.fabric.verbs_device = device;
    if (const char* gid_index = std::getenv("MU_VERBS_GID_INDEX")) {
      cluster_options.fabric.verbs_gid_index = static_cast<std::uint8_t>(std::atoi(gid_index));
    }
    cluster_options.idle_strategy = options.idle;
    cluster_options.cluster_name = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(run);
    processes = std::make_unique<harness::ProcessCluster>(
        cluster_options, [&options, this](fabric::NodeId id, fabric::Fabric& fabric, engine::Replica& replica) {
          return std::make_unique<BenchHooks>(options, *shared, id, fabric, replica);
        });
  }
  ~Cluster() { processes.reset(); }  // before the shared memory goes

  pid_t pid(fabric::NodeId id) const { return processes->pid(id); }
  bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds limit) const {
    return harness::ProcessCluster::wait_for(condition, limit);
  }
};

int run_latency(const Options& options) {
  Cluster cluster(options, 0);
  RunProgress& run = cluster.shared->run;
  if (!cluster.wait_for([&] { return run.done.load() == 1; }, std::chrono::seconds(600))) {
    std::fprintf(stderr, "mu-bench: the latency run did not finish (reached size %u)\n", run.size_index.load());
    return 1;
  }
  for (std::size_t size = 0; size < sizes.size(); ++size) {
    std::vector<double> engine(run.engine_ns[size], run.engine_ns[size] + options.iterations);
    std::vector<double> floor(run.floor_ns[size], run.floor_ns[size] + options.iterations);
    const Percentiles e = percentiles(engine);
    const Percentiles f = percentiles(floor);
    std::printf("  %5u B  replication p50 %6.0f ns p90 %6.0f p99 %7.0f p99.9 %8.0f | raw write to majority p50 %5.0f "
                "p99 %5.0f | ratio p50 %.1fx\n",
                sizes[size], e.p50, e.p90, e.p99, e.p999, f.p50, f.p99, e.p50 / f.p50);
  }
  return 0;
}

int run_throughput(const Options& options) {
  Cluster cluster(options, 0);
  RunProgress& run = cluster.shared->run;
  if (!cluster.wait_for([&] { return cluster.shared->replicas[0].steady_ns.load() != 0; }, std::chrono::seconds(10))) {
    std::fprintf(stderr, "mu-bench: no leader\n");
    return 1;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // warm up
  const std::uint64_t before = run.commands_applied.load();
  const auto started = Steady::now();
  std::this_thread::sleep_for(std::chrono::seconds(options.seconds));
  const std::uint64_t after = run.commands_applied.load();
  const double seconds = std::chrono::duration<double>(Steady::now() - started).count();
  run.done = 1;
  std::printf("  throughput: %.0f commands/s committed and applied at the leader (64 B commands, up to %d in flight "
              "per leader, %.1f s)\n",
              static_cast<double>(after - before) / seconds, options.window, seconds);
  return 0;
}

int run_failover(const Options& options) {
  std::vector<double> total, detection, switching, recovery, to_steady;
  int failures = 0;
  for (int run = 0; run < options.runs; ++run) {
    Cluster cluster(options, run);
    auto& stats = cluster.shared->replicas;
    if (!cluster.wait_for([&] { return stats[0].first_commit_ns.load() != 0; }, std::chrono::seconds(10))) {
      ++failures;
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a settled, healthy cluster
    for (fabric::NodeId id = 1; id < replica_count; ++id) {
      stats[id].candidate_ns = 0;
      stats[id].leading_ns = 0;
      stats[id].steady_ns = 0;
      stats[id].first_commit_ns = 0;
    }
    const std::uint64_t signalled = now_ns();
    ::kill(cluster.pid(0), options.kill_leader ? SIGKILL : SIGSTOP);
    fabric::NodeId winner = 0;
    const bool replaced = cluster.wait_for(
        [&] {
          for (fabric::NodeId id = 1; id < replica_count; ++id) {
            if (stats[id].first_commit_ns.load() != 0) {
              winner = id;
              return true;
            }
          }
          return false;
        },
        std::chrono::seconds(10));
    if (!replaced) {
      ++failures;
      continue;
    }
    const auto& won = stats[winner];
    if (won.candidate_ns.load() < signalled || won.leading_ns.load() < won.candidate_ns.load() ||
        won.first_commit_ns.load() < won.leading_ns.load()) {
      ++failures;  // stamps out of order: a leader change that began before the signal
      continue;
    }
    total.push_back(static_cast<double>(won.first_commit_ns - signalled));
    detection.push_back(static_cast<double>(won.candidate_ns - signalled));
    switching.push_back(static_cast<double>(won.leading_ns - won.candidate_ns));
    recovery.push_back(static_cast<double>(won.first_commit_ns - won.leading_ns));
    to_steady.push_back(static_cast<double>(won.steady_ns - won.leading_ns));
  }
  if (total.empty()) {
    std::printf("  failover (%s): no run completed\n", options.kill_leader ? "SIGKILL" : "SIGSTOP");
    return 1;
  }
  const auto t = percentiles(total), d = percentiles(detection), s = percentiles(switching), r = percentiles(recovery),
             u = percentiles(to_steady);
  std::printf("  failover after %s of the leader, %zu runs (%d failed): to first commit p50 %.0f us p90 %.0f us "
              "p99 %.0f us max %.0f us\n",
              options.kill_leader ? "SIGKILL" : "SIGSTOP", total.size(), failures, t.p50 / 1e3, t.p90 / 1e3,
              t.p99 / 1e3, *std::max_element(total.begin(), total.end()) / 1e3);
  std::printf("    detection p50 %.0f us p99 %.0f us | permission switch p50 %.0f us p99 %.0f us | recovery and first "
              "commit p50 %.0f us p99 %.0f us (of which recovery, to steady, p50 %.0f us)\n",
              d.p50 / 1e3, d.p99 / 1e3, s.p50 / 1e3, s.p99 / 1e3, r.p50 / 1e3, r.p99 / 1e3, u.p50 / 1e3);
  // Runs spoiled by a leader change that began before the signal are reported, not fatal:
  // on a noisy machine false suspicions happen (see docs/PERFORMANCE.md).
  return 0;
}

int run_idle(const Options& options) {
  Cluster cluster(options, 0);
  auto& stats = cluster.shared->replicas;
  if (!cluster.wait_for([&] { return stats[0].steady_ns.load() != 0; }, std::chrono::seconds(10))) {
    std::printf("  idle: no leader was elected\n");
    return 1;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::uint64_t grants_before = 0;
  for (auto& replica : stats) grants_before += replica.grants_served;
  std::this_thread::sleep_for(std::chrono::seconds(options.seconds));
  std::uint64_t grants_after = 0;
  bool someone_else_stood = false;
  for (fabric::NodeId id = 0; id < replica_count; ++id) {
    grants_after += stats[id].grants_served;
    if (id != 0 && stats[id].candidate_ns.load() != 0) someone_else_stood = true;
  }
  std::printf("  idle for %d s: %llu permission grants after the first election, %s\n", options.seconds,
              static_cast<unsigned long long>(grants_after - grants_before),
              someone_else_stood ? "ANOTHER REPLICA STOOD FOR ELECTION" : "no other replica stood for election");
  return grants_after == grants_before && !someone_else_stood ? 0 : 1;
}

int run_stalls(const Options& options) {
  std::array<pid_t, replica_count> pids{};
  for (auto& pid : pids) {
    pid = ::fork();
    if (pid != 0) continue;
    const auto started = Steady::now();
    auto last = started;
    std::uint64_t over_1ms = 0, over_5ms = 0;
    double max_gap_us = 0;
    while (Steady::now() - started < std::chrono::seconds(options.seconds)) {
      const timespec pause{0, 50'000};
      ::nanosleep(&pause, nullptr);
      const auto now = Steady::now();
      const double gap_us = std::chrono::duration<double, std::micro>(now - last).count();
      last = now;
      max_gap_us = std::max(max_gap_us, gap_us);
      over_1ms += gap_us > 1000 ? 1 : 0;
      over_5ms += gap_us > 5000 ? 1 : 0;
    }
    std::printf("  sleeper %d: longest gap %.0f us, gaps over 1 ms: %llu, over 5 ms: %llu\n", ::getpid(), max_gap_us,
                static_cast<unsigned long long>(over_1ms), static_cast<unsigned long long>(over_5ms));
    std::fflush(stdout);
    std::_Exit(0);
  }
  for (const pid_t pid : pids) ::waitpid(pid, nullptr, 0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (argc >= 2) options.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (flag == "--iterations" && value) options.iterations = std::clamp(std::atoi(value), 100, max_iterations), ++i;
    else if (flag == "--runs" && value) options.runs = std::max(1, std::atoi(value)), ++i;
    else if (flag == "--seconds" && value) options.seconds = std::max(1, std::atoi(value)), ++i;
    else if (flag == "--window" && value) options.window = std::max(1, std::atoi(value)), ++i;
    else if (flag == "--signal" && value) options.kill_leader = std::string(value) == "kill", ++i;
    else if (flag == "--idle" && value) options.idle = value, ++i;
    else if (flag == "--backend" && value) options.backend = fabric::parse_backend(value), ++i;
    else if (flag == "--read-interval-us" && value) options.read_interval_us = std::strtoull(value, nullptr, 10), ++i;
    else if (flag == "--failure-reads" && value) options.failure_reads = static_cast<std::uint32_t>(std::atoi(value)), ++i;
    else {
      std::fprintf(stderr, "usage: mu-bench latency|throughput|failover|idle [options] (see the file header)\n");
      return 2;
    }
  }
  std::printf("mu-bench %s: 3 replicas as 3 processes on %s, idle strategy %s, %u cores\n", options.mode.c_str(),
              std::string(fabric::backend_name(options.backend)).c_str(), options.idle.c_str(),
              std::thread::hardware_concurrency());
  std::fflush(stdout);
  if (options.mode == "latency") return run_latency(options);
  if (options.mode == "throughput") return run_throughput(options);
  if (options.mode == "failover") return run_failover(options);
  if (options.mode == "idle") return run_idle(options);
  if (options.mode == "stalls") return run_stalls(options);
  std::fprintf(stderr, "mu-bench: unknown mode %s\n", options.mode.c_str());
  return 2;
}
