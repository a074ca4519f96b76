// Proposals from another thread: the producer side of an SpscRing that a LeaderAgent
// drains (LeaderAgent::accept_submissions). The submitter numbers the commands itself, so
// the caller learns each command's tag at once and can match it when it is applied.
// Use one submitter per leader agent, and do not mix it with LeaderAgent::propose().
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "engine/command_batch.hpp"
#include "engine/runtime/spsc_ring.hpp"

namespace mu::engine {

class CommandSubmitter {
 public:
  CommandSubmitter(SpscRing& ring, fabric::NodeId origin) : ring_(ring), origin_(origin) {}

  // The command's tag, or nullopt when the ring is full (backpressure: retry later) or
  // the command can never fit.
  std::optional<CommandTag> submit(std::span<const std::byte> command) {
    const CommandTag tag{origin_, next_sequence_};
    record_.clear();
    append_command(record_, tag, command);
    if (!ring_.try_push(record_)) return std::nullopt;
    ++next_sequence_;
    return tag;
  }

 private:
  SpscRing& ring_;
  fabric::NodeId origin_;
  std::uint64_t next_sequence_ = 1;
  std::vector<std::byte> record_;
};

}  // namespace mu::engine
