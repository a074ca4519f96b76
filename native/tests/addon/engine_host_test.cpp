// The engine host, as the addon uses it, without Node: three hosts in one process over
// shm (each with its own engine thread), driven from the test thread the way the addon's
// main thread drives them: submit, wait for a signal, drain events.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <thread>

#include "addon/engine_host.hpp"
#include "engine/command_batch.hpp"

namespace mu::addon {
namespace {

using Clock = std::chrono::steady_clock;

struct Observed {
  std::vector<std::pair<std::uint64_t, std::string>> applied;  // (log index, command)
  std::vector<std::uint64_t> applied_own_sequences;
  std::vector<std::uint64_t> dropped;
  std::vector<std::uint32_t> roles;
  std::vector<std::uint32_t> reconnected;  // 1 per successful reconnection
};

class Cluster {
 public:
  // With connect false, the hosts are made and left unconnected and unstarted.
  explicit Cluster(std::uint32_t replicas, bool connect = true) : replicas_(replicas) {
    static std::atomic<int> counter{0};
    name_ = "host-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    for (std::uint32_t id = 0; id < replicas; ++id) {
      signals_.push_back(std::make_unique<std::atomic<int>>(0));
      hosts_.push_back(make_host(id));
      observed_.emplace_back();
    }
    if (!connect) return;
    std::vector<std::vector<std::byte>> cards;
    for (auto& host : hosts_) cards.push_back(host->card());
    for (auto& host : hosts_) host->connect(cards);
    for (auto& host : hosts_) host->start();
  }
  ~Cluster() {
    for (auto& host : hosts_) host->stop();
  }

  std::unique_ptr<EngineHost> make_host(std::uint32_t id) {
    EngineHostConfig config;
    config.replica.leader.self = static_cast<fabric::NodeId>(id);
    config.replica.leader.replica_count = replicas_;
    config.replica.leader.log_area_bytes = 1 << 20;
    config.replica.leader.max_payload_bytes = 4096;
    config.event_ring_bytes = 64 * 1024;  // small, so backpressure is exercised
    config.fabric.cluster_name = name_;
    // Four threads on two cores here: a 20 ms detection window, so scheduling gaps do not
    // pass for failures (the sizing docs/PERFORMANCE.md recommends for shared cores).
    auto& detector = config.replica.background.detector;
    detector.read_interval_ns = 2'000'000;
    detector.heartbeat_interval_ns = 500'000;
    detector.max_score = 12;
    detector.failure_threshold = 2;
    detector.recovery_threshold = 9;
    config.replica.background.candidate_timeout_ns = 60'000'000;
    config.replica.background.candidate_backoff_ns = 20'000'000;
    config.replica.background.fate_sharing_timeout_ns = 200'000'000;
    std::atomic<int>* signal = signals_[id].get();
    return std::make_unique<EngineHost>(config, [signal] { signal->fetch_add(1); });
  }

  // Replaces replica `id` by a new incarnation (fresh regions and connection ends), as a
  // restarted process would be, and tells the others (what the control plane does).
  void restart(std::uint32_t id) {
    hosts_[id].reset();
    hosts_[id] = make_host(id);
    observed_[id] = Observed{};
    std::vector<std::vector<std::byte>> cards;
    for (auto& host : hosts_) cards.push_back(host->card());
    hosts_[id]->connect(cards);
    hosts_[id]->start();
    for (std::uint32_t other = 0; other < replicas_; ++other) {
      if (other != id) hosts_[other]->reconnect_peer(cards[id]);
    }
  }

  EngineHost& host(std::size_t id) { return *hosts_[id]; }
  const Observed& observed(std::size_t id) const { return observed_[id]; }
  int signals(std::size_t id) const { return signals_[id]->load(); }

