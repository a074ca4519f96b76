// The replication plane (paper section 4.1) on the deterministic sim fabric: the fast
// path, pipelining and batching, commit publication, prepare adoption, and a leader whose
// permission is revoked. Named after the mechanism each test proves.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include <thread>

#include "engine/quorum.hpp"
#include "engine/replication/command_submitter.hpp"
#include "simulator/sim_cluster.hpp"

namespace mu::engine {
namespace {

using simulator::AppliedCommand;
using simulator::bytes_of;
using simulator::SimCluster;
using simulator::SimClusterOptions;

SimClusterOptions options_with(std::uint32_t replicas, std::uint64_t seed = 1) {
  SimClusterOptions options;
  options.replica_count = replicas;
  options.seed = seed;
  options.leader.log_area_bytes = 1 << 20;
  options.leader.max_payload_bytes = 4096;
  options.leader.max_outstanding_entries = 8;
  return options;
}

bool all_applied(SimCluster& cluster, std::size_t count) {
  for (fabric::NodeId id = 0; id < cluster.size(); ++id) {
    if (!cluster.crashed(id) && cluster.replica(id).applied.size() < count) return false;
  }
  return true;
}

void expect_same_history(SimCluster& cluster) {
  const std::vector<AppliedCommand>* reference = nullptr;
  for (fabric::NodeId id = 0; id < cluster.size(); ++id) {
    if (cluster.crashed(id)) continue;
    if (reference == nullptr) {
      reference = &cluster.replica(id).applied;
      continue;
    }
    EXPECT_EQ(cluster.replica(id).applied, *reference) << "replica " << id;
  }
}

TEST(FastPath, EveryReplicaAppliesEveryCommandInProposalOrder) {
  SimCluster cluster(options_with(3));
  cluster.grant_all_to(0);
  auto& leader = *cluster.replica(0).leader;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(leader.propose(bytes_of(std::string("set k") + std::to_string(i))));
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 100); }));
  EXPECT_EQ(leader.role(), LeaderAgent::Role::steady);
  expect_same_history(cluster);
  const auto& applied = cluster.replica(1).applied;
  for (std::size_t i = 0; i < applied.size(); ++i) {
    EXPECT_EQ(applied[i].bytes, std::string("set k") + std::to_string(i));
    EXPECT_EQ(applied[i].tag, (CommandTag{0, i + 1}));
  }
}

TEST(Batching, ManyQueuedCommandsShareEntries) {
  SimCluster cluster(options_with(3));
  cluster.grant_all_to(0);
  auto& leader = *cluster.replica(0).leader;
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(leader.propose(bytes_of("incr counter")));
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 1000); }));
  expect_same_history(cluster);
  std::set<std::uint64_t> entries;
  for (const auto& command : cluster.replica(2).applied) entries.insert(command.log_index);
  EXPECT_LT(entries.size(), 100u) << "1000 commands of 28 bytes should need far fewer entries";
  // Every command entry is committed (no-ops of the new reign may follow them).
  EXPECT_GT(leader.first_uncommitted_index(), *entries.rbegin());
}

// The trap of the original code: a follower's last entry stayed uncommitted until the
// next write. An idle leader publishes its commit point.
TEST(CommitPublication, TheLastEntryIsAppliedOnFollowersWhenTheLeaderGoesIdle) {
  SimCluster cluster(options_with(3));
  cluster.grant_all_to(0);
  ASSERT_TRUE(cluster.replica(0).leader->propose(bytes_of("set only-one 1")));
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 1); }, 2000));
  expect_same_history(cluster);
}

