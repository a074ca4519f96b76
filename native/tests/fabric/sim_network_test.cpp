// What only the sim backend offers, and what the engine's simulator relies on: exact
// replay from a seed, torn writes that a reader can catch half-landed, reordering across
// connections, revokes held pending by a write still landing, and crashes.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "fabric/sim/sim_network.hpp"

namespace mu::fabric::sim {
namespace {

// Node 0 writes to nodes 1 and 2 over one connection each.
struct Star {
  explicit Star(std::uint64_t seed, SimFaults faults = {}, bool auto_step = false)
      : network(SimNetwork::create(seed, faults, auto_step)) {
    writer = network->create_node(0);
    queue = writer->create_completion_queue(256);
    source = writer->register_region(4096);
    for (NodeId target = 1; target <= 2; ++target) {
      targets.push_back(network->create_node(target));
      target_queues.push_back(targets.back()->create_completion_queue(16));
      to.push_back(writer->create_connection(queue));
      from.push_back(targets.back()->create_connection(target_queues.back()));
      memory.push_back(targets.back()->register_region(4096));
      remote.push_back(writer->attach_remote_region(memory.back()->descriptor(), Fabric::AttachTiming::at_startup));
      from.back()->connect(to.back()->local_endpoint(), access_remote_all);
      to.back()->connect(from.back()->local_endpoint(), access_none);
    }
  }
  ~Star() {
    to.clear();
    from.clear();
  }
  PostStatus write(std::size_t target, std::uint64_t work_id, std::uint32_t length, std::uint64_t offset = 0) {
    WriteRequest request;
    request.work_id = work_id;
    request.remote = remote[target].get();
    request.remote_offset = offset;
    request.local_region = source.get();
    request.length = length;
    return to[target]->post_write(request);
  }
  std::vector<Completion> run_to_quiet() {
    std::vector<Completion> seen;
    std::array<Completion, 16> batch;
    do {
      for (std::size_t n = queue->poll(batch); n > 0; n = queue->poll(batch)) {
        seen.insert(seen.end(), batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(n));
      }
    } while (network->step());
    for (std::size_t n = queue->poll(batch); n > 0; n = queue->poll(batch)) {
      seen.insert(seen.end(), batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(n));
    }
    return seen;
  }

