// The background plane (paper section 5) on the sim fabric: the failure detector's
// arithmetic, election of a fresh cluster, failover after a leader crashes or pauses,
// and a healthy idle cluster that never fails over.
#include <gtest/gtest.h>

#include <cstdio>

#include "engine/background/failure_detector.hpp"
#include "simulator/sim_cluster.hpp"

namespace mu::engine {
namespace {

using simulator::bytes_of;
using simulator::SimCluster;
using simulator::SimClusterOptions;

TEST(FailureDetector, APeerThatStopsIsSuspectedAfterTheScoreFallsAndTrustedOnlyAfterItClimbsBack) {
  DetectorConfig config;  // max 8, failure at 2, recovery at 5
  FailureDetector detector(config, 3, 0);
  std::uint64_t counter = 0;
  for (int i = 0; i < 20; ++i) detector.observe(1, ++counter);
  EXPECT_EQ(detector.score(1), 8u);
  for (int i = 0; i < 5; ++i) detector.observe(1, counter);
  EXPECT_TRUE(detector.alive(1)) << "score 3 is above the failure threshold";
  detector.observe(1, counter);
  EXPECT_FALSE(detector.alive(1)) << "six reads without a heartbeat";
  detector.observe(1, ++counter);
  detector.observe(1, ++counter);
  EXPECT_FALSE(detector.alive(1)) << "hysteresis: score 4 is not yet the recovery threshold";
  detector.observe(1, ++counter);
  EXPECT_TRUE(detector.alive(1));
  EXPECT_TRUE(detector.alive(0)) << "a replica always trusts itself";
}

TEST(FailureDetector, FailedReadsCountAsMissedHeartbeats) {
  FailureDetector detector(DetectorConfig{}, 3, 0);
  for (int i = 0; i < 3; ++i) detector.observe(2, std::nullopt);
  EXPECT_FALSE(detector.alive(2));
}

TEST(FailureDetector, InconsistentThresholdsAreRefused) {
  DetectorConfig config;
  config.recovery_threshold = config.failure_threshold;
  EXPECT_THROW(FailureDetector(config, 3, 0), std::invalid_argument);
  DetectorConfig slow_heartbeat;
  slow_heartbeat.heartbeat_interval_ns = slow_heartbeat.read_interval_ns;
  EXPECT_THROW(FailureDetector(slow_heartbeat, 3, 0), std::invalid_argument);
}

SimClusterOptions automatic(std::uint32_t replicas, std::uint64_t seed = 1) {
  SimClusterOptions options;
  options.replica_count = replicas;
  options.seed = seed;
  options.leader.log_area_bytes = 1 << 20;
  options.leader.max_payload_bytes = 4096;
  options.background_plane = true;
  return options;
}

bool applied_at_least(SimCluster& cluster, fabric::NodeId id, std::size_t count) {
  return cluster.replica(id).applied.size() >= count;
}

TEST(Election, AFreshClusterElectsReplicaZeroAndEveryLogIsGrantedToIt) {
  SimCluster cluster(automatic(3));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.steady_leader() == fabric::NodeId{0}; }, 100000));
  ASSERT_TRUE(cluster.run_until([&] {
    for (fabric::NodeId id = 0; id < 3; ++id) {
      if (cluster.replica(id).background->holder() != fabric::NodeId{0}) return false;
    }
    return true;
  }, 100000));
  ASSERT_TRUE(cluster.replica(0).leader->propose(bytes_of("set a 1")));
  ASSERT_TRUE(cluster.run_until([&] { return applied_at_least(cluster, 2, 1); }, 100000));
}

TEST(Failover, ACrashedLeaderIsReplacedByTheLowestLiveReplicaAndNothingCommittedIsLost) {
  SimCluster cluster(automatic(3));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.steady_leader() == fabric::NodeId{0}; }, 100000));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(cluster.replica(0).leader->propose(bytes_of(std::string("before ") + std::to_string(i))));
  ASSERT_TRUE(cluster.run_until([&] { return applied_at_least(cluster, 1, 20) && applied_at_least(cluster, 2, 20); }, 100000));

  cluster.network().crash(0);
  const std::uint64_t crashed_at_ns = cluster.clock().now_ns();
  ASSERT_TRUE(cluster.run_until([&] { return cluster.steady_leader() == fabric::NodeId{1}; }, 200000));
  const std::uint64_t failover_ns = cluster.clock().now_ns() - crashed_at_ns;
  EXPECT_LT(failover_ns, 1'000'000u) << "simulated failover took " << failover_ns << " ns";
  std::printf("failover after a crash: %lu ns of simulated time\n", static_cast<unsigned long>(failover_ns));
  ASSERT_TRUE(cluster.replica(1).leader->propose(bytes_of("after")));
  ASSERT_TRUE(cluster.run_until([&] { return applied_at_least(cluster, 1, 21) && applied_at_least(cluster, 2, 21); }, 100000));
  EXPECT_EQ(cluster.replica(1).applied, cluster.replica(2).applied);
  EXPECT_EQ(cluster.replica(2).applied.back().bytes, "after");
}