// While commands flow, each entry carries the commit point and none is written on its own,
// even where an entry commits in the round that wrote it (shm): there the pipeline is empty
// after every round, and a leader that took that for idleness wrote the commit point to
// every acceptor after each entry, doubling the writes of a command.
TEST(CommitPublication, AStreamOfCommandsWritesNoCommitPointUntilTheLeaderGoesIdle) {
  SimClusterOptions options = options_with(3);
  options.completes_in_round = true;
  options.faults.max_delay_steps = options.faults.min_delay_steps;  // every write completes in the same poll
  SimCluster cluster(options);
  cluster.grant_all_to(0);
  auto& leader = *cluster.replica(0).leader;
  ASSERT_TRUE(leader.propose(bytes_of("warm up")));
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 1); }, 2000));
  const std::uint64_t published_before = leader.commit_points_published();
  const std::uint64_t started_ns = cluster.clock().now_ns();
  int same_round_commits = 0;
  for (std::size_t i = 2; i <= 1000; ++i) {
    ASSERT_TRUE(leader.propose(bytes_of("set k" + std::to_string(i))));
    const std::uint64_t uncommitted = leader.first_uncommitted_index();
    cluster.run_round();
    same_round_commits += leader.first_uncommitted_index() > uncommitted ? 1 : 0;
    ASSERT_TRUE(cluster.run_until([&] { return cluster.replica(0).applied.size() >= i; }, 2000));
  }
  // The stream is what the test means: long past the idle delay, one entry per round.
  ASSERT_GT(cluster.clock().now_ns() - started_ns, 4 * options.leader.commit_publish_delay_ns);
  ASSERT_GT(same_round_commits, 900);
  EXPECT_EQ(leader.commit_points_published(), published_before);
  // Idle now: the commit point goes out, and the followers apply the last command too.
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 1000); }, 2000));
  EXPECT_GT(leader.commit_points_published(), published_before);
  expect_same_history(cluster);
}

// Quorum arithmetic for an even count: 4 replicas need 3. With one crashed the leader
// keeps committing; with two it cannot and is deposed.
TEST(Quorum, FourReplicasCommitWithThreeAndStopAtTwo) {
  SimCluster cluster(options_with(4));
  cluster.grant_all_to(0);
  auto& leader = *cluster.replica(0).leader;
  cluster.network().crash(3);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(leader.propose(bytes_of(std::string("a") + std::to_string(i))));
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 10); }));
  EXPECT_EQ(leader.confirmed_count(), 3u);
  expect_same_history(cluster);

  cluster.network().crash(2);
  ASSERT_TRUE(leader.propose(bytes_of("never committed")));
  ASSERT_TRUE(cluster.run_until([&] { return leader.role() == LeaderAgent::Role::deposed; }));
  cluster.run_until([] { return false; }, 1000);
  EXPECT_EQ(cluster.replica(0).applied.size(), 10u);
  EXPECT_EQ(cluster.replica(1).applied.size(), 10u);
}

// Paper 4.1: a new leader's prepare finds a value accepted at the first undecided index
// and adopts it; then the caller's own command is still proposed (the original code
// dropped it).
TEST(PrepareAdoption, AnAcceptedValueIsAdoptedAndTheCallersCommandStillFollows) {
  SimCluster cluster(options_with(3));
  const std::uint64_t old_proposal = (1 << 8) | 0;  // round 1 of replica 0
  cluster.plant_entry(1, log_start, old_proposal, "set from-old-leader 1", CommandTag{0, 1});
  cluster.grant_all_to(2);
  auto& leader = *cluster.replica(2).leader;
  ASSERT_TRUE(leader.propose(bytes_of("set from-new-leader 2")));
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 2); }));
  expect_same_history(cluster);
  const auto& applied = cluster.replica(0).applied;
  ASSERT_EQ(applied.size(), 2u);
  EXPECT_EQ(applied[0].bytes, "set from-old-leader 1");
  EXPECT_EQ(applied[0].tag, (CommandTag{0, 1}));
  EXPECT_EQ(applied[1].bytes, "set from-new-leader 2");
  EXPECT_EQ(leader.adopted_entries(), 1u);
  EXPECT_GT(leader.proposal(), old_proposal);
}

// Of two values accepted at the same index, the one with the higher proposal wins.
TEST(PrepareAdoption, TheHighestProposalWins) {
  SimCluster cluster(options_with(3));
  cluster.plant_entry(0, log_start, (1 << 8) | 0, "older", CommandTag{0, 1});
  cluster.plant_entry(1, log_start, (2 << 8) | 1, "newer", CommandTag{1, 1});
  cluster.grant_all_to(2);
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 1); }));
  expect_same_history(cluster);
  EXPECT_EQ(cluster.replica(2).applied.at(0).bytes, "newer");
}

