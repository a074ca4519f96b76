// The leader's queue of command records waiting for a log entry, kept as one run of bytes.
//
// Records (command_batch.hpp's encoding; one record may hold several commands) are
// appended in order, and an entry takes a prefix of them. Because the records are
// contiguous, that prefix is already the entry's payload: it is encoded straight from here,
// with no per-record allocation and no copy into a batch first. The hot case, a queue that
// drains every round, reuses the same bytes from the start each time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/command_batch.hpp"

namespace mu::engine {

class PendingCommands {
 public:
  std::size_t record_count() const { return record_bytes_.size() - first_record_; }
  bool empty() const { return record_count() == 0; }

  // Appends one record as encoded elsewhere (a submission from another thread).
  void push_record(std::span<const std::byte> record);
  // Encodes one command as a record of its own and appends it.
  void push_command(const CommandTag& tag, std::span<const std::byte> bytes);

  // The longest prefix of whole records that fits in `max_bytes`, as one payload: the
  // span stays valid until the next push or pop. Its record count is `records`.
  struct Prefix {
    std::span<const std::byte> payload;
    std::size_t records = 0;
  };
  Prefix prefix_within(std::size_t max_bytes) const;
  // Drops the first `records` records (a prefix just written into an entry).
  void pop(std::size_t records);
  void clear();

  // Each record, oldest first.
  template <typename Visit>
  void for_each_record(Visit&& visit) const {
    std::size_t offset = first_byte_;
    for (std::size_t i = first_record_; i < record_bytes_.size(); ++i) {
      visit(std::span<const std::byte>(bytes_.data() + offset, record_bytes_[i]));
      offset += record_bytes_[i];
    }
  }

 private:
  void compact_if_worthwhile();

  std::vector<std::byte> bytes_;             // records from first_byte_ on are pending
  std::vector<std::uint32_t> record_bytes_;  // each record's size, from first_record_ on
  std::size_t first_byte_ = 0;
  std::size_t first_record_ = 0;
};

}  // namespace mu::engine