  void drain(std::size_t id) {
    hosts_[id]->drain_events(
        [&](std::span<const std::byte> record) {
          EventHeader header;
          ASSERT_GE(record.size(), sizeof header);
          std::memcpy(&header, record.data(), sizeof header);
          Observed& seen = observed_[id];
          switch (header.kind) {
            case EventKind::applied:
              engine::for_each_command(record.subspan(sizeof header), [&](const engine::Command& command) {
                seen.applied.emplace_back(header.value, std::string(reinterpret_cast<const char*>(command.bytes.data()),
                                                                    command.bytes.size()));
                if (command.tag.origin == id) seen.applied_own_sequences.push_back(command.tag.sequence);
              });
              break;
            case EventKind::dropped: seen.dropped.push_back(header.value); break;
            case EventKind::role: seen.roles.push_back(header.detail); break;
            case EventKind::peer_reconnected: seen.reconnected.push_back(header.detail); break;
            default: break;
          }
        },
        1 << 20);
  }
  void drain_all() {
    for (std::size_t id = 0; id < hosts_.size(); ++id) drain(id);
  }

  // Drains every host until `done` holds or the deadline passes.
  bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      drain_all();
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    drain_all();
    return done();
  }

  std::optional<std::size_t> leader() {
    for (std::size_t id = 0; id < hosts_.size(); ++id) {
      if (hosts_[id]->status().role == engine::LeaderAgent::Role::steady) return id;
    }
    return std::nullopt;
  }

 private:
  std::uint32_t replicas_;
  std::string name_;
  std::vector<std::unique_ptr<EngineHost>> hosts_;
  std::vector<std::unique_ptr<std::atomic<int>>> signals_;
  std::vector<Observed> observed_;
};

std::vector<std::byte> bytes_of(const std::string& text) {
  std::vector<std::byte> bytes(text.size());
  std::memcpy(bytes.data(), text.data(), text.size());
  return bytes;
}

TEST(EngineHost, EveryReplicaDeliversTheLeadersCommandsInOrderThroughTheEventRing) {
  Cluster cluster(3);
  std::optional<std::size_t> leader;
  ASSERT_TRUE(cluster.wait_for([&] { return (leader = cluster.leader()).has_value(); })) << "no leader elected";
  constexpr int commands = 3000;  // ~100 KB of events per replica through a 64 KiB ring
  int submitted = 0;
  ASSERT_TRUE(cluster.wait_for(
      [&] {
        while (submitted < commands) {
          const std::string text = "set key" + std::to_string(submitted) + " value-" + std::string(16, 'x');
          const auto tag = cluster.host(*leader).submit(bytes_of(text));
          if (!tag) break;  // the submission ring is full: drain and retry
          EXPECT_EQ(tag->sequence, static_cast<std::uint64_t>(submitted + 1));
          ++submitted;
        }
        for (std::size_t id = 0; id < 3; ++id) {
          if (cluster.observed(id).applied.size() < static_cast<std::size_t>(commands)) return false;
        }
        return true;
      },
      std::chrono::seconds(30)));
  for (std::size_t id = 0; id < 3; ++id) {
    EXPECT_EQ(cluster.observed(id).applied, cluster.observed(*leader).applied) << "replica " << id;
    EXPECT_GT(cluster.signals(id), 0) << "the owner is signalled, not polled";
  }
  const auto& own = cluster.observed(*leader).applied_own_sequences;
  ASSERT_EQ(own.size(), static_cast<std::size_t>(commands));
  for (std::size_t i = 0; i < own.size(); ++i) ASSERT_EQ(own[i], i + 1);
  for (int i = 0; i < commands; i += 997) {
    EXPECT_EQ(cluster.observed(*leader).applied[static_cast<std::size_t>(i)].second,
              "set key" + std::to_string(i) + " value-" + std::string(16, 'x'));
  }
  const HostStatus status = cluster.host(*leader).status();
  EXPECT_TRUE(status.running);
  EXPECT_GE(status.entries_applied, 1u);
  EXPECT_EQ(status.peer_scores.size(), 3u);
}

TEST(EngineHost, AFollowerDropsWhatIsSubmittedToItAndSaysSo) {
  Cluster cluster(3);
  std::optional<std::size_t> leader;
  ASSERT_TRUE(cluster.wait_for([&] { return (leader = cluster.leader()).has_value(); }));
  const std::size_t follower = (*leader + 1) % 3;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(cluster.host(follower).submit(bytes_of("set misdirected 1")));
  ASSERT_TRUE(cluster.wait_for([&] { return cluster.observed(follower).dropped.size() == 10; }));
  EXPECT_EQ(cluster.observed(follower).dropped.front(), 1u);
  EXPECT_EQ(cluster.observed(follower).dropped.back(), 10u);
  EXPECT_TRUE(cluster.observed(*leader).applied.empty()) << "nothing misdirected is applied anywhere";
  EXPECT_FALSE(cluster.observed(follower).roles.empty()) << "role changes are reported";
}

