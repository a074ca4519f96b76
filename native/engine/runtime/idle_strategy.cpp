#include "engine/runtime/idle_strategy.hpp"

#include <immintrin.h>
#include <sched.h>
#include <time.h>

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

int BackoffIdle::phase() const {
  if (idle_rounds_ < limits_.spins) return 0;
  if (idle_rounds_ < limits_.spins + limits_.yields) return 1;
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
    default: {
      const timespec duration{0, static_cast<long>(park_ns_)};
      ::nanosleep(&duration, nullptr);
      park_ns_ = std::min(park_ns_ * 2, limits_.max_park_ns);
      break;
    }
  }
  if (idle_rounds_ < limits_.spins + limits_.yields) ++idle_rounds_;
}

void BackoffIdle::reset() {
  idle_rounds_ = 0;
  park_ns_ = limits_.min_park_ns;
}

std::unique_ptr<IdleStrategy> make_idle_strategy(std::string_view name, BackoffLimits limits) {
  if (name == "spin") return std::make_unique<SpinIdle>();
  if (name == "yield") return std::make_unique<YieldIdle>();
  if (name == "backoff") return std::make_unique<BackoffIdle>(limits);
  throw std::invalid_argument("unknown idle strategy '" + std::string(name) + "' (spin, yield or backoff)");
}

}  // namespace mu::engine
