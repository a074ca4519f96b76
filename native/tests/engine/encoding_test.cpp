// Log cursors and command batches: what a reader accepts and what it refuses.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "engine/command_batch.hpp"
#include "engine/log_cursor.hpp"

namespace mu::engine {
namespace {

TEST(LogCursor, RoundTrips) {
  const LogCursor cursor{42, 4096 + 64};
  const auto encoded = encode_cursor(cursor);
  const auto decoded = decode_cursor(encoded);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, cursor);
}

TEST(LogCursor, NeverWrittenMemoryReadsAsNoCursor) {
  const EncodedCursor zeros{};
  EXPECT_FALSE(decode_cursor(zeros).has_value());
}

TEST(LogCursor, AHalfWrittenCursorIsRefusedNotMixed) {
  const auto old_cursor = encode_cursor(LogCursor{7, 512});
  const auto new_cursor = encode_cursor(LogCursor{8, 640});
  for (std::size_t split = 1; split < encoded_cursor_bytes; ++split) {
    EncodedCursor mixed = old_cursor;
    std::memcpy(mixed.data(), new_cursor.data(), split);  // the new bytes landed up to `split`
    const auto decoded = decode_cursor(mixed);
    if (decoded) {
      EXPECT_TRUE(*decoded == (LogCursor{7, 512}) || *decoded == (LogCursor{8, 640})) << "split " << split;
    }
  }
}

TEST(CommandBatch, CommandsComeBackInOrderWithTheirTags) {
  std::vector<std::byte> batch;
  const std::string first = "set a 1";
  const std::string second;  // an empty command is still a command
  append_command(batch, CommandTag{2, 10}, std::as_bytes(std::span(first)));
  append_command(batch, CommandTag{2, 11}, std::as_bytes(std::span(second)));
  std::vector<std::pair<CommandTag, std::string>> seen;
  EXPECT_TRUE(for_each_command(batch, [&](const Command& command) {
    seen.emplace_back(command.tag, std::string(reinterpret_cast<const char*>(command.bytes.data()), command.bytes.size()));
  }));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, (CommandTag{2, 10}));
  EXPECT_EQ(seen[0].second, first);
  EXPECT_EQ(seen[1].first, (CommandTag{2, 11}));
  EXPECT_EQ(seen[1].second, "");
}

// The origin field is 4 bytes on the wire and NodeId is 2: the encoder once copied the
// tag's padding into the upper half, which other languages (the TypeScript reader) read.
TEST(CommandBatch, TheOriginFieldIsTheNodeIdWidenedAndALargerOneIsMalformed) {
  std::vector<std::byte> batch;
  CommandTag tag;
  std::memset(static_cast<void*>(&tag), 0xab, sizeof tag);  // garbage in the padding
  tag.origin = 7;
  tag.sequence = 1;
  append_command(batch, tag, {});
  std::uint32_t origin = 0;
  std::memcpy(&origin, batch.data(), 4);
  EXPECT_EQ(origin, 7u);
  origin = 70000;
  std::memcpy(batch.data(), &origin, 4);
  EXPECT_FALSE(for_each_command(batch, [](const Command&) {}));
}

TEST(CommandBatch, ALengthRunningPastTheEndIsMalformed) {
  std::vector<std::byte> batch;
  const std::string command = "get x";
  append_command(batch, CommandTag{0, 1}, std::as_bytes(std::span(command)));
  batch.resize(batch.size() - 1);
  int visited = 0;
  EXPECT_FALSE(for_each_command(batch, [&](const Command&) { ++visited; }));
  EXPECT_EQ(visited, 0);
}

}  // namespace
}  // namespace mu::engine
