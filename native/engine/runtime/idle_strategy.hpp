// What a runtime thread does when its agents found no work.
//
// With three replicas on two cores, every busy-spinning thread takes a core from the
// others, so the strategy is an explicit, measured choice:
//   spin      burn the core (lowest latency; only with a core to spare per thread)
//   yield     sched_yield() each idle round (cheap when others are runnable)
//   backoff   spin, then yield, then park with a sleep that doubles up to a bound; the
//             default: wakes within a few microseconds under load and costs nothing idle
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace mu::engine {

class IdleStrategy {
 public:
  virtual ~IdleStrategy() = default;
  // Called after each round of agent work with how much work it did.
  virtual void idle(int work_count) = 0;
  virtual void reset() = 0;
  // From another thread: work is waiting (a submission). A parked thread wakes at once
  // instead of when its sleep ends; a running one is not disturbed.
  virtual void wake() {}
};

// The longest park bounds how late an idle replica notices work, and how far apart its
// heartbeats can fall, so it must stay well below the failure detector's read interval.
struct BackoffLimits {
  std::uint32_t spins = 100;
  std::uint32_t yields = 50;
  std::uint64_t min_park_ns = 1'000;
  std::uint64_t max_park_ns = 5'000;  // replicas size it from their detector: backoff_limits_for()
  // After a wake() (a submission), yield instead of parking for this long: a client that
  // just sent a request usually sends the next one soon, and waking a parked thread costs
  // tens of microseconds on a virtual machine (an idle vCPU halts). Heartbeats and other
  // background work do not extend it, so an idle cluster still parks. 0: off.
  std::uint64_t yield_after_wake_ns = 300'000;
};

class SpinIdle final : public IdleStrategy {
 public:
  void idle(int work_count) override;
  void reset() override {}
};

class YieldIdle final : public IdleStrategy {
 public:
  void idle(int work_count) override;
  void reset() override {}
};

// Parks on a futex with a timeout, so wake() cuts a park short: the thread that submits
// work pays one system call only when the runner is actually parked.
class BackoffIdle final : public IdleStrategy {
 public:
  explicit BackoffIdle(BackoffLimits limits = {});
  void idle(int work_count) override;
  void reset() override;
  void wake() override;

  // How the next idle round would wait, for tests: 0 spin, 1 yield, 2 park.
  int phase() const;
  std::uint64_t next_park_ns() const { return park_ns_; }

 private:
  void park();

  BackoffLimits limits_;
  std::uint32_t idle_rounds_ = 0;
  std::uint64_t park_ns_;
  alignas(64) std::atomic<std::uint32_t> wake_sequence_{0};  // the futex word
  std::atomic<bool> parked_{false};
  std::atomic<std::uint64_t> last_wake_ns_{0};
};

// Backoff limits for a replica whose peers read its heartbeat every `read_interval_ns` and
// which moves it every `heartbeat_interval_ns`. What a park must not break is that every
// read sees the counter moved: a bump is due every heartbeat interval and comes at most a
// park late, so a park may take half of what the read interval leaves over the heartbeat
// interval, and at most a quarter of the read interval (at least 5 us, at most 1 ms; with
// the defaults, 100 and 20 us, 25 us). A park is not free: on a virtual machine each
// sleep and wake-up costs tens of microseconds of CPU whatever its length (measured: 5 us
// sleeps took 43% of a core, 200 us ones 15%). Bounded by a quarter of the heartbeat
// interval instead (5 us by default), three idle replicas kept both cores of the 2-core VM
// busy, and their own scheduling gaps made the idle cluster change leader 130 times a
// second (docs/PERFORMANCE.md). Longer parks delay only an idle replica's reaction
// (serving a permission request, applying at a follower): a submission wakes a parked
// leader at once.
BackoffLimits backoff_limits_for(std::uint64_t read_interval_ns, std::uint64_t heartbeat_interval_ns);

// "spin", "yield" or "backoff"; throws std::invalid_argument for anything else.
std::unique_ptr<IdleStrategy> make_idle_strategy(std::string_view name, BackoffLimits limits = {});

}  // namespace mu::engine