  std::shared_ptr<SimNetwork> network;
  std::shared_ptr<Fabric> writer;
  std::shared_ptr<CompletionQueue> queue;
  std::unique_ptr<LocalRegion> source;
  std::vector<std::shared_ptr<Fabric>> targets;
  std::vector<std::shared_ptr<CompletionQueue>> target_queues;
  std::vector<std::unique_ptr<Connection>> to;
  std::vector<std::unique_ptr<Connection>> from;
  std::vector<std::unique_ptr<LocalRegion>> memory;
  std::vector<std::unique_ptr<RemoteRegion>> remote;
};

std::vector<std::uint64_t> completion_order(std::uint64_t seed) {
  SimFaults faults;
  faults.max_delay_steps = 8;
  faults.tear_probability = 0.5;
  Star star(seed, faults);
  for (std::uint64_t i = 0; i < 40; ++i) EXPECT_EQ(star.write(i % 2, i, 64), PostStatus::posted);
  std::vector<std::uint64_t> order;
  for (const Completion& completion : star.run_to_quiet()) order.push_back(completion.work_id);
  return order;
}

TEST(SimNetwork, TheSameSeedReplaysExactly) {
  EXPECT_EQ(completion_order(42), completion_order(42));
  EXPECT_EQ(completion_order(42).size(), 40u);
}

TEST(SimNetwork, OperationsOnDifferentConnectionsOvertakeEachOther) {
  int seeds_with_reordering = 0;
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    const auto order = completion_order(seed);
    ASSERT_EQ(order.size(), 40u);
    // Within a connection (same parity) order is kept; across connections it is not.
    std::array<std::uint64_t, 2> last{0, 1};
    bool first[2] = {true, true};
    bool reordered = false;
    for (std::size_t i = 0; i < order.size(); ++i) {
      const std::uint64_t id = order[i];
      const auto connection = static_cast<std::size_t>(id % 2);
      if (!first[connection]) {
        EXPECT_GT(id, last[connection]) << "seed " << seed;
      }
      first[connection] = false;
      last[connection] = id;
      if (i > 0 && id < order[i - 1]) reordered = true;
    }
    seeds_with_reordering += reordered;
  }
  EXPECT_GT(seeds_with_reordering, 0);
}

TEST(SimNetwork, ATornWriteCanBeSeenHalfLanded) {
  SimFaults faults;
  faults.tear_probability = 1.0;
  Star star(7, faults);
  std::memset(star.source->data(), 0xff, 256);
  ASSERT_EQ(star.write(0, 1, 256), PostStatus::posted);
  bool saw_mix = false;
  Completion completion;
  while (star.queue->poll(std::span(&completion, 1)) == 0) {
    ASSERT_TRUE(star.network->step());
    const std::byte* bytes = star.memory[0]->data();
    const auto landed = std::count(bytes, bytes + 256, std::byte{0xff});
    saw_mix = saw_mix || (landed > 0 && landed < 256);
  }
  EXPECT_TRUE(saw_mix);
  EXPECT_EQ(completion.status, CompletionStatus::success);
  EXPECT_EQ(std::count(star.memory[0]->data(), star.memory[0]->data() + 256, std::byte{0xff}), 256);
}

// A write admitted before a revoke may still be landing: the revoke stays pending until
// its last chunk is in, and only then is it final.
TEST(SimNetwork, ARevokeIsPendingWhileAnAdmittedWriteIsStillLanding) {
  SimFaults faults;
  faults.tear_probability = 1.0;
  faults.min_delay_steps = 2;
  faults.max_delay_steps = 2;
  Star star(3, faults);
  std::memset(star.source->data(), 0xaa, 512);
  ASSERT_EQ(star.write(0, 1, 512), PostStatus::posted);
  while (std::count(star.memory[0]->data(), star.memory[0]->data() + 512, std::byte{0xaa}) == 0) {
    ASSERT_TRUE(star.network->step());
  }
  ASSERT_EQ(star.from[0]->change_access(access_none, AccessPath::fast), ChangeStatus::pending);
  while (!star.from[0]->access_change_settled()) ASSERT_TRUE(star.network->step());
  EXPECT_EQ(std::count(star.memory[0]->data(), star.memory[0]->data() + 512, std::byte{0xaa}), 512);
  const std::vector<std::byte> settled(star.memory[0]->data(), star.memory[0]->data() + 4096);
  std::memset(star.source->data(), 0xbb, 512);
  star.run_to_quiet();
  ASSERT_EQ(star.write(0, 2, 512), PostStatus::posted);
  const auto completions = star.run_to_quiet();
  ASSERT_EQ(completions.size(), 1u);
  EXPECT_TRUE(is_remote_rejection(completions[0].status));
  EXPECT_EQ(std::vector<std::byte>(star.memory[0]->data(), star.memory[0]->data() + 4096), settled);
}

TEST(SimNetwork, ACrashedTargetIsUnreachableAndTheOtherIsNot) {
  Star star(5);
  star.network->crash(1);
  EXPECT_TRUE(star.network->crashed(1));
  ASSERT_EQ(star.write(0, 1, 8), PostStatus::posted);
  ASSERT_EQ(star.write(1, 2, 8), PostStatus::posted);
  auto completions = star.run_to_quiet();
  ASSERT_EQ(completions.size(), 2u);
  std::sort(completions.begin(), completions.end(),
            [](const Completion& a, const Completion& b) { return a.work_id < b.work_id; });
  EXPECT_EQ(completions[0].status, CompletionStatus::peer_unreachable);
  EXPECT_EQ(completions[1].status, CompletionStatus::success);
}

TEST(SimNetwork, AResetFlushesWhatIsStillInTheNetwork) {
  Star star(9);
  for (std::uint64_t i = 1; i <= 5; ++i) ASSERT_EQ(star.write(0, i, 8), PostStatus::posted);
  star.to[0]->reset();
  const auto completions = star.run_to_quiet();
  ASSERT_EQ(completions.size(), 5u);
  for (const Completion& completion : completions) EXPECT_EQ(completion.status, CompletionStatus::flushed);
  EXPECT_EQ(std::count(star.memory[0]->data(), star.memory[0]->data() + 8, std::byte{0}), 8) << "a voided write landed";
}

}  // namespace
}  // namespace mu::fabric::sim