// Adoption continues index after index until a majority shows an empty slot.
TEST(PrepareAdoption, SeveralAcceptedEntriesAreAdoptedInOrder) {
  SimCluster cluster(options_with(3));
  LogCursor at = log_start;
  for (int i = 0; i < 3; ++i) {
    const std::string command = std::string("old ") + std::to_string(i);
    cluster.plant_entry(0, at, (1 << 8) | 1, command, CommandTag{1, static_cast<std::uint64_t>(i + 1)});
    std::vector<std::byte> batch;
    append_command(batch, CommandTag{1, static_cast<std::uint64_t>(i + 1)}, bytes_of(command));
    at = LogCursor{at.index + 1, at.position + encoded_entry_bytes(batch.size())};
  }
  cluster.grant_all_to(2);
  ASSERT_TRUE(cluster.replica(2).leader->propose(bytes_of("new")));
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 4); }));
  expect_same_history(cluster);
  const auto& applied = cluster.replica(1).applied;
  ASSERT_EQ(applied.size(), 4u);
  EXPECT_EQ(applied[2].bytes, "old 2");
  EXPECT_EQ(applied[3].bytes, "new");
  EXPECT_EQ(cluster.replica(2).leader->adopted_entries(), 3u);
}

// The permission rule: once a majority revoked the leader's write access, its writes fail
// and it stops; nothing of it lands after the revocations.
TEST(Permission, ALeaderWhoseAccessAMajorityRevokedIsDeposedAndWritesNothingMore) {
  SimCluster cluster(options_with(3));
  cluster.grant_all_to(0);
  auto& leader = *cluster.replica(0).leader;
  ASSERT_TRUE(leader.propose(bytes_of("before")));
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 1); }));
  cluster.revoke(1, 0);
  cluster.revoke(2, 0);
  const auto region = [&](fabric::NodeId id) {
    auto& log = *cluster.replica(id).log_region;
    return std::vector<std::byte>(log.data(), log.data() + log.size_bytes());
  };
  const auto follower_1 = region(1);
  const auto follower_2 = region(2);
  ASSERT_TRUE(leader.propose(bytes_of("after")));
  ASSERT_TRUE(cluster.run_until([&] { return leader.role() == LeaderAgent::Role::deposed; }));
  cluster.run_until([] { return false; }, 500);
  EXPECT_EQ(region(1), follower_1);
  EXPECT_EQ(region(2), follower_2);
  EXPECT_EQ(cluster.replica(1).applied.size(), 1u);
}

// Recycling: a small log wraps many times; space is reused once a majority applied it.
TEST(Recycling, ASmallLogWrapsManyTimesWithoutLosingACommand) {
  SimClusterOptions options = options_with(3);
  options.leader.log_area_bytes = 8 * 1024;
  options.leader.max_payload_bytes = 512;
  SimCluster cluster(options);
  cluster.grant_all_to(0);
  auto& leader = *cluster.replica(0).leader;
  for (int i = 0; i < 3000; ++i) {
    ASSERT_TRUE(leader.propose(bytes_of(std::string("set key:") + std::to_string(i) + " some-value")));
    if (i % 20 == 0) cluster.run_until([&] { return leader.pending_commands() == 0; }, 5000);
  }
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 3000); }));
  expect_same_history(cluster);
  EXPECT_GT(leader.recycled_position(), 8u * options.leader.log_area_bytes) << "the log should have lapped often";
  for (std::size_t i = 0; i < 3000; ++i) {
    ASSERT_EQ(cluster.replica(1).applied[i].tag, (CommandTag{0, i + 1})) << i;
  }
}

// The minority that falls behind the recycled part is told so, and never applies an entry
// of a later lap in place of the one it missed.
TEST(Recycling, AReplicaBehindTheRecycledPartNeedsAStateTransferAndDoesNotDiverge) {
  SimClusterOptions options = options_with(3);
  options.leader.log_area_bytes = 8 * 1024;
  options.leader.max_payload_bytes = 512;
  SimCluster cluster(options);
  cluster.grant_all_to(0);
  auto& leader = *cluster.replica(0).leader;
  cluster.replica(2).apply_paused = true;
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(leader.propose(bytes_of(std::string("set key:") + std::to_string(i) + " some-value")));
    if (i % 20 == 0) cluster.run_until([&] { return leader.pending_commands() == 0; }, 5000);
  }
  ASSERT_TRUE(cluster.run_until([&] { return cluster.replica(1).applied.size() == 2000; }));
  cluster.replica(2).apply_paused = false;
  ASSERT_TRUE(cluster.run_until([&] { return cluster.replica(2).apply->needs_state_transfer(); }, 10000));
  const auto& lagging = cluster.replica(2).applied;
  const auto& reference = cluster.replica(1).applied;
  ASSERT_LT(lagging.size(), reference.size());
  for (std::size_t i = 0; i < lagging.size(); ++i) ASSERT_EQ(lagging[i], reference[i]) << i;
}

