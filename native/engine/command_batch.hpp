// The payload of a `commands` log entry: a batch of client commands, each tagged with the
// replica that proposed it and that replica's proposal sequence number.
//
//   per command: origin (4 bytes) | length (4 bytes) | sequence (8 bytes) | bytes
//
// The tag is what lets the leader's front end match an applied command to the client
// waiting for it, and lets a new leader apply commands adopted from its predecessor
// (paper 4.1, prepare adoption) without mistaking them for its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "fabric/endpoint.hpp"

namespace mu::engine {

inline constexpr std::size_t command_record_header_bytes = 16;

struct CommandTag {
  fabric::NodeId origin = 0;
  std::uint64_t sequence = 0;
  bool operator==(const CommandTag&) const = default;
};

struct Command {
  CommandTag tag;
  std::span<const std::byte> bytes;
};

// Appends one command to a batch being built.
void append_command(std::vector<std::byte>& batch, const CommandTag& tag, std::span<const std::byte> bytes);

// Calls `visit` for each command of a batch in order; false if the batch is malformed
// (a length running past the end), in which case nothing after the bad record is visited.
bool for_each_command(std::span<const std::byte> batch, const std::function<void(const Command&)>& visit);

}  // namespace mu::engine
