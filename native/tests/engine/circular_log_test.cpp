// The circular log: a writer placing entries (with wrap markers) and a reader following
// it over many laps agree on every entry, and the writer never overwrites what has not
// been recycled.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "engine/circular_log.hpp"

namespace mu::engine {
namespace {

TEST(CircularLog, RefusesAnAreaTooSmallForOneEntry) {
  EXPECT_THROW(CircularLog(64, 1024), std::invalid_argument);
  EXPECT_THROW(CircularLog(4100, 16), std::invalid_argument);  // not a multiple of 8
  EXPECT_NO_THROW(CircularLog(4096, 1024));
}

TEST(CircularLog, EntryThatDoesNotFitBeforeTheEndWrapsBehindAMarker) {
  const CircularLog log(1024, 512);
  const auto placement = log.place_entry(960, 100, 512);
  ASSERT_TRUE(placement.has_value());
  EXPECT_EQ(placement->wrap_marker_position, std::optional<std::uint64_t>(960));
  EXPECT_EQ(placement->entry_position, 1024u);
  EXPECT_EQ(placement->next_position, 1024u + encoded_entry_bytes(100));
}

TEST(CircularLog, NoMarkerWhenEvenAMarkerDoesNotFit) {
  const CircularLog log(1024, 512);
  const auto placement = log.place_entry(1000, 8, 512);
  ASSERT_TRUE(placement.has_value());
  EXPECT_FALSE(placement->wrap_marker_position.has_value());
  EXPECT_EQ(placement->entry_position, 1024u);
  EXPECT_EQ(log.readable_position(1000), 1024u);
  // A reader that caught up already stands at the next lap: still a valid recycled point.
  EXPECT_TRUE(log.place_entry(1000, 8, 1024).has_value());
}

// The trap of the original fast path: it never checked free space.
TEST(CircularLog, FullLogRefusesToPlaceUntilSpaceIsRecycled) {
  const CircularLog log(1024, 512);
  EXPECT_TRUE(log.place_entry(0, 512, 0).has_value());
  EXPECT_FALSE(log.place_entry(1000, 8, 0).has_value()) << "would overwrite position 0..";
  EXPECT_TRUE(log.place_entry(1000, 8, 200).has_value());
  EXPECT_FALSE(log.place_entry(0, 1024, 0).has_value()) << "larger than the maximum payload";
}

TEST(CircularLog, ReaderFollowsWriterOverManyLaps) {
  constexpr std::uint64_t area_bytes = 4096;
  const CircularLog log(area_bytes, 700);
  std::vector<std::byte> area(area_bytes);
  std::mt19937 random(11);
  std::uint64_t tail = 0;
  std::uint64_t read_position = 0;
  std::uint64_t next_index_to_write = 1;
  std::uint64_t next_index_to_read = 1;
  int refused_for_space = 0;

  auto write_at = [&](std::uint64_t position, EntryKind kind, std::uint64_t index, std::uint32_t payload_bytes) {
    std::vector<std::byte> payload(payload_bytes, static_cast<std::byte>(index));
    encode_entry(std::span(area).subspan(log.place(position)),
                 EntryHeader{payload_bytes, kind, 1, index, 0}, payload);
  };
  auto read_one = [&] {
    read_position = log.readable_position(read_position);
    const DecodedEntry entry = decode_entry(std::span(area).subspan(log.place(read_position)));
    if (entry.state != EntryState::valid) return false;
    // A wrap marker carries the index of the entry after it, so a stale one from an
    // earlier lap is never followed.
    if (entry.header.log_index != next_index_to_read) return false;
    const std::uint64_t position = read_position;
    read_position = log.position_after(position, entry.header);
    if (entry.header.kind == EntryKind::commands) {
      for (const std::byte byte : entry.payload) EXPECT_EQ(byte, static_cast<std::byte>(next_index_to_read));
      ++next_index_to_read;
    }
    // Recycle what was read: zero it, as the leader does below the recycled position.
    const std::uint64_t used_bytes = encoded_entry_bytes(entry.header.payload_bytes);
    std::memset(area.data() + log.place(position), 0, used_bytes);
    return true;
  };

  while (next_index_to_write <= 5000) {
    const auto payload_bytes = static_cast<std::uint32_t>(random() % 700);
    const auto placement = log.place_entry(tail, payload_bytes, read_position);
    if (!placement) {
      ++refused_for_space;
      ASSERT_TRUE(read_one()) << "the log is full but the reader found nothing to read";
      continue;
    }
    if (placement->wrap_marker_position) {
      write_at(*placement->wrap_marker_position, EntryKind::wrap, next_index_to_write, 0);
    }
    write_at(placement->entry_position, EntryKind::commands, next_index_to_write++, payload_bytes);
    tail = placement->next_position;
    if (random() % 3 == 0) {
      while (read_one()) {
      }
    }
  }
  while (read_one()) {
  }
  EXPECT_EQ(next_index_to_read, next_index_to_write);
  EXPECT_GT(refused_for_space, 0) << "the test never filled the log";
  EXPECT_GT(tail, 100 * area_bytes) << "the test did not go round many laps";
}

}  // namespace
}  // namespace mu::engine