// Recovery (paper 4.3): a new leader whose own log is behind first copies the decided
// entries from the most advanced confirmed log, then serves.
TEST(Recovery, ALeaderThatIsBehindCatchesUpFromTheMostAdvancedLog) {
  SimCluster cluster(options_with(3));
  cluster.grant_to(0, {0, 1});
  auto& old_leader = *cluster.replica(0).leader;
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(old_leader.propose(bytes_of(std::string("old ") + std::to_string(i))));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.replica(1).applied.size() == 50; }));
  EXPECT_TRUE(cluster.replica(2).applied.empty());

  cluster.grant_to(2, {1, 2});
  auto& new_leader = *cluster.replica(2).leader;
  ASSERT_TRUE(new_leader.propose(bytes_of("new")));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.replica(2).applied.size() == 51 && cluster.replica(1).applied.size() == 51; }));
  EXPECT_EQ(cluster.replica(2).applied, cluster.replica(1).applied);
  EXPECT_EQ(cluster.replica(2).applied.back().bytes, "new");
  EXPECT_GT(new_leader.caught_up_entries(), 0u);
  EXPECT_EQ(old_leader.role(), LeaderAgent::Role::steady) << "it has not written since, so it does not know yet";
  ASSERT_TRUE(old_leader.propose(bytes_of("from the deposed leader")));
  ASSERT_TRUE(cluster.run_until([&] { return old_leader.role() == LeaderAgent::Role::deposed; }));
  cluster.run_until([] { return false; }, 500);
  EXPECT_EQ(cluster.replica(1).applied.size(), 51u) << "nothing of the deposed leader is applied";
}

// Recovery: followers that are behind are brought up to date from the leader's log and
// aligned, so they apply the old entries before the new ones.
TEST(Recovery, FollowersThatAreBehindAreBroughtUpToDate) {
  SimCluster cluster(options_with(3));
  cluster.grant_to(0, {0, 1});
  auto& old_leader = *cluster.replica(0).leader;
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(old_leader.propose(bytes_of(std::string("old ") + std::to_string(i))));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.replica(1).applied.size() == 50; }));

  cluster.grant_to(1, {1, 2});
  auto& new_leader = *cluster.replica(1).leader;
  ASSERT_TRUE(new_leader.propose(bytes_of("new")));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.replica(2).applied.size() == 51; }));
  EXPECT_EQ(cluster.replica(2).applied, cluster.replica(1).applied);
  EXPECT_EQ(new_leader.caught_up_entries(), 0u);
  EXPECT_EQ(new_leader.acceptors_left_behind(), 0u);
}

// Commands submitted from another thread reach the log in submission order, each under
// the tag the submitter returned.
TEST(Submissions, CommandsFromAnotherThreadAreProposedInOrderWithTheirTags) {
  SimCluster cluster(options_with(3));
  cluster.grant_all_to(0);
  SpscRing ring(16 * 1024);
  cluster.replica(0).leader->accept_submissions(ring);
  constexpr std::uint64_t commands = 5000;
  std::thread producer([&] {
    CommandSubmitter submitter(ring, 0);
    for (std::uint64_t i = 1; i <= commands; ++i) {
      const auto bytes = bytes_of(std::string("set k") + std::to_string(i));
      std::optional<CommandTag> tag;
      while (!(tag = submitter.submit(bytes))) std::this_thread::yield();
      if (tag->sequence != i) std::abort();
    }
  });
  const bool done = cluster.run_until([&] { return all_applied(cluster, commands); }, 5'000'000);
  producer.join();
  ASSERT_TRUE(done);
  expect_same_history(cluster);
  const auto& applied = cluster.replica(2).applied;
  for (std::uint64_t i = 0; i < commands; ++i) {
    ASSERT_EQ(applied[i].tag, (CommandTag{0, i + 1})) << i;
    ASSERT_EQ(applied[i].bytes, std::string("set k") + std::to_string(i + 1)) << i;
  }
}

