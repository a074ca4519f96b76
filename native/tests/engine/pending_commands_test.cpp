// The leader's pending queue: whole records in order, an entry's payload taken as a prefix
// of them, and the bytes reused once the queue drains.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "engine/replication/pending_commands.hpp"

namespace mu::engine {
namespace {

std::span<const std::byte> bytes_of(const std::string& text) {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

std::vector<std::string> commands_in(std::span<const std::byte> payload) {
  std::vector<std::string> out;
  EXPECT_TRUE(for_each_command(payload, [&](const Command& command) {
    out.emplace_back(reinterpret_cast<const char*>(command.bytes.data()), command.bytes.size());
  }));
  return out;
}

TEST(PendingCommands, APrefixHoldsWholeRecordsInOrderWithinTheLimit) {
  PendingCommands pending;
  for (int i = 0; i < 10; ++i) {
    std::string text = "cmd";
    text += std::to_string(i);
    pending.push_command(CommandTag{1, static_cast<std::uint64_t>(i + 1)}, bytes_of(text));
  }
  ASSERT_EQ(pending.record_count(), 10u);
  const std::size_t record_bytes = command_record_header_bytes + 4;  // "cmdN"
  // Room for three and a half records: three are taken, never part of the fourth.
  const auto prefix = pending.prefix_within(record_bytes * 3 + record_bytes / 2);
  EXPECT_EQ(prefix.records, 3u);
  EXPECT_EQ(prefix.payload.size(), record_bytes * 3);
  EXPECT_EQ(commands_in(prefix.payload), (std::vector<std::string>{"cmd0", "cmd1", "cmd2"}));
  pending.pop(prefix.records);
  EXPECT_EQ(pending.record_count(), 7u);
  EXPECT_EQ(commands_in(pending.prefix_within(1 << 20).payload),
            (std::vector<std::string>{"cmd3", "cmd4", "cmd5", "cmd6", "cmd7", "cmd8", "cmd9"}));
}

TEST(PendingCommands, ARecordLargerThanTheLimitGivesAnEmptyPrefix) {
  PendingCommands pending;
  pending.push_command(CommandTag{0, 1}, bytes_of(std::string(100, 'x')));
  EXPECT_EQ(pending.prefix_within(50).records, 0u);
  EXPECT_TRUE(pending.prefix_within(50).payload.empty());
}

TEST(PendingCommands, RecordsFromSubmissionsKeepTheirCommandsAndOrderAcrossCompaction) {
  PendingCommands pending;
  std::vector<std::string> expected;
  std::vector<std::string> taken;
  std::uint64_t sequence = 0;
  // Interleaved pushes and partial pops: the consumed part grows past half and is
  // compacted away many times, and nothing is lost or reordered.
  for (int round = 0; round < 200; ++round) {
    for (int i = 0; i < 3; ++i) {
      std::vector<std::byte> record;  // two commands in one record, as a front end batches them
      for (int j = 0; j < 2; ++j) {
        char text_buffer[32];
        std::snprintf(text_buffer, sizeof text_buffer, "r%d-%d-%d", round, i, j);
        const std::string text = text_buffer;
        append_command(record, CommandTag{2, ++sequence}, bytes_of(text));
        expected.push_back(text);
      }
      pending.push_record(record);
    }
    const auto prefix = pending.prefix_within(130);  // two of the three records just pushed: a backlog builds
    for (const auto& text : commands_in(prefix.payload)) taken.push_back(text);
    pending.pop(prefix.records);
  }
  const auto rest = pending.prefix_within(1 << 20);
  for (const auto& text : commands_in(rest.payload)) taken.push_back(text);
  pending.pop(rest.records);
  EXPECT_TRUE(pending.empty());
  EXPECT_EQ(taken, expected);
}

TEST(PendingCommands, EachRecordIsVisitedOnceOldestFirstAndClearEmpties) {
  PendingCommands pending;
  for (int i = 0; i < 5; ++i) pending.push_command(CommandTag{0, static_cast<std::uint64_t>(i + 1)}, bytes_of(std::to_string(i)));
  pending.pop(2);
  std::vector<std::uint64_t> sequences;
  pending.for_each_record([&](std::span<const std::byte> record) {
    for_each_command(record, [&](const Command& command) { sequences.push_back(command.tag.sequence); });
  });
  EXPECT_EQ(sequences, (std::vector<std::uint64_t>{3, 4, 5}));
  pending.clear();
  EXPECT_TRUE(pending.empty());
  EXPECT_EQ(pending.prefix_within(1 << 20).records, 0u);
}

}  // namespace
}  // namespace mu::engine
