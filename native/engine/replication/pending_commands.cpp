#include "engine/replication/pending_commands.hpp"

#include <cassert>

namespace mu::engine {

void PendingCommands::push_record(std::span<const std::byte> record) {
  bytes_.insert(bytes_.end(), record.begin(), record.end());
  record_bytes_.push_back(static_cast<std::uint32_t>(record.size()));
}

void PendingCommands::push_command(const CommandTag& tag, std::span<const std::byte> bytes) {
  const std::size_t before = bytes_.size();
  append_command(bytes_, tag, bytes);
  record_bytes_.push_back(static_cast<std::uint32_t>(bytes_.size() - before));
}

PendingCommands::Prefix PendingCommands::prefix_within(std::size_t max_bytes) const {
  Prefix prefix;
  std::size_t bytes = 0;
  for (std::size_t i = first_record_; i < record_bytes_.size(); ++i) {
    if (bytes + record_bytes_[i] > max_bytes) break;
    bytes += record_bytes_[i];
    ++prefix.records;
  }
  prefix.payload = std::span<const std::byte>(bytes_.data() + first_byte_, bytes);
  return prefix;
}

void PendingCommands::pop(std::size_t records) {
  assert(records <= record_count());
  for (std::size_t i = 0; i < records; ++i) first_byte_ += record_bytes_[first_record_++];
  compact_if_worthwhile();
}

void PendingCommands::clear() {
  bytes_.clear();
  record_bytes_.clear();
  first_byte_ = 0;
  first_record_ = 0;
}

void PendingCommands::compact_if_worthwhile() {
  if (empty()) return clear();  // the common case: capacity is kept, nothing moves
  // Moving the rest forward costs what it holds; do it once the consumed part is the larger,
  // so each byte moves a bounded number of times.
  if (first_byte_ < bytes_.size() / 2) return;
  bytes_.erase(bytes_.begin(), bytes_.begin() + static_cast<std::ptrdiff_t>(first_byte_));
  record_bytes_.erase(record_bytes_.begin(), record_bytes_.begin() + static_cast<std::ptrdiff_t>(first_record_));
  first_byte_ = 0;
  first_record_ = 0;
}

}  // namespace mu::engine
