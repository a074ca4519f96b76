#include "engine/log_entry.hpp"

#include <atomic>
#include <cassert>
#include <cstring>

#include "engine/crc32c.hpp"

namespace mu::engine {
namespace {

template <typename T>
void store(std::span<std::byte> out, std::size_t offset, T value) {
  std::memcpy(out.data() + offset, &value, sizeof value);
}

template <typename T>
T load(std::span<const std::byte> in, std::size_t offset) {
  T value;
  std::memcpy(&value, in.data() + offset, sizeof value);
  return value;
}

}  // namespace

void encode_entry(std::span<std::byte> out, const EntryHeader& header, std::span<const std::byte> payload) {
  assert(header.payload_bytes == payload.size());
  assert(payload.size() <= max_entry_payload_bytes);
  const std::size_t padded = padded_payload_bytes(payload.size());
  assert(out.size() >= encoded_entry_bytes(payload.size()));
  store(out, 0, header.payload_bytes);
  store(out, 4, static_cast<std::uint32_t>(header.kind));
  store(out, 8, header.proposal);
  store(out, 16, header.log_index);
  store(out, 24, header.leader_commit_index);
  if (!payload.empty()) std::memcpy(out.data() + entry_header_bytes, payload.data(), payload.size());
  std::memset(out.data() + entry_header_bytes + payload.size(), 0, padded - payload.size());
  const std::size_t checked_bytes = entry_header_bytes + padded;
  store(out, checked_bytes, crc32c(out.first(checked_bytes)));
  std::atomic_thread_fence(std::memory_order_release);
  store(out, checked_bytes + 4, entry_canary);
}

DecodedEntry decode_entry(std::span<const std::byte> memory) {
  DecodedEntry decoded;
  if (memory.size() < encoded_entry_bytes(0)) return decoded;
  const auto payload_bytes = load<std::uint32_t>(memory, 0);
  // A length that cannot be right makes the canary's place unknowable: judge by the
  // smallest entry's canary, then refuse the length.
  const bool length_possible = payload_bytes <= max_entry_payload_bytes &&
                               encoded_entry_bytes(payload_bytes) <= memory.size();
  const std::size_t checked_bytes = entry_header_bytes + padded_payload_bytes(length_possible ? payload_bytes : 0);
  const auto canary = load<std::uint32_t>(memory, checked_bytes + 4);
  if (canary != entry_canary) {
    decoded.state = length_possible ? EntryState::absent : EntryState::torn;
    return decoded;
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  if (!length_possible) {
    decoded.state = EntryState::malformed;
    return decoded;
  }
  if (load<std::uint32_t>(memory, checked_bytes) != crc32c(memory.first(checked_bytes))) {
    decoded.state = EntryState::torn;
    return decoded;
  }
  const auto kind = load<std::uint32_t>(memory, 4);
  if (kind < static_cast<std::uint32_t>(EntryKind::commands) || kind > static_cast<std::uint32_t>(EntryKind::wrap)) {
    decoded.state = EntryState::malformed;
    return decoded;
  }
  decoded.header.payload_bytes = payload_bytes;
  decoded.header.kind = static_cast<EntryKind>(kind);
  decoded.header.proposal = load<std::uint64_t>(memory, 8);
  decoded.header.log_index = load<std::uint64_t>(memory, 16);
  decoded.header.leader_commit_index = load<std::uint64_t>(memory, 24);
  decoded.payload = memory.subspan(entry_header_bytes, payload_bytes);
  decoded.state = EntryState::valid;
  return decoded;
}

}  // namespace mu::engine
