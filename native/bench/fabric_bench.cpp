// mu-fabric-bench: the floor that replication latency is compared to. For each backend:
// p50/p90/p99/p99.9 of one signaled one-sided WRITE and READ (post to completion, the
// initiator busy-polling its completion queue) for payloads of 8 B to 4 KiB, and the time
// of a permission switch at the target by the fast and the robust path.
//
// The target is a separate process (forked before any fabric exists, so verbs needs no
// fork support): the initiator's operations cross a process boundary as they will between
// replicas.
//
//   mu-fabric-bench [--backends shm,verbs] [--iterations N] [--switches N]
//   (verbs: MU_VERBS_DEVICE, MU_VERBS_GID_INDEX as for the tests)
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fabric/fabric.hpp"

namespace {

using namespace mu::fabric;
using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<Backend> backends{Backend::shm};
  int iterations = 100000;
  int switches = 20000;
};

Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (flag == "--backends" && value != nullptr) {
      options.backends.clear();
      std::string list = value;
      for (std::size_t start = 0; start <= list.size();) {
        const std::size_t end = std::min(list.find(',', start), list.size());
        if (end > start) options.backends.push_back(parse_backend(list.substr(start, end - start)));
        start = end + 1;
      }
      ++i;
    } else if (flag == "--iterations" && value != nullptr) {
      options.iterations = std::max(100, std::atoi(value));
      ++i;
    } else if (flag == "--switches" && value != nullptr) {
      options.switches = std::max(10, std::atoi(value));
      ++i;
    } else {
      std::fprintf(stderr, "usage: mu-fabric-bench [--backends shm,verbs] [--iterations N] [--switches N]\n");
      std::exit(2);
    }
  }
  return options;
}

FabricConfig config_for(Backend backend, NodeId node_id, const std::string& cluster) {
  FabricConfig config;
  config.backend = backend;
  config.node_id = node_id;
  config.cluster_name = cluster;
  if (const char* device = std::getenv("MU_VERBS_DEVICE")) config.verbs_device = device;
  if (const char* gid_index = std::getenv("MU_VERBS_GID_INDEX")) {
    config.verbs_gid_index = static_cast<std::uint8_t>(std::atoi(gid_index));
  }
  return config;
}

struct Percentiles {
  double p50_ns, p90_ns, p99_ns, p999_ns;
};

Percentiles percentiles(std::vector<double>& samples_ns) {
  std::sort(samples_ns.begin(), samples_ns.end());
  auto at = [&](double q) {
    return samples_ns[std::min(samples_ns.size() - 1, static_cast<std::size_t>(q * static_cast<double>(samples_ns.size())))];
  };
  return {at(0.50), at(0.90), at(0.99), at(0.999)};
}

void print_row(const char* what, std::size_t bytes, const char* note, Percentiles p) {
  std::printf("  %-16s %6zu B %-7s p50 %8.0f ns  p90 %8.0f ns  p99 %8.0f ns  p99.9 %8.0f ns\n", what, bytes, note,
              p.p50_ns, p.p90_ns, p.p99_ns, p.p999_ns);
}

// Blocking pipe helpers for the two processes' one-time exchange.
void send_all(int fd, const void* data, std::size_t bytes) {
  if (::write(fd, data, bytes) != static_cast<ssize_t>(bytes)) std::exit(3);
}
void receive_all(int fd, void* data, std::size_t bytes) {
  auto* at = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::read(fd, at, bytes);
    if (n <= 0) std::exit(3);
    at += n;
    bytes -= static_cast<std::size_t>(n);
  }
}

struct TargetInfo {
  std::array<std::byte, EndpointInfo::encoded_bytes> endpoint;
  std::array<std::byte, RegionDescriptor::encoded_bytes> region;
};

// The target process: registers a region, connects, waits for the initiator to finish,
// then times permission switches on its end and reports them.
int run_target(Backend backend, const std::string& cluster, int to_initiator, int from_initiator, int switches) {
  auto fabric = create_fabric(config_for(backend, 1, cluster));
  auto queue = fabric->create_completion_queue(64);
  auto connection = fabric->create_connection(queue);
  auto region = fabric->register_region(1 << 20);
  std::array<std::byte, EndpointInfo::encoded_bytes> initiator_endpoint;
  receive_all(from_initiator, initiator_endpoint.data(), initiator_endpoint.size());
  connection->connect(EndpointInfo::decode(initiator_endpoint), access_remote_all);
  const TargetInfo info{connection->local_endpoint().encode(), region->descriptor().encode()};
  send_all(to_initiator, &info, sizeof info);
  char done = 0;
  receive_all(from_initiator, &done, 1);

  for (const AccessPath path : {AccessPath::fast, AccessPath::robust}) {
    const int count = path == AccessPath::fast ? switches : std::max(10, switches / 20);
    std::vector<double> samples_ns;
    samples_ns.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
      const AccessFlags next = i % 2 == 0 ? access_none : access_remote_all;
      const auto start = Clock::now();
      ChangeStatus status = connection->change_access(next, path);
      while (status == ChangeStatus::pending && !connection->access_change_settled()) {
      }
      samples_ns.push_back(std::chrono::duration<double, std::nano>(Clock::now() - start).count());
      if (status == ChangeStatus::failed) return 4;
    }
    const Percentiles p = percentiles(samples_ns);
    send_all(to_initiator, &p, sizeof p);
  }
  return 0;
}