TEST(Failover, APausedLeaderIsReplacedAndAfterResumingCannotWriteAndFollows) {
  SimCluster cluster(automatic(3));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.steady_leader() == fabric::NodeId{0}; }, 100000));
  ASSERT_TRUE(cluster.replica(0).leader->propose(bytes_of("before")));
  ASSERT_TRUE(cluster.run_until([&] { return applied_at_least(cluster, 2, 1); }, 100000));

  cluster.replica(0).paused = true;
  ASSERT_TRUE(cluster.run_until([&] { return cluster.steady_leader() == fabric::NodeId{1}; }, 200000));
  ASSERT_TRUE(cluster.replica(1).leader->propose(bytes_of("during the pause")));
  ASSERT_TRUE(cluster.run_until([&] { return applied_at_least(cluster, 2, 2); }, 100000));

  // The old leader wakes up still believing it leads, with a command to propose.
  cluster.replica(0).paused = false;
  ASSERT_TRUE(cluster.replica(0).leader->propose(bytes_of("from the old leader")));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.replica(0).background->holder() == fabric::NodeId{1}; }, 200000));
  cluster.run_until([] { return false; }, 20000);
  EXPECT_EQ(cluster.steady_leader(), fabric::NodeId{1}) << "the resumed replica does not take over again";
  // It rejoins as a follower: the new leader admits it and brings its log up to date.
  ASSERT_TRUE(cluster.replica(1).leader->propose(bytes_of("after the resume")));
  ASSERT_TRUE(cluster.run_until([&] { return applied_at_least(cluster, 0, 3) && applied_at_least(cluster, 2, 3); }, 200000));
  EXPECT_TRUE(cluster.replica(1).leader->is_confirmed(0));
  EXPECT_EQ(cluster.replica(0).applied, cluster.replica(1).applied);
  EXPECT_EQ(cluster.replica(1).applied, cluster.replica(2).applied);
  for (const auto& command : cluster.replica(2).applied) EXPECT_NE(command.bytes, "from the old leader");
}

// Fate sharing (paper 5): a leader whose replication plane is stuck while work waits must
// stop looking alive, even though its background plane runs on; the others replace it.
TEST(Failover, ALeaderWhoseReplicationPlaneIsStuckStopsItsHeartbeatAndIsReplaced) {
  SimCluster cluster(automatic(3));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.steady_leader() == fabric::NodeId{0}; }, 100000));
  ASSERT_TRUE(cluster.replica(0).leader->propose(bytes_of("before")));
  ASSERT_TRUE(cluster.run_until([&] { return applied_at_least(cluster, 2, 1); }, 100000));

  cluster.replica(0).leader_stuck = true;
  ASSERT_TRUE(cluster.replica(0).leader->propose(bytes_of("waits on the stuck plane")));
  const std::uint64_t heartbeat = cluster.replica(0).background->heartbeat();
  ASSERT_TRUE(cluster.run_until(
      [&] {
        for (fabric::NodeId id = 1; id < 3; ++id) {
          if (cluster.replica(id).leader->role() == LeaderAgent::Role::steady) return true;
        }
        return false;
      },
      2'000'000));
  EXPECT_LT(cluster.replica(0).background->heartbeat() - heartbeat, 1000u) << "its heartbeat stopped";
  const fabric::NodeId next = cluster.replica(1).leader->role() == LeaderAgent::Role::steady ? 1 : 2;
  ASSERT_TRUE(cluster.replica(next).leader->propose(bytes_of("after")));
  ASSERT_TRUE(cluster.run_until([&] { return applied_at_least(cluster, 1, 2) && applied_at_least(cluster, 2, 2); }, 200000));
  EXPECT_EQ(cluster.replica(1).applied, cluster.replica(2).applied);
}

