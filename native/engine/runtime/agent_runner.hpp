// The threaded runtime: one thread running a group of agents round-robin, with an idle
// strategy between rounds that did nothing. A replica may put all its agents on one
// runner (the default on small machines) or give a plane a runner of its own.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/runtime/agent.hpp"
#include "engine/runtime/idle_strategy.hpp"

namespace mu::engine {

class AgentRunner {
 public:
  // The agents must outlive the runner (or at least its stop()).
  AgentRunner(std::vector<Agent*> agents, std::unique_ptr<IdleStrategy> idle);
  ~AgentRunner();  // stops
  AgentRunner(const AgentRunner&) = delete;
  AgentRunner& operator=(const AgentRunner&) = delete;

  void start();
  // Asks the thread to finish its current round and joins it. Idempotent.
  void stop();
  bool running() const { return thread_.joinable(); }
  // From any thread: work is waiting; a parked runner wakes at once (IdleStrategy::wake).
  void wake() { idle_->wake(); }
  // Rounds completed, and rounds in which no agent did anything (for status counters).
  std::uint64_t rounds() const { return rounds_.load(std::memory_order_relaxed); }
  std::uint64_t idle_rounds() const { return idle_rounds_.load(std::memory_order_relaxed); }

 private:
  void run();

  std::vector<Agent*> agents_;
  std::unique_ptr<IdleStrategy> idle_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<std::uint64_t> rounds_{0};
  std::atomic<std::uint64_t> idle_rounds_{0};
  std::thread thread_;
};

}  // namespace mu::engine