double time_one(Connection& connection, CompletionQueue& queue, const WriteRequest* write, const ReadRequest* read) {
  const auto start = Clock::now();
  const PostStatus posted = write != nullptr ? connection.post_write(*write) : connection.post_read(*read);
  if (posted != PostStatus::posted) {
    std::fprintf(stderr, "post failed (%d)\n", static_cast<int>(posted));
    std::exit(4);
  }
  Completion completion;
  while (queue.poll(std::span(&completion, 1)) == 0) {
  }
  const auto end = Clock::now();
  if (completion.status != CompletionStatus::success) {
    std::fprintf(stderr, "operation failed: %s\n", std::string(completion_status_name(completion.status)).c_str());
    std::exit(4);
  }
  return std::chrono::duration<double, std::nano>(end - start).count();
}

int run_backend(Backend backend, const Options& options) {
  const std::string cluster = "bench-" + std::to_string(::getpid());
  int to_initiator[2];
  int to_target[2];
  if (::pipe(to_initiator) != 0 || ::pipe(to_target) != 0) return 3;
  const pid_t target = ::fork();
  if (target == 0) {
    int code = 5;
    try {
      code = run_target(backend, cluster, to_initiator[1], to_target[0], options.switches);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "target: %s\n", error.what());
    }
    std::_Exit(code);
  }
  // The target creates its node first; node 0 is this process.
  auto fabric = create_fabric(config_for(backend, 0, cluster));
  auto queue = fabric->create_completion_queue(64);
  auto connection = fabric->create_connection(queue);
  auto local = fabric->register_region(1 << 20);
  const auto endpoint = connection->local_endpoint().encode();
  send_all(to_target[1], endpoint.data(), endpoint.size());
  TargetInfo info;
  receive_all(to_initiator[0], &info, sizeof info);
  connection->connect(EndpointInfo::decode(info.endpoint), access_none);
  auto remote = fabric->attach_remote_region(RegionDescriptor::decode(info.region), Fabric::AttachTiming::at_startup);

  std::printf("backend %s: target in process %d, %d iterations per row, busy-polling initiator\n",
              std::string(backend_name(backend)).c_str(), target, options.iterations);
  const int warmup = std::min(1000, options.iterations / 10);
  // The same-run baseline: a local memcpy of the same size, timed the same way (two clock
  // reads included). On a noisy shared machine ratios to it mean more than nanoseconds.
  std::array<double, 5> baseline_p50_ns{};
  std::size_t row = 0;
  for (const std::size_t bytes : {8u, 64u, 256u, 1024u, 4096u}) {
    std::vector<double> samples_ns;
    samples_ns.reserve(static_cast<std::size_t>(options.iterations));
    for (int i = 0; i < warmup + options.iterations; ++i) {
      const auto start = Clock::now();
      std::memcpy(local->data() + 8192, local->data() + (i % 2 == 0 ? 0 : 16384), bytes);
      asm volatile("" ::: "memory");  // keep the copy from being optimized away
      const double ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
      if (i >= warmup) samples_ns.push_back(ns);
    }
    const Percentiles p = percentiles(samples_ns);
    baseline_p50_ns[row++] = p.p50_ns;
    print_row("baseline memcpy", bytes, "", p);
  }
  row = 0;
  for (const std::size_t bytes : {8u, 64u, 256u, 1024u, 4096u}) {
    const bool inline_payload = bytes <= fabric->max_inline_bytes();
    WriteRequest write;
    write.remote = remote.get();
    write.remote_offset = 4096;
    write.length = static_cast<std::uint32_t>(bytes);
    if (inline_payload) {
      write.inline_payload = std::span<const std::byte>(local->data(), bytes);
    } else {
      write.local_region = local.get();
    }
    std::vector<double> samples_ns;
    samples_ns.reserve(static_cast<std::size_t>(options.iterations));
    for (int i = 0; i < warmup + options.iterations; ++i) {
      write.work_id = static_cast<std::uint64_t>(i);
      const double ns = time_one(*connection, *queue, &write, nullptr);
      if (i >= warmup) samples_ns.push_back(ns);
    }
    const Percentiles p = percentiles(samples_ns);
    print_row("write", bytes, inline_payload ? "inline" : "", p);
    std::printf("  %-16s %6zu B         p50 is %.1fx the baseline memcpy\n", "  ratio", bytes,
                p.p50_ns / std::max(1.0, baseline_p50_ns[row++]));
  }
  for (const std::size_t bytes : {8u, 64u, 256u, 1024u, 4096u}) {
    ReadRequest read;
    read.remote = remote.get();
    read.remote_offset = 4096;
    read.local_region = local.get();
    read.local_offset = 65536;
    read.length = static_cast<std::uint32_t>(bytes);
    std::vector<double> samples_ns;
    samples_ns.reserve(static_cast<std::size_t>(options.iterations));
    for (int i = 0; i < warmup + options.iterations; ++i) {
      read.work_id = static_cast<std::uint64_t>(i);
      const double ns = time_one(*connection, *queue, nullptr, &read);
      if (i >= warmup) samples_ns.push_back(ns);
    }
    print_row("read", bytes, "", percentiles(samples_ns));
  }
  const char done = 1;
  send_all(to_target[1], &done, 1);
  Percentiles fast{};
  Percentiles robust{};
  receive_all(to_initiator[0], &fast, sizeof fast);
  receive_all(to_initiator[0], &robust, sizeof robust);
  print_row("switch fast", 0, "", fast);
  print_row("switch robust", 0, "", robust);
  int status = 0;
  ::waitpid(target, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 6;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  int failures = 0;
  for (const Backend backend : options.backends) {
    try {
      failures += run_backend(backend, options) != 0;
    } catch (const std::exception& error) {
      std::fprintf(stderr, "backend %s: %s\n", std::string(backend_name(backend)).c_str(), error.what());
      ++failures;
    }
  }
  return failures == 0 ? 0 : 1;
}
