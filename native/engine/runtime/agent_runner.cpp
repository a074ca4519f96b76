#include "engine/runtime/agent_runner.hpp"

#include <sys/prctl.h>

#include <cassert>
#include <stdexcept>

namespace mu::engine {

AgentRunner::AgentRunner(std::vector<Agent*> agents, std::unique_ptr<IdleStrategy> idle)
    : agents_(std::move(agents)), idle_(std::move(idle)) {
  if (agents_.empty()) throw std::invalid_argument("agent runner: no agents to run");
  if (!idle_) throw std::invalid_argument("agent runner: no idle strategy");
}

AgentRunner::~AgentRunner() { stop(); }

void AgentRunner::start() {
  assert(!thread_.joinable());
  stop_requested_.store(false);
  thread_ = std::thread([this] { run(); });
}

void AgentRunner::stop() {
  stop_requested_.store(true);
  idle_->wake();
  if (thread_.joinable()) thread_.join();
}

void AgentRunner::run() {
  // Parking sleeps are a few microseconds; the default 50 us timer slack would stretch every
  // one of them and with it the heartbeat period.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  while (!stop_requested_.load(std::memory_order_relaxed)) {
    int work_count = 0;
    for (Agent* agent : agents_) work_count += agent->do_work();
    rounds_.fetch_add(1, std::memory_order_relaxed);
    if (work_count == 0) idle_rounds_.fetch_add(1, std::memory_order_relaxed);
    idle_->idle(work_count);
  }
}

}  // namespace mu::engine
