// The threaded runtime's parts: idle strategies and the agent runner.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "engine/runtime/agent_runner.hpp"
#include "engine/runtime/clock.hpp"
#include "engine/runtime/idle_strategy.hpp"
#include "engine/runtime/spsc_ring.hpp"

namespace mu::engine {
namespace {

TEST(BackoffIdle, SpinsThenYieldsThenParksWithDoublingSleepsUpToTheBound) {
  BackoffIdle idle(BackoffLimits{.spins = 3, .yields = 2, .min_park_ns = 1'000, .max_park_ns = 4'000});
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(idle.phase(), 0);
    idle.idle(0);
  }
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(idle.phase(), 1);
    idle.idle(0);
  }
  EXPECT_EQ(idle.phase(), 2);
  EXPECT_EQ(idle.next_park_ns(), 1'000u);
  idle.idle(0);
  EXPECT_EQ(idle.next_park_ns(), 2'000u);
  idle.idle(0);
  idle.idle(0);
  EXPECT_EQ(idle.next_park_ns(), 4'000u) << "bounded by max_park_ns";
}

TEST(BackoffIdle, WorkResetsItToSpinning) {
  BackoffIdle idle(BackoffLimits{.spins = 1, .yields = 1, .min_park_ns = 1'000, .max_park_ns = 8'000});
  for (int i = 0; i < 4; ++i) idle.idle(0);
  EXPECT_EQ(idle.phase(), 2);
  idle.idle(1);
  EXPECT_EQ(idle.phase(), 0);
  EXPECT_EQ(idle.next_park_ns(), 1'000u);
}

TEST(BackoffIdle, YieldsInsteadOfParkingForAWhileAfterAWake) {
  BackoffIdle idle(BackoffLimits{.spins = 1, .yields = 1, .min_park_ns = 1'000, .max_park_ns = 8'000, .yield_after_wake_ns = 60'000'000'000});
  for (int i = 0; i < 4; ++i) idle.idle(0);
  EXPECT_EQ(idle.phase(), 2) << "no submission yet: an idle runner parks";
  idle.wake();
  EXPECT_EQ(idle.phase(), 1) << "a submission came: the next one is likely soon";
  BackoffIdle off(BackoffLimits{.spins = 1, .yields = 1, .min_park_ns = 1'000, .max_park_ns = 8'000, .yield_after_wake_ns = 0});
  for (int i = 0; i < 4; ++i) off.idle(0);
  off.wake();
  EXPECT_EQ(off.phase(), 2);
}

TEST(BackoffIdle, ParksSoThatEveryHeartbeatReadSeesTheCounterMove) {
  EXPECT_EQ(backoff_limits_for(100'000, 20'000).max_park_ns, 25'000u) << "the defaults: a quarter of the read interval";
  EXPECT_EQ(backoff_limits_for(2'000'000, 500'000).max_park_ns, 500'000u);
  EXPECT_EQ(backoff_limits_for(100'000, 80'000).max_park_ns, 10'000u)
      << "a heartbeat close to the read interval leaves less room: half of what is left";
  EXPECT_EQ(backoff_limits_for(8'000, 2'000).max_park_ns, 5'000u) << "at least 5 us";
  EXPECT_EQ(backoff_limits_for(60'000'000, 1'000'000).max_park_ns, 1'000'000u) << "at most 1 ms";
}

TEST(IdleStrategy, UnknownNamesAndBadLimitsAreRefused) {
  EXPECT_THROW(make_idle_strategy("sleep"), std::invalid_argument);
  EXPECT_THROW(BackoffIdle(BackoffLimits{.spins = 1, .yields = 1, .min_park_ns = 0, .max_park_ns = 1}),
               std::invalid_argument);
  EXPECT_NO_THROW(make_idle_strategy("spin"));
  EXPECT_NO_THROW(make_idle_strategy("yield"));
  EXPECT_NO_THROW(make_idle_strategy("backoff"));
}

class CountingAgent final : public Agent {
 public:
  explicit CountingAgent(int work_rounds) : work_rounds_(work_rounds) {}
  int do_work() override {
    calls.fetch_add(1);
    return calls.load() <= work_rounds_ ? 1 : 0;
  }
  std::string_view name() const override { return "counting"; }
  std::atomic<int> calls{0};

 private:
  int work_rounds_;
};

TEST(AgentRunner, RunsEveryAgentEachRoundAndStops) {
  CountingAgent busy(1'000'000'000);
  CountingAgent idle_after_ten(10);
  AgentRunner runner({&busy, &idle_after_ten}, make_idle_strategy("yield"));
  runner.start();
  while (idle_after_ten.calls.load() < 100) std::this_thread::yield();
  runner.stop();
  EXPECT_FALSE(runner.running());
  const int calls = busy.calls.load();
  EXPECT_EQ(calls, idle_after_ten.calls.load()) << "both agents run once per round";
  EXPECT_EQ(runner.rounds(), static_cast<std::uint64_t>(calls));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(busy.calls.load(), calls) << "nothing runs after stop()";
}

TEST(AgentRunner, CountsRoundsInWhichNoAgentWorked) {
  CountingAgent agent(10);
  AgentRunner runner({&agent}, make_idle_strategy("backoff"));
  runner.start();
  while (agent.calls.load() < 50) std::this_thread::yield();
  runner.stop();
  EXPECT_EQ(runner.idle_rounds(), runner.rounds() - 10);
}

TEST(ManualClock, MovesOnlyWhenToldAndNeverBackwards) {
  ManualClock clock;
  EXPECT_EQ(clock.now_ns(), 0u);
  clock.advance_ns(250);
  EXPECT_EQ(clock.now_ns(), 250u);
  clock.set_ns(100);
  EXPECT_EQ(clock.now_ns(), 250u);
}

}  // namespace
}  // namespace mu::engine

namespace mu::engine {
namespace {

// A submission must not wait for a park to time out: wake() from another thread ends it.
// (A functional check with a wide margin: the park is 2 s, the wake comes after 20 ms.)
TEST(BackoffIdle, WakeEndsAParkAtOnce) {
  BackoffIdle idle(BackoffLimits{0, 0, 2'000'000'000, 2'000'000'000});
  ASSERT_EQ(idle.phase(), 2);
  std::atomic<bool> done{false};
  const auto started = std::chrono::steady_clock::now();
  std::thread parker([&] {
    idle.idle(0);
    done = true;
  });
  // Woken again and again: a wake that comes before the thread parks changes nothing.
  while (!done.load() && std::chrono::steady_clock::now() - started < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    idle.wake();
  }
  parker.join();
  EXPECT_TRUE(done.load());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(1000));
}

TEST(SpscRing, RecordsCrossThreadsIntactAndInOrderThroughManyWraps) {
  SpscRing ring(4096);
  constexpr std::uint32_t records = 200'000;
  std::thread producer([&] {
    for (std::uint32_t i = 0; i < records; ++i) {
      // Lengths from 0 to 300 bytes, each byte derived from the record number.
      std::vector<std::byte> record(i % 301);
      for (std::size_t b = 0; b < record.size(); ++b) record[b] = static_cast<std::byte>((i + b) & 0xff);
      while (!ring.try_push(record)) std::this_thread::yield();
    }
  });
  std::uint32_t next = 0;
  bool intact = true;
  while (next < records) {
    ring.drain(
        [&](std::span<const std::byte> record) {
          if (record.size() != next % 301) intact = false;
          for (std::size_t b = 0; b < record.size(); ++b) {
            if (record[b] != static_cast<std::byte>((next + b) & 0xff)) intact = false;
          }
          ++next;
        },
        64);
  }
  producer.join();
  EXPECT_TRUE(intact);
  EXPECT_EQ(next, records);
}

TEST(SpscRing, AFullRingRefusesAndAcceptsAgainOnceDrained) {
  SpscRing ring(64);
  const std::vector<std::byte> record(20);
  int pushed = 0;
  while (ring.try_push(record)) ++pushed;
  EXPECT_GT(pushed, 0);
  EXPECT_FALSE(ring.try_push(record)) << "backpressure, not loss";
  EXPECT_EQ(ring.drain([](std::span<const std::byte>) {}, 100), static_cast<std::size_t>(pushed));
  EXPECT_TRUE(ring.try_push(record));
  EXPECT_FALSE(ring.try_push(std::vector<std::byte>(ring.max_record_bytes() + 1))) << "too long for this ring";
}

TEST(SpscRing, ATwoPartRecordArrivesJoinedAndCanPushPredictsRoom) {
  SpscRing ring(128);
  const std::vector<std::byte> header{std::byte{1}, std::byte{2}, std::byte{3}};
  const std::vector<std::byte> payload(13, std::byte{9});
  int pushed = 0;
  while (ring.can_push(header.size() + payload.size())) {
    ASSERT_TRUE(ring.try_push(header, payload)) << "can_push said there was room";
    ++pushed;
  }
  EXPECT_GT(pushed, 1);
  EXPECT_FALSE(ring.try_push(header, payload));
  std::vector<std::byte> joined(header.size() + payload.size(), std::byte{9});
  std::copy(header.begin(), header.end(), joined.begin());
  int seen = 0;
  ring.drain(
      [&](std::span<const std::byte> record) {
        EXPECT_TRUE(std::equal(record.begin(), record.end(), joined.begin(), joined.end()));
        ++seen;
      },
      100);
  EXPECT_EQ(seen, pushed);
  EXPECT_TRUE(ring.can_push(header.size() + payload.size()));
}

}  // namespace
}  // namespace mu::engine
