#include "engine/runtime/idle_strategy.hpp"

#include <immintrin.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace mu::engine {

void SpinIdle::idle(int work_count) {
  if (work_count == 0) _mm_pause();
}

void YieldIdle::idle(int work_count) {
  if (work_count == 0) ::sched_yield();
}

BackoffIdle::BackoffIdle(BackoffLimits limits) : limits_(limits), park_ns_(limits.min_park_ns) {
  if (limits_.min_park_ns == 0 || limits_.max_park_ns < limits_.min_park_ns) {
    throw std::invalid_argument("backoff idle strategy: need 0 < min_park_ns <= max_park_ns");
  }
}

namespace {
std::uint64_t monotonic_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(now.tv_nsec);
}
}  // namespace

int BackoffIdle::phase() const {
  if (idle_rounds_ < limits_.spins) return 0;
  if (idle_rounds_ < limits_.spins + limits_.yields) return 1;
  if (limits_.yield_after_wake_ns > 0 &&
      monotonic_ns() - last_wake_ns_.load(std::memory_order_relaxed) < limits_.yield_after_wake_ns) {
    return 1;
  }
  return 2;
}

void BackoffIdle::idle(int work_count) {
  if (work_count > 0) {
    reset();
    return;
  }
  switch (phase()) {
    case 0:
      _mm_pause();
      break;
    case 1:
      ::sched_yield();
      break;
    default:
      park();
      park_ns_ = std::min(park_ns_ * 2, limits_.max_park_ns);
      break;
  }
  if (idle_rounds_ < limits_.spins + limits_.yields) ++idle_rounds_;
}

void BackoffIdle::park() {
  const std::uint32_t seen = wake_sequence_.load(std::memory_order_seq_cst);
  parked_.store(true, std::memory_order_seq_cst);
  // A wake() between the load above and the wait changes the word: the wait returns at once.
  const timespec timeout{0, static_cast<long>(park_ns_)};
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&wake_sequence_), FUTEX_WAIT_PRIVATE, seen, &timeout, nullptr, 0);
  parked_.store(false, std::memory_order_relaxed);
}

void BackoffIdle::wake() {
  if (limits_.yield_after_wake_ns > 0) last_wake_ns_.store(monotonic_ns(), std::memory_order_relaxed);
  wake_sequence_.fetch_add(1, std::memory_order_seq_cst);
  if (parked_.load(std::memory_order_seq_cst)) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&wake_sequence_), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }
}

void BackoffIdle::reset() {
  idle_rounds_ = 0;
  park_ns_ = limits_.min_park_ns;
}

BackoffLimits backoff_limits_for(std::uint64_t read_interval_ns, std::uint64_t heartbeat_interval_ns) {
  BackoffLimits limits;
  const std::uint64_t spare_ns = read_interval_ns > heartbeat_interval_ns ? read_interval_ns - heartbeat_interval_ns : 0;
  limits.max_park_ns = std::clamp<std::uint64_t>(std::min(read_interval_ns / 4, spare_ns / 2), 5'000, 1'000'000);
  return limits;
}

std::unique_ptr<IdleStrategy> make_idle_strategy(std::string_view name, BackoffLimits limits) {
  if (name == "spin") return std::make_unique<SpinIdle>();
  if (name == "yield") return std::make_unique<YieldIdle>();
  if (name == "backoff") return std::make_unique<BackoffIdle>(limits);
  throw std::invalid_argument("unknown idle strategy '" + std::string(name) + "' (spin, yield or backoff)");
}

}  // namespace mu::engine