// A follower's process is replaced by a new incarnation with empty regions: the others
// reconnect to it, the leader admits it and copies the log it lacks (nothing was
// recycled yet), and it applies the whole history, then new commands.
TEST(EngineHost, ARestartedFollowerIsReconnectedAndCatchesUpFromTheLog) {
  Cluster cluster(3);
  std::optional<std::size_t> leader;
  ASSERT_TRUE(cluster.wait_for([&] { return (leader = cluster.leader()).has_value(); }));
  const std::size_t follower = (*leader + 1) % 3;
  const auto submit_range = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      while (!cluster.host(*leader).submit(bytes_of("set k" + std::to_string(i) + " v"))) cluster.drain_all();
    }
  };
  submit_range(0, 200);
  ASSERT_TRUE(cluster.wait_for([&] { return cluster.observed(follower).applied.size() == 200; }));
  cluster.restart(static_cast<std::uint32_t>(follower));
  submit_range(200, 300);
  ASSERT_TRUE(cluster.wait_for([&] { return cluster.observed(follower).applied.size() == 300; }, std::chrono::seconds(20)))
      << "restarted follower applied " << cluster.observed(follower).applied.size() << "; leader "
      << cluster.host(*leader).status().leader_detail << "\n 0: " << cluster.host(0).status().background_detail
      << "\n 1: " << cluster.host(1).status().background_detail << "\n 2: " << cluster.host(2).status().background_detail
      << "\n restarted: " << cluster.host(follower).status().leader_detail;
  EXPECT_EQ(cluster.observed(follower).applied, cluster.observed(*leader).applied);
  const std::size_t other = (*leader + 2) % 3;
  EXPECT_EQ(cluster.observed(other).reconnected, std::vector<std::uint32_t>{1});
  EXPECT_EQ(cluster.observed(*leader).reconnected, std::vector<std::uint32_t>{1});
  EXPECT_EQ(cluster.leader(), leader) << "restarting a follower does not move leadership";
}

