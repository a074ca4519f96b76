#include "engine/command_batch.hpp"

#include <cstring>
#include <limits>

namespace mu::engine {

void append_command(std::vector<std::byte>& batch, const CommandTag& tag, std::span<const std::byte> bytes) {
  const std::size_t start = batch.size();
  batch.resize(start + command_record_header_bytes + bytes.size());
  const auto length = static_cast<std::uint32_t>(bytes.size());
  const std::uint32_t origin = tag.origin;  // NodeId is narrower than its 4-byte field
  std::memcpy(batch.data() + start, &origin, 4);
  std::memcpy(batch.data() + start + 4, &length, 4);
  std::memcpy(batch.data() + start + 8, &tag.sequence, 8);
  if (!bytes.empty()) std::memcpy(batch.data() + start + command_record_header_bytes, bytes.data(), bytes.size());
}

bool for_each_command(std::span<const std::byte> batch, const std::function<void(const Command&)>& visit) {
  std::size_t offset = 0;
  while (offset < batch.size()) {
    if (batch.size() - offset < command_record_header_bytes) return false;
    Command command;
    std::uint32_t length = 0;
    std::uint32_t origin = 0;
    std::memcpy(&origin, batch.data() + offset, 4);
    if (origin > std::numeric_limits<fabric::NodeId>::max()) return false;
    command.tag.origin = static_cast<fabric::NodeId>(origin);
    std::memcpy(&length, batch.data() + offset + 4, 4);
    std::memcpy(&command.tag.sequence, batch.data() + offset + 8, 8);
    offset += command_record_header_bytes;
    if (length > batch.size() - offset) return false;
    command.bytes = batch.subspan(offset, length);
    visit(command);
    offset += length;
  }
  return true;
}

}  // namespace mu::engine
