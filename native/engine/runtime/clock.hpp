// Time, injected. The engine never reads a clock of its own: the threaded runtime hands
// it a SteadyClock, the simulator a ManualClock that moves only when the simulator says,
// so one seed replays one run exactly.
#pragma once

#include <chrono>
#include <cstdint>

namespace mu::engine {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds since an arbitrary origin.
  virtual std::uint64_t now_ns() const = 0;
};

class SteadyClock final : public Clock {
 public:
  std::uint64_t now_ns() const override {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
  }
};

// The simulator's clock: advanced explicitly, never by itself.
class ManualClock final : public Clock {
 public:
  std::uint64_t now_ns() const override { return now_ns_; }
  void advance_ns(std::uint64_t step_ns) { now_ns_ += step_ns; }
  void set_ns(std::uint64_t now_ns) { now_ns_ = now_ns > now_ns_ ? now_ns : now_ns_; }  // never backwards

 private:
  std::uint64_t now_ns_ = 0;
};

}  // namespace mu::engine