// A paired reset of the link between the leader and a live follower (what mu/member.ts
// does when a link stays out of step): the leader resets its four ends and holds them
// unconnected, and does not cycle them on its own; the follower resets its own; the
// leader connects them again. The three then go on with one history, whoever leads (while
// the link is held the follower cannot see the leader, so leadership may move, as in any
// partition of that link).
TEST(EngineHost, APairedResetOfALiveFollowersLinkHoldsItThenItCatchesUp) {
  Cluster cluster(3);
  std::optional<std::size_t> leader;
  ASSERT_TRUE(cluster.wait_for([&] { return (leader = cluster.leader()).has_value(); }));
  const std::size_t follower = (*leader + 1) % 3;
  const auto submit_range = [&](std::size_t at, int from, int to) {
    for (int i = from; i < to; ++i) {
      while (!cluster.host(at).submit(bytes_of("set k" + std::to_string(i) + " v"))) cluster.drain_all();
    }
  };
  submit_range(*leader, 0, 100);
  ASSERT_TRUE(cluster.wait_for([&] { return cluster.observed(follower).applied.size() == 100; }));

  cluster.host(*leader).reconnect_peer(cluster.host(follower).card(), /*hold=*/true);
  ASSERT_TRUE(cluster.wait_for([&] { return cluster.observed(*leader).reconnected.size() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // five link-retry intervals
  EXPECT_NE(cluster.host(*leader).status().background_detail.find(" links retried 0 "), std::string::npos)
      << "a held link is not cycled on its own: " << cluster.host(*leader).status().background_detail;

  // The follower answers; the leader releases only once the follower's reset is done.
  cluster.host(follower).reconnect_peer(cluster.host(*leader).card());
  ASSERT_TRUE(cluster.wait_for([&] { return cluster.observed(follower).reconnected.size() == 1; }));
  cluster.host(*leader).release_link(static_cast<std::uint32_t>(follower));
  ASSERT_TRUE(cluster.wait_for([&] { return cluster.observed(*leader).reconnected.size() == 2; }));
  EXPECT_EQ(cluster.observed(*leader).reconnected, (std::vector<std::uint32_t>{1, 1})) << "the release is reported too";

  // Whoever leads now: new commands reach all three, and their histories agree.
  std::optional<std::size_t> now_leading;
  ASSERT_TRUE(cluster.wait_for([&] { return (now_leading = cluster.leader()).has_value(); }, std::chrono::seconds(20)));
  submit_range(*now_leading, 100, 200);
  const auto last = std::string("set k199 v");
  ASSERT_TRUE(cluster.wait_for(
      [&] {
        for (std::size_t id = 0; id < 3; ++id) {
          const auto& applied = cluster.observed(id).applied;
          if (applied.empty() || applied.back().second != last) return false;
        }
        return true;
      },
      std::chrono::seconds(20)))
      << "follower applied " << cluster.observed(follower).applied.size() << "; leader "
      << cluster.host(*now_leading).status().leader_detail;
  EXPECT_EQ(cluster.observed(follower).applied, cluster.observed(*now_leading).applied);
  EXPECT_EQ(cluster.observed((*leader + 2) % 3).applied, cluster.observed(*now_leading).applied);
  EXPECT_EQ(cluster.observed(follower).reconnected, std::vector<std::uint32_t>{1});
}

TEST(EngineHost, ConnectsWithTheCardsOfAMajorityAndRefusesFewer) {
  Cluster cluster(3, false);
  const std::vector<std::byte> none;
  const std::vector<std::vector<std::byte>> only_own{cluster.host(0).card(), none, none};
  EXPECT_THROW(cluster.host(0).connect(only_own), std::invalid_argument) << "one card of three is not a majority";
  const std::vector<std::vector<std::byte>> missing_own{cluster.host(0).card(), none, cluster.host(2).card()};
  EXPECT_THROW(cluster.host(1).connect(missing_own), std::invalid_argument) << "its own card must be there";
  const std::vector<std::vector<std::byte>> majority{cluster.host(0).card(), cluster.host(1).card(), none};
  EXPECT_NO_THROW(cluster.host(1).connect(majority));
}

TEST(EngineHost, TwoOfThreeStartWithoutTheThirdLeadCommitAndLeaveItsLinkAlone) {
  Cluster cluster(3, false);
  const std::vector<std::byte> none;
  const std::vector<std::vector<std::byte>> cards{cluster.host(0).card(), cluster.host(1).card(), none};
  cluster.host(0).connect(cards);
  cluster.host(1).connect(cards);
  cluster.host(0).start();
  cluster.host(1).start();
  std::optional<std::size_t> leader;
  ASSERT_TRUE(cluster.wait_for([&] { return (leader = cluster.leader()).has_value(); }));
  for (int i = 0; i < 50; ++i) {
    while (!cluster.host(*leader).submit(bytes_of("set k" + std::to_string(i) + " v"))) cluster.drain(0), cluster.drain(1);
  }
  const std::size_t other = 1 - *leader;
  ASSERT_TRUE(cluster.wait_for([&] {
    cluster.drain(0);
    cluster.drain(1);
    return cluster.observed(other).applied.size() == 50;
  }));
  // Ten link-retry intervals (10 detector reads each): the absent peer has no end to
  // cycle toward, so none may have been retried.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (std::size_t id : {std::size_t{0}, std::size_t{1}}) {
    EXPECT_NE(cluster.host(id).status().background_detail.find(" links retried 0 "), std::string::npos)
        << cluster.host(id).status().background_detail;
  }
}

TEST(EngineHost, ACommandLargerThanAnEntryIsRefusedAtSubmission) {
  Cluster cluster(3);
  EXPECT_FALSE(cluster.host(0).submit(std::vector<std::byte>(cluster.host(0).max_command_bytes() + 1)));
  EXPECT_TRUE(cluster.host(0).submit(std::vector<std::byte>(cluster.host(0).max_command_bytes())));
}

}  // namespace
}  // namespace mu::addon
