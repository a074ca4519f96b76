// Log entries are trusted only whole: checksum, canary and expected index together.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "engine/crc32c.hpp"
#include "engine/log_entry.hpp"

namespace mu::engine {
namespace {

std::vector<std::byte> bytes_of(std::string_view text) {
  std::vector<std::byte> bytes(text.size());
  if (!text.empty()) std::memcpy(bytes.data(), text.data(), text.size());
  return bytes;
}

TEST(Crc32c, MatchesTheStandardCheckValue) {
  // The CRC-32C check value of "123456789" (RFC 3720, appendix B.4).
  EXPECT_EQ(crc32c(bytes_of("123456789")), 0xe3069283u);
  EXPECT_EQ(crc32c_portable(bytes_of("123456789")), 0xe3069283u);
}

TEST(Crc32c, HardwareAndPortableAgreeAtEveryLengthAndSplit) {  // past several three-stream chunks
  std::mt19937 random(7);
  std::vector<std::byte> data(5000);
  for (auto& byte : data) byte = static_cast<std::byte>(random());
  for (std::size_t length = 0; length <= data.size(); length += 37) {
    const auto span = std::span<const std::byte>(data).first(length);
    ASSERT_EQ(crc32c(span), crc32c_portable(span)) << length;
    const std::size_t half = length / 2;
    ASSERT_EQ(crc32c(span.subspan(half), crc32c(span.first(half))), crc32c(span)) << length;
  }
}

class LogEntryTest : public ::testing::Test {
 protected:
  std::vector<std::byte> encode(std::string_view text, std::uint64_t index) {
    const auto payload = bytes_of(text);
    std::vector<std::byte> memory(encoded_entry_bytes(payload.size()) + 64);
    const EntryHeader header{static_cast<std::uint32_t>(payload.size()), EntryKind::commands, 0x500 + index, index,
                             index - 1};
    encode_entry(memory, header, payload);
    return memory;
  }
};

TEST_F(LogEntryTest, RoundTripsEveryField) {
  const auto memory = encode("SET key value", 42);
  const DecodedEntry entry = decode_entry(memory);
  ASSERT_EQ(entry.state, EntryState::valid);
  EXPECT_EQ(entry.header.log_index, 42u);
  EXPECT_EQ(entry.header.proposal, 0x500u + 42);
  EXPECT_EQ(entry.header.leader_commit_index, 41u);
  EXPECT_EQ(entry.header.kind, EntryKind::commands);
  ASSERT_EQ(entry.payload.size(), 13u);
  EXPECT_EQ(std::memcmp(entry.payload.data(), "SET key value", 13), 0);
}

TEST_F(LogEntryTest, ZeroedMemoryIsAbsent) {
  std::vector<std::byte> memory(256);
  EXPECT_EQ(decode_entry(memory).state, EntryState::absent);
}

TEST_F(LogEntryTest, EmptyPayloadIsAValidEntry) {
  const auto memory = encode("", 1);
  EXPECT_EQ(decode_entry(memory).state, EntryState::valid);
  EXPECT_EQ(encoded_entry_bytes(0), entry_header_bytes + entry_trailer_bytes);
}

// RDMA does not promise byte order within a write: the canary may land before the rest.
// Any byte still missing or wrong must make the entry untrusted.
TEST_F(LogEntryTest, AnyCorruptedByteMakesTheEntryTorn) {
  const auto good = encode("a payload of some length", 9);
  const std::size_t checked_bytes = encoded_entry_bytes(24) - entry_trailer_bytes;
  for (std::size_t at = 0; at < checked_bytes; ++at) {
    auto memory = good;
    memory[at] ^= std::byte{0x01};
    EXPECT_NE(decode_entry(memory).state, EntryState::valid) << "byte " << at;
  }
}

TEST_F(LogEntryTest, CanaryArrivingBeforeThePayloadIsNotTrusted) {
  auto memory = encode("landing in any order", 3);
  std::memset(memory.data() + entry_header_bytes, 0, 20);  // the payload has not landed yet
  EXPECT_EQ(decode_entry(memory).state, EntryState::torn);
}

TEST_F(LogEntryTest, ImpossibleLengthIsNeverTrusted) {
  auto memory = encode("x", 1);
  const std::uint32_t huge = max_entry_payload_bytes + 1;
  std::memcpy(memory.data(), &huge, 4);
  EXPECT_NE(decode_entry(memory).state, EntryState::valid);
  const std::uint32_t beyond_memory = static_cast<std::uint32_t>(memory.size());
  std::memcpy(memory.data(), &beyond_memory, 4);
  EXPECT_NE(decode_entry(memory).state, EntryState::valid);
}

TEST_F(LogEntryTest, MemoryShorterThanAnEntryIsAbsent) {
  const auto memory = encode("abc", 1);
  EXPECT_EQ(decode_entry(std::span(memory).first(encoded_entry_bytes(0) - 1)).state, EntryState::absent);
}

}  // namespace
}  // namespace mu::engine