// A runner wakes a little after a read falls due (a park, a long round). Reads keep to
// their grid regardless; timed from when each one ran, every read would come that much
// later, and six of them make the detection window.
TEST(FailureDetector, ReadsKeepTheirPaceWhenRoundsRunLate) {
  SimCluster cluster(automatic(3));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.steady_leader() == fabric::NodeId{0}; }, 100000));
  const auto& background = *cluster.replica(1).background;
  const std::uint64_t read_interval_ns = DetectorConfig{}.read_interval_ns;
  const std::uint64_t reads_before = background.heartbeat_read_rounds();
  const std::uint64_t started_ns = cluster.clock().now_ns();
  // Rounds 30 us apart: a read due at 100 us runs at 120 us.
  while (cluster.clock().now_ns() - started_ns < 100 * read_interval_ns) {
    cluster.clock().advance_ns(30'000 - 100);
    cluster.run_round();
  }
  const std::uint64_t reads = background.heartbeat_read_rounds() - reads_before;
  EXPECT_GE(reads, 98u) << "100 read intervals went by";
  EXPECT_LE(reads, 101u);

  // A reader whose thread stalled for ten intervals does not catch up with a burst of
  // reads, faster than a healthy peer's heartbeat moves: the grid starts afresh.
  cluster.clock().advance_ns(10 * read_interval_ns);
  const std::uint64_t after_stall = background.heartbeat_read_rounds();
  const std::uint64_t resumed_ns = cluster.clock().now_ns();
  while (cluster.clock().now_ns() - resumed_ns < read_interval_ns * 2 / 5) {
    cluster.clock().advance_ns(1'000 - 100);
    cluster.run_round();
  }
  EXPECT_EQ(background.heartbeat_read_rounds() - after_stall, 1u) << "one read on waking, the next half an interval on";
}

// Fate sharing counts how long work has waited, not how long since the last commit: a
// healthy leader that was idle for longer than the fate-sharing timeout keeps beating
// while it commits the next command.
TEST(Failover, AHealthyLeaderKeepsBeatingWhenWorkArrivesAfterALongIdleSpell) {
  SimCluster cluster(automatic(3));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.steady_leader() == fabric::NodeId{0}; }, 100000));
  auto& leader = cluster.replica(0);
  const std::uint64_t timeout_ns = BackgroundConfig{}.fate_sharing_timeout_ns;
  const std::uint64_t withheld = leader.background->beats_withheld();
  for (int command = 0; command < 5; ++command) {
    // Idle for one and a half timeouts, in 10 us rounds.
    const std::uint64_t idle_from_ns = cluster.clock().now_ns();
    while (cluster.clock().now_ns() - idle_from_ns < timeout_ns * 3 / 2) {
      cluster.clock().advance_ns(10'000 - 100);
      cluster.run_round();
    }
    ASSERT_TRUE(leader.leader->propose(bytes_of("after a pause " + std::to_string(command))));
    const std::size_t applied = leader.applied.size();
    // Committing takes a few rounds; rounds 5 us apart make heartbeats fall due meanwhile.
    ASSERT_TRUE(cluster.run_until(
        [&] {
          cluster.clock().advance_ns(5'000 - 100);
          return leader.applied.size() > applied;
        },
        100000));
  }
  EXPECT_EQ(leader.background->beats_withheld(), withheld) << "no beat withheld from a leader that commits";
  EXPECT_EQ(cluster.steady_leader(), fabric::NodeId{0});
}

TEST(Election, AHealthyIdleClusterNeverFailsOver) {
  SimCluster cluster(automatic(3));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.steady_leader() == fabric::NodeId{0}; }, 100000));
  const std::uint64_t grants = cluster.replica(1).background->grants_served();
  cluster.run_until([] { return false; }, 300000);  // 30 ms of simulated time
  EXPECT_EQ(cluster.steady_leader(), fabric::NodeId{0});
  EXPECT_EQ(cluster.replica(1).background->grants_served(), grants) << "no new permission was granted";
  for (fabric::NodeId id = 1; id < 3; ++id) {
    EXPECT_EQ(cluster.replica(id).background->candidacy(), BackgroundAgent::Candidacy::idle) << id;
  }
}

}  // namespace
}  // namespace mu::engine
