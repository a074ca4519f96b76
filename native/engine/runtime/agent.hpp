// An agent: one plane of the engine as a non-blocking state machine (the Aeron model).
// do_work() posts operations, polls completions, advances state and returns how much it
// did; it never blocks and never sleeps. Whether to spin, yield or park when an agent did
// nothing is the runtime's choice (idle_strategy.hpp), not the agent's, so the threaded
// runtime and the deterministic simulator drive exactly the same code.
#pragma once

#include <string_view>

namespace mu::engine {

class Agent {
 public:
  virtual ~Agent() = default;
  // Performs whatever work is ready; returns a count of work items done (0 = idle).
  virtual int do_work() = 0;
  virtual std::string_view name() const = 0;
};

}  // namespace mu::engine
