// The shm backend with real processes: files and permissions on disk, restarts, revokes
// racing writes from several processes, and peers that stop or die.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "fabric/shm/mapped_file.hpp"
#include "fabric/shm/shm_layout.hpp"
#include "fabric_test_support.hpp"

namespace mu::fabric {
namespace {

using namespace std::chrono_literals;

std::string cluster_directory(const std::string& cluster) { return "/dev/shm/mu-" + cluster; }

mode_t permission_bits(const std::string& path) {
  struct stat status{};
  if (::stat(path.c_str(), &status) != 0) return 07777;
  return status.st_mode & 07777;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// A child process running `body`; its exit code is body's result. Killed if still alive
// when the test ends, so a failing test never leaves processes behind.
class ChildProcess {
 public:
  explicit ChildProcess(const std::function<int()>& body) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int code = 99;
      try {
        code = body();
      } catch (const std::exception& error) {
        std::fprintf(stderr, "child %d: %s\n", ::getpid(), error.what());
      }
      std::_Exit(code);
    }
  }
  ~ChildProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  int wait_exit_code() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void kill_and_reap() {
    ::kill(pid_, SIGKILL);
    wait_exit_code();
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// A one-way byte channel between parent and child.
class Pipe {
 public:
  Pipe() { EXPECT_EQ(::pipe(ends_.data()), 0); }
  ~Pipe() { ::close(ends_[0]); ::close(ends_[1]); }
  template <std::size_t N>
  void send(const std::array<std::byte, N>& bytes) {
    EXPECT_EQ(::write(ends_[1], bytes.data(), N), static_cast<ssize_t>(N));
  }
  template <std::size_t N>
  std::array<std::byte, N> receive() {
    std::array<std::byte, N> bytes{};
    std::size_t got = 0;
    while (got < N) {
      const ssize_t n = ::read(ends_[0], bytes.data() + got, N - got);
      if (n <= 0) throw FabricError("pipe closed");
      got += static_cast<std::size_t>(n);
    }
    return bytes;
  }

 private:
  std::array<int, 2> ends_{};
};

// Memory shared with forked children, for flags and counters.
template <typename T>
class SharedObject {
 public:
  SharedObject() {
    memory_ = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    object_ = new (memory_) T{};
  }
  ~SharedObject() { ::munmap(memory_, sizeof(T)); }
  T& operator*() { return *object_; }
  T* operator->() { return object_; }

 private:
  void* memory_;
  T* object_;
};

// A unique cluster name whose directory is removed when the test ends, even when a killed
// child left its files behind. Declare it first, so it outlives every fabric of the test.
struct ScopedCluster {
  explicit ScopedCluster(const std::string& stem) : name(testing::unique_cluster_name(stem)) {}
  ~ScopedCluster() {
    std::error_code ignored;
    std::filesystem::remove_all(cluster_directory(name), ignored);
  }
  ScopedCluster(const ScopedCluster&) = delete;
  ScopedCluster& operator=(const ScopedCluster&) = delete;
  std::string name;
};

FabricConfig shm_config(NodeId node_id, const std::string& cluster) {
  return testing::config_for(Backend::shm, node_id, cluster);
}

TEST(ShmFiles, RegionsArePrivateFilesInAPrivatePerClusterDirectory) {
  const ScopedCluster scoped_cluster("files");
  const std::string& cluster = scoped_cluster.name;
  const std::string directory = cluster_directory(cluster);
  {
    auto fabric = create_fabric(shm_config(3, cluster));
    auto region = fabric->register_region(4096);
    EXPECT_EQ(permission_bits(directory), 0700u);
    EXPECT_EQ(permission_bits(directory + "/node-3.control"), 0600u);
    const auto key = region->descriptor().key;
    const std::string region_file = directory + "/node-3.region-" + std::to_string(shm::region_key_slot(key)) + "-" +
                                    std::to_string(shm::region_key_generation(key));
    EXPECT_EQ(permission_bits(region_file), 0600u);
    region.reset();
    EXPECT_FALSE(exists(region_file));
  }
  EXPECT_FALSE(exists(directory + "/node-3.control"));
  EXPECT_FALSE(exists(directory)) << "the last node of a cluster removes its directory";
}

// How many pages of a mapping this process's page table maps now (/proc/self/pagemap:
// bit 63 of each page's entry), without touching them.
std::size_t pages_mapped(const std::byte* data, std::size_t bytes) {
  const long page_bytes = ::sysconf(_SC_PAGESIZE);
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open /proc/self/pagemap");
  std::size_t mapped = 0;
  const auto first_page = reinterpret_cast<std::uintptr_t>(data) / static_cast<std::uintptr_t>(page_bytes);
  for (std::size_t page = 0; page < bytes / static_cast<std::size_t>(page_bytes); ++page) {
    std::uint64_t entry = 0;
    const auto offset = static_cast<off_t>((first_page + page) * sizeof entry);
    if (::pread(fd, &entry, sizeof entry, offset) != static_cast<ssize_t>(sizeof entry)) break;
    mapped += (entry >> 63) & 1u;
  }
  ::close(fd);
  return mapped;
}

// Registering memory with an RDMA NIC pins it; shm maps its files populated for the same
// reason: the first write to each page would otherwise take a page fault in the writer
// (several microseconds here, measured as the p99 of replication on a fresh log) and the
// first prepare after a failover one per page of its scratch window. A peer's region
// attached while the engine runs is not populated: that would stall the engine thread.
TEST(ShmFiles, RegionsAreMappedWithEveryPagePresentExceptWhereAttachedWhileRunning) {
  const ScopedCluster scoped_cluster("populated");
  const std::string directory = shm::prepare_cluster_directory("/dev/shm", scoped_cluster.name);
  const std::string path = directory + "/populated-region";
  constexpr std::size_t region_bytes = 1 << 20;
  const std::size_t pages = region_bytes / static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  {
    const shm::MappedFile created = shm::MappedFile::create(path, region_bytes);
    EXPECT_EQ(pages_mapped(created.data(), created.size_bytes()), pages) << "the owner's mapping";
    const shm::MappedFile attached = shm::MappedFile::open(path, region_bytes, shm::MappedFile::Populate::all_pages);
    EXPECT_EQ(pages_mapped(attached.data(), attached.size_bytes()), pages) << "a peer's mapping of it, at start-up";
    const shm::MappedFile lazily =
        shm::MappedFile::open(path, region_bytes, shm::MappedFile::Populate::on_first_touch);
    EXPECT_EQ(pages_mapped(lazily.data(), lazily.size_bytes()), 0u) << "a peer's mapping of it, while running";
  }
  std::filesystem::remove(path);
  std::filesystem::remove(directory);
}

// A region its file system cannot hold is refused when it is created, with the reason,
// and leaves no file behind, instead of SIGBUS at the first write to a page the file
// system has no room for. Twice the size of the whole tmpfs: refused before any page is
// allocated.
TEST(ShmFiles, ARegionLargerThanItsFileSystemIsRefusedAtCreation) {
  const ScopedCluster scoped_cluster("allocate");
  const std::string directory = shm::prepare_cluster_directory("/dev/shm", scoped_cluster.name);
  const std::string path = directory + "/too-large";
  struct statvfs file_system{};
  ASSERT_EQ(::statvfs("/dev/shm", &file_system), 0);
  const std::size_t too_large = 2 * static_cast<std::size_t>(file_system.f_blocks) * file_system.f_frsize;
  try {
    shm::MappedFile::create(path, too_large);
    FAIL() << "a region of " << too_large << " bytes was created on a tmpfs of half that";
  } catch (const FabricError& error) {
    EXPECT_NE(std::string(error.what()).find("cannot allocate"), std::string::npos) << error.what();
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  std::filesystem::remove(directory);
}

TEST(ShmFiles, ASecondLiveInstanceOfANodeIsRefused) {
  const ScopedCluster scoped_cluster("twice");
  const std::string& cluster = scoped_cluster.name;
  auto first = create_fabric(shm_config(4, cluster));
  try {
    create_fabric(shm_config(4, cluster));
    FAIL() << "a second node 4 was accepted";
  } catch (const FabricError& error) {
    EXPECT_NE(std::string(error.what()).find("already running"), std::string::npos) << error.what();
  }
}

TEST(ShmFiles, ARestartedNodeReplacesTheFilesOfItsDeadIncarnation) {
  const ScopedCluster scoped_cluster("restart");
  const std::string& cluster = scoped_cluster.name;
  const std::string directory = cluster_directory(cluster);
  Pipe ready;
  ChildProcess crashed([&] {
    auto fabric = create_fabric(shm_config(5, cluster));
    auto region = fabric->register_region(4096);
    ready.send(std::array<std::byte, 1>{});
    ::pause();  // killed here, leaving its files behind
    return 0;
  });
  ready.receive<1>();
  crashed.kill_and_reap();
  EXPECT_TRUE(exists(directory + "/node-5.control"));
  auto restarted = create_fabric(shm_config(5, cluster));
  auto region = restarted->register_region(4096);
  EXPECT_EQ(permission_bits(directory + "/node-5.control"), 0600u);
}

// Endpoint and region descriptor of a target, as its initiator receives them.
struct TargetInfo {
  std::array<std::byte, EndpointInfo::encoded_bytes> endpoint;
  std::array<std::byte, RegionDescriptor::encoded_bytes> region;
};

// The hammer: several processes write into their own cells of one target region as fast
// as they can, reconnecting whenever refused, while the target repeatedly grants and
// revokes. After each revoke settles, the region must never change again until the next
// grant, even though writes were in flight when the revoke began.
TEST(ShmRevoke, NothingLandsAfterARevokeSettlesWhileSeveralProcessesHammer) {
  constexpr int writer_count = 3;
  constexpr int rounds = 60;
  constexpr std::size_t cell_bytes = 64;
  const ScopedCluster scoped_cluster("hammer");
  const std::string& cluster = scoped_cluster.name;

  struct Shared {
    std::atomic<bool> stop{false};
    std::array<std::atomic<std::uint64_t>, writer_count> writes_landed{};
    std::array<std::atomic<std::uint64_t>, writer_count> writes_refused{};
  };
  SharedObject<Shared> shared;

  auto target = create_fabric(shm_config(0, cluster));
  auto queue = target->create_completion_queue(64);
  auto memory = target->register_region(cell_bytes * writer_count);
  std::array<Pipe, writer_count> to_writer;
  std::array<Pipe, writer_count> from_writer;
  std::vector<std::unique_ptr<ChildProcess>> writers;

  for (int w = 0; w < writer_count; ++w) {
    writers.push_back(std::make_unique<ChildProcess>([&, w] {
      auto fabric = create_fabric(shm_config(static_cast<NodeId>(w + 1), cluster));
      auto writer_queue = fabric->create_completion_queue(64);
      auto connection = fabric->create_connection(writer_queue);
      auto source = fabric->register_region(cell_bytes);
      from_writer[w].send(connection->local_endpoint().encode());
      const auto info = to_writer[w].receive<sizeof(TargetInfo)>();
      TargetInfo target_info;
      std::memcpy(&target_info, info.data(), sizeof target_info);
      const auto target_endpoint = EndpointInfo::decode(target_info.endpoint);
      auto region = fabric->attach_remote_region(RegionDescriptor::decode(target_info.region), Fabric::AttachTiming::at_startup);
      connection->connect(target_endpoint, access_none);
      for (std::uint64_t counter = 1; !shared->stop.load(); ++counter) {
        for (std::size_t i = 0; i < cell_bytes; i += 8) std::memcpy(source->data() + i, &counter, 8);
        WriteRequest request;
        request.work_id = counter;
        request.remote = region.get();
        request.remote_offset = static_cast<std::uint64_t>(w) * cell_bytes;
        request.local_region = source.get();
        request.length = cell_bytes;
        if (connection->post_write(request) != PostStatus::posted) continue;
        const auto completion = testing::wait_for_completion(*writer_queue, 5s);
        if (!completion) return 3;
        if (completion->status == CompletionStatus::success) {
          shared->writes_landed[w].fetch_add(1);
        } else {
          shared->writes_refused[w].fetch_add(1);
          connection->reset();
          connection->connect(target_endpoint, access_none);
        }
      }
      return 0;
    }));
  }

  std::vector<std::unique_ptr<Connection>> connections;
  for (int w = 0; w < writer_count; ++w) {
    const auto endpoint = EndpointInfo::decode(from_writer[w].receive<EndpointInfo::encoded_bytes>());
    connections.push_back(target->create_connection(queue));
    connections.back()->connect(endpoint, access_none);
    TargetInfo info{connections.back()->local_endpoint().encode(), memory->descriptor().encode()};
    std::array<std::byte, sizeof(TargetInfo)> bytes;
    std::memcpy(bytes.data(), &info, sizeof info);
    to_writer[w].send(bytes);
  }

  int revokes_found_writes_in_flight = 0;
  for (int round = 0; round < rounds; ++round) {
    // Grant: reconnect each end with write access; writers reconnect when refused.
    std::array<std::uint64_t, writer_count> landed_before{};
    for (int w = 0; w < writer_count; ++w) {
      landed_before[w] = shared->writes_landed[w].load();
      const EndpointInfo endpoint = connections[w]->remote_endpoint();
      connections[w]->reset();
      connections[w]->connect(endpoint, access_remote_write);
    }
    // Let every writer land some writes, so each revoke races live traffic.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (int w = 0; w < writer_count; ++w) {
      while (shared->writes_landed[w].load() < landed_before[w] + 3 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
      }
      ASSERT_GE(shared->writes_landed[w].load(), landed_before[w] + 3) << "writer " << w << " made no progress";
    }
    // Each cell is copied the instant its revoke settles: a write still landing after
    // that (the bug this test exists to catch) shows up as a changed cell below.
    std::vector<std::byte> settled(memory->size_bytes());
    for (int w = 0; w < writer_count; ++w) {
      const ChangeStatus status = connections[w]->change_access(access_none, AccessPath::fast);
      revokes_found_writes_in_flight += status == ChangeStatus::pending;
      ASSERT_TRUE(testing::wait_until_settled(*connections[w], status));
      const std::size_t cell = static_cast<std::size_t>(w) * cell_bytes;
      std::memcpy(settled.data() + cell, memory->data() + cell, cell_bytes);
    }
    std::this_thread::sleep_for(5ms);  // writers keep trying (and reconnecting) meanwhile
    const std::vector<std::byte> later(memory->data(), memory->data() + memory->size_bytes());
    ASSERT_EQ(settled, later) << "a write landed after the revoke settled, round " << round;
  }
  shared->stop.store(true);
  for (int w = 0; w < writer_count; ++w) {
    EXPECT_EQ(writers[w]->wait_exit_code(), 0);
    EXPECT_GE(shared->writes_refused[w].load(), static_cast<std::uint64_t>(rounds)) << "writer " << w;
  }
  std::printf("hammer: %d rounds x %d writers, %d revokes had to wait for an in-flight write\n", rounds,
              writer_count, revokes_found_writes_in_flight);
  connections.clear();
}

// Node 0's end of a connection whose peer lives in a child process.
struct TargetEnd {
  explicit TargetEnd(const std::string& cluster)
      : fabric(create_fabric(shm_config(0, cluster))),
        queue(fabric->create_completion_queue(16)),
        connection(fabric->create_connection(queue)) {}
  std::shared_ptr<Fabric> fabric;
  std::shared_ptr<CompletionQueue> queue;
  std::unique_ptr<Connection> connection;
};

// A peer (node 1, a child process) connected to a target's connection that stops itself
// inside an operation, standing in for a process descheduled mid-copy: it announces an
// operation in its own connection slot exactly as the data path does, then raises SIGSTOP
// before ending it. With `drop_fabric_first` it also shuts its fabric down in between, so
// its liveness word already reads dead while the process (and the copy) still exists.
class PeerStoppedInsideAnOperation {
 public:
  PeerStoppedInsideAnOperation(const std::string& cluster, Connection& target_connection, AccessFlags access,
                               bool drop_fabric_first = false)
      : process_([&] { return run(cluster, drop_fabric_first); }) {
    target_connection.connect(EndpointInfo::decode(endpoint_pipe_.receive<EndpointInfo::encoded_bytes>()), access);
    go_.send(std::array<std::byte, 1>{});
    int status = 0;
    EXPECT_EQ(::waitpid(process_.pid(), &status, WUNTRACED), process_.pid());
    EXPECT_TRUE(WIFSTOPPED(status));
  }
  ChildProcess& process() { return process_; }
  void resume() { ::kill(process_.pid(), SIGCONT); }

 private:
  int run(const std::string& cluster, bool drop_fabric_first) {
    auto fabric = create_fabric(shm_config(1, cluster));
    auto queue = fabric->create_completion_queue(16);
    auto connection = fabric->create_connection(queue);
    const std::uint32_t slot_index = connection->id();
    endpoint_pipe_.send(connection->local_endpoint().encode());
    go_.receive<1>();
    const auto control = shm::MappedFile::open(cluster_directory(cluster) + "/node-1.control", sizeof(shm::ControlBlock),
                                                shm::MappedFile::Populate::all_pages);
    auto& slot = reinterpret_cast<shm::ControlBlock*>(control.data())->connections[slot_index];
    const std::uint64_t sequence = slot.operation_sequence.load();
    slot.operation_sequence.store(sequence + 1);
    if (drop_fabric_first) {
      connection.reset();
      queue.reset();
      fabric.reset();
    }
    ::raise(SIGSTOP);
    slot.operation_sequence.store(sequence + 2);
    return 0;
  }

  Pipe endpoint_pipe_;
  Pipe go_;
  ChildProcess process_;
};

// A peer stopped in the middle of an operation holds a revoke pending: its write could
// still land. Death (kernel-reported) or resumption settles it; nothing is guessed.
class ShmStoppedPeer : public ::testing::TestWithParam<bool> {};

TEST_P(ShmStoppedPeer, RevokeIsPendingUntilTheStoppedPeerDiesOrResumes) {
  const bool kill_it = GetParam();
  const ScopedCluster scoped_cluster("stopped");
  const std::string& cluster = scoped_cluster.name;
  TargetEnd target(cluster);
  auto& connection = target.connection;
  PeerStoppedInsideAnOperation peer(cluster, *connection, access_remote_all);

  EXPECT_EQ(connection->change_access(access_none, AccessPath::fast), ChangeStatus::pending);
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(connection->access_change_settled());
  if (kill_it) {
    peer.process().kill_and_reap();
  } else {
    peer.resume();
  }
  EXPECT_TRUE(testing::wait_until_settled(*connection, ChangeStatus::pending, 5s));
  if (!kill_it) {
    EXPECT_EQ(peer.process().wait_exit_code(), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(DiesOrResumes, ShmStoppedPeer, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                           return std::string(param_info.param ? "Killed" : "Resumed");
                         });

// A second change while the first is pending must not report settled while the new flags
// still forbid what the stopped operation may do.
TEST(ShmStoppedPeer, AFurtherNarrowChangeStaysPendingBehindTheFirst) {
  const ScopedCluster scoped_cluster("stopped2");
  const std::string& cluster = scoped_cluster.name;
  TargetEnd target(cluster);
  auto& connection = target.connection;
  PeerStoppedInsideAnOperation peer(cluster, *connection, access_remote_all);

  EXPECT_EQ(connection->change_access(access_none, AccessPath::fast), ChangeStatus::pending);
  EXPECT_EQ(connection->change_access(access_remote_read, AccessPath::fast), ChangeStatus::pending);
  EXPECT_FALSE(connection->access_change_settled());
  peer.resume();
  EXPECT_TRUE(testing::wait_until_settled(*connection, ChangeStatus::pending, 5s));
  EXPECT_EQ(peer.process().wait_exit_code(), 0);
}

// A reset does not wait for an operation already past its checks, so that operation must
// hold every later access change pending, even one that narrows nothing any more.
TEST(ShmStoppedPeer, AnOperationInFlightAcrossAResetHoldsLaterChangesPending) {
  const ScopedCluster scoped_cluster("stopped3");
  const std::string& cluster = scoped_cluster.name;
  TargetEnd target(cluster);
  auto& connection = target.connection;
  PeerStoppedInsideAnOperation peer(cluster, *connection, access_remote_all);

  const EndpointInfo remote = connection->remote_endpoint();
  connection->reset();
  EXPECT_EQ(connection->change_access(access_none, AccessPath::fast), ChangeStatus::pending);
  connection->connect(remote, access_none);
  EXPECT_EQ(connection->change_access(access_none, AccessPath::robust), ChangeStatus::pending);
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(connection->access_change_settled());
  peer.process().kill_and_reap();
  EXPECT_TRUE(testing::wait_until_settled(*connection, ChangeStatus::pending, 5s));
}

// The liveness word turns dead when the thread holding it goes, which can be before other
// threads of the process stop running. Only the process's exit (pidfd) settles a revoke.
TEST(ShmStoppedPeer, ALivenessWordThatReadsDeadIsNotEnoughWhileTheProcessRuns) {
  const ScopedCluster scoped_cluster("stopped4");
  const std::string& cluster = scoped_cluster.name;
  TargetEnd target(cluster);
  auto& connection = target.connection;
  PeerStoppedInsideAnOperation peer(cluster, *connection, access_remote_all, /*drop_fabric_first=*/true);

  EXPECT_EQ(connection->change_access(access_none, AccessPath::fast), ChangeStatus::pending);
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(connection->access_change_settled());
  peer.process().kill_and_reap();
  EXPECT_TRUE(testing::wait_until_settled(*connection, ChangeStatus::pending, 5s));
}

// A restarted initiator reusing the node id and connection slot of the incarnation the
// target granted is a different process: it must be refused until the target reconnects.
TEST(ShmRestart, ARestartedInitiatorDoesNotInheritTheGrantOfItsPredecessor) {
  const ScopedCluster scoped_cluster("reincarnated");
  const std::string& cluster = scoped_cluster.name;
  auto target = create_fabric(shm_config(0, cluster));
  auto target_queue = target->create_completion_queue(16);
  auto target_connection = target->create_connection(target_queue);
  auto memory = target->register_region(4096);
  Pipe endpoint_pipe;
  std::uint32_t predecessor_slot = 0;
  {
    ChildProcess predecessor([&] {
      auto fabric = create_fabric(shm_config(1, cluster));
      auto queue = fabric->create_completion_queue(16);
      auto connection = fabric->create_connection(queue);
      endpoint_pipe.send(connection->local_endpoint().encode());
      ::pause();
      return 0;
    });
    const auto predecessor_endpoint = EndpointInfo::decode(endpoint_pipe.receive<EndpointInfo::encoded_bytes>());
    predecessor_slot = predecessor_endpoint.queue_number;
    target_connection->connect(predecessor_endpoint, access_remote_all);
    predecessor.kill_and_reap();
  }

  auto successor = create_fabric(shm_config(1, cluster));
  auto queue = successor->create_completion_queue(16);
  auto connection = successor->create_connection(queue);
  ASSERT_EQ(connection->id(), predecessor_slot) << "the test needs the successor to reuse the slot";
  connection->connect(target_connection->local_endpoint(), access_none);
  auto remote = successor->attach_remote_region(memory->descriptor(), Fabric::AttachTiming::at_startup);
  const std::array<std::byte, 8> payload{std::byte{0x5a}, std::byte{0x5a}, std::byte{0x5a}, std::byte{0x5a},
                                         std::byte{0x5a}, std::byte{0x5a}, std::byte{0x5a}, std::byte{0x5a}};
  WriteRequest request;
  request.work_id = 7;
  request.remote = remote.get();
  request.inline_payload = payload;
  ASSERT_EQ(connection->post_write(request), PostStatus::posted);
  const auto completion = testing::wait_for_completion(*queue);
  ASSERT_TRUE(completion.has_value());
  EXPECT_EQ(completion->status, CompletionStatus::peer_unreachable);
  for (std::size_t i = 0; i < payload.size(); ++i) EXPECT_EQ(memory->data()[i], std::byte{0}) << "byte " << i;
}

// A region descriptor names one incarnation of its owner: after a restart it is refused.
TEST(ShmRestart, ARegionDescriptorFromAnEarlierIncarnationIsRefused) {
  const ScopedCluster scoped_cluster("staledescriptor");
  const std::string& cluster = scoped_cluster.name;
  auto initiator = create_fabric(shm_config(0, cluster));
  RegionDescriptor stale;
  {
    auto owner = create_fabric(shm_config(1, cluster));
    auto region = owner->register_region(4096);
    stale = region->descriptor();
  }
  auto owner = create_fabric(shm_config(1, cluster));
  auto region = owner->register_region(4096);
  ASSERT_EQ(region->descriptor().key, stale.key) << "the test needs the same slot and generation";
  EXPECT_THROW(initiator->attach_remote_region(stale, Fabric::AttachTiming::at_startup), FabricError);
  EXPECT_NO_THROW(initiator->attach_remote_region(region->descriptor(), Fabric::AttachTiming::at_startup));
}

// A write into a dead target must not report success: the leader would count an
// acknowledgement from a replica whose memory is gone.
TEST(ShmPeerDeath, WritesToADeadTargetReportItUnreachable) {
  const ScopedCluster scoped_cluster("deadtarget");
  const std::string& cluster = scoped_cluster.name;
  auto initiator = create_fabric(shm_config(0, cluster));
  auto queue = initiator->create_completion_queue(16);
  auto connection = initiator->create_connection(queue);
  auto source = initiator->register_region(64);
  Pipe to_target;
  Pipe from_target;
  ChildProcess target([&] {
    auto fabric = create_fabric(shm_config(1, cluster));
    auto target_queue = fabric->create_completion_queue(16);
    auto end = fabric->create_connection(target_queue);
    auto memory = fabric->register_region(4096);
    const auto initiator_endpoint = EndpointInfo::decode(to_target.receive<EndpointInfo::encoded_bytes>());
    end->connect(initiator_endpoint, access_remote_all);
    TargetInfo info{end->local_endpoint().encode(), memory->descriptor().encode()};
    std::array<std::byte, sizeof(TargetInfo)> bytes;
    std::memcpy(bytes.data(), &info, sizeof info);
    from_target.send(bytes);
    ::pause();
    return 0;
  });
  to_target.send(connection->local_endpoint().encode());
  const auto bytes = from_target.receive<sizeof(TargetInfo)>();
  TargetInfo info;
  std::memcpy(&info, bytes.data(), sizeof info);
  connection->connect(EndpointInfo::decode(info.endpoint), access_none);
  auto remote = initiator->attach_remote_region(RegionDescriptor::decode(info.region), Fabric::AttachTiming::at_startup);

  WriteRequest request;
  request.work_id = 1;
  request.remote = remote.get();
  request.local_region = source.get();
  request.length = 64;
  ASSERT_EQ(connection->post_write(request), PostStatus::posted);
  EXPECT_EQ(testing::wait_for_completion(*queue)->status, CompletionStatus::success);

  target.kill_and_reap();
  request.work_id = 2;
  ASSERT_EQ(connection->post_write(request), PostStatus::posted);
  const auto completion = testing::wait_for_completion(*queue);
  ASSERT_TRUE(completion.has_value());
  EXPECT_EQ(completion->status, CompletionStatus::peer_unreachable);
  EXPECT_EQ(connection->state(), ConnectionState::error);
}

}  // namespace
}  // namespace mu::fabric