// A leader deposed with submitted commands in every state (applied, written but not
// committed, still queued, still in the ring) tells its submitter what became of each:
// dropped ones are never applied, and once its replica has applied up to the index the
// reign ended at, every other command has been applied or never will be. The new
// leader's no-op decides that index although no new command arrives.
TEST(Submissions, ADeposedLeaderReportsTheFateOfEveryCommand) {
  SimClusterOptions options = options_with(3, 11);
  options.faults.max_delay_steps = 6;
  options.leader.max_outstanding_entries = 2;  // so commands are left queued at the deposition
  options.leader.max_payload_bytes = 64;       // a few commands per entry
  SimCluster cluster(options);
  cluster.grant_all_to(0);
  SpscRing ring(64 * 1024);
  std::set<std::uint64_t> dropped;
  std::optional<std::uint64_t> reign_ended_at;
  std::uint64_t last_taken_at_reign_end = 0;
  cluster.replica(0).leader->accept_submissions(
      ring, LeaderAgent::SubmissionEvents{[&](const CommandTag& tag) { dropped.insert(tag.sequence); },
                                          [&](std::uint64_t next_index, std::uint64_t last_taken) {
                                            reign_ended_at = next_index;
                                            last_taken_at_reign_end = last_taken;
                                          }});
  CommandSubmitter submitter(ring, 0);
  constexpr std::uint64_t commands = 200;
  for (std::uint64_t i = 1; i <= commands / 2; ++i) ASSERT_TRUE(submitter.submit(bytes_of(std::string("a") + std::to_string(i))));
  // Deposed in the middle of the burst: some applied, entries in flight, commands queued.
  ASSERT_TRUE(cluster.run_until([&] { return cluster.replica(0).applied.size() >= 20; }));
  cluster.grant_all_to(1);  // replica 0 loses every permission mid-burst
  for (std::uint64_t i = commands / 2 + 1; i <= commands; ++i) ASSERT_TRUE(submitter.submit(bytes_of(std::string("b") + std::to_string(i))));
  ASSERT_TRUE(cluster.run_until([&] { return reign_ended_at.has_value() && !cluster.replica(0).leader->leading(); }));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.replica(0).apply->applied().index >= *reign_ended_at; }))
      << "the new leader's no-op should decide the old reign's indices; reign end " << *reign_ended_at << ", "
      << cluster.replica(0).apply->describe() << " | new leader: " << cluster.replica(1).leader->describe()
      << " | " << cluster.replica(1).apply->describe();
  EXPECT_FALSE(dropped.empty()) << "the second half was submitted after the deposition";
  std::set<std::uint64_t> applied;
  for (const auto& command : cluster.replica(0).applied) {
    if (command.tag.origin == 0) applied.insert(command.tag.sequence);
  }
  for (const std::uint64_t sequence : dropped) EXPECT_EQ(applied.count(sequence), 0u) << sequence;
  // Whatever was neither applied nor dropped is lost for good: more traffic changes nothing.
  auto& new_leader = *cluster.replica(1).leader;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(new_leader.propose(bytes_of(std::string("c") + std::to_string(i))));
  ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, applied.size() + 20); }));
  ASSERT_TRUE(cluster.run_until([&] { return cluster.replica(0).applied.size() >= cluster.replica(1).applied.size(); }));
  std::set<std::uint64_t> applied_later;
  for (const auto& command : cluster.replica(0).applied) {
    if (command.tag.origin == 0) applied_later.insert(command.tag.sequence);
  }
  EXPECT_EQ(applied_later, applied);
  EXPECT_GE(applied.size(), 20u);
  EXPECT_GE(last_taken_at_reign_end, applied.empty() ? 0 : *applied.rbegin());
  EXPECT_LE(applied.size() + dropped.size(), commands);
  expect_same_history(cluster);
}

// Delays, cross-connection reordering and torn writes: whatever the schedule, every
// replica applies the same commands in the same order.
TEST(FastPath, AgreementHoldsUnderDelaysReorderingAndTornWritesForManySeeds) {
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    SimClusterOptions options = options_with(3, seed);
    options.faults.max_delay_steps = 12;
    options.faults.tear_probability = 0.3;
    SimCluster cluster(options);
    const auto leader_id = static_cast<fabric::NodeId>(seed % 3);
    cluster.grant_all_to(leader_id);
    auto& leader = *cluster.replica(leader_id).leader;
    // One command every few rounds, so entries are many and overlap in flight.
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(leader.propose(bytes_of(std::string("cmd ") + std::to_string(i))));
      for (std::uint64_t round = 0; round < seed % 4; ++round) cluster.run_round();
    }
    ASSERT_TRUE(cluster.run_until([&] { return all_applied(cluster, 200); })) << "seed " << seed;
    expect_same_history(cluster);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "seed " << seed;
      return;
    }
  }
}

}  // namespace
}  // namespace mu::engine
