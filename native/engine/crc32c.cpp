#include "engine/crc32c.hpp"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace mu::engine {
namespace {

constexpr std::uint32_t castagnoli_reversed = 0x82f63b78;

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t value = i;
    for (int bit = 0; bit < 8; ++bit) value = (value >> 1) ^ ((value & 1) != 0 ? castagnoli_reversed : 0);
    table[i] = value;
  }
  return table;
}
constexpr auto table = make_table();

// Multiplies two polynomials modulo the Castagnoli polynomial, both in the reflected
// bit order CRC registers use (bit 31 is x^0).
constexpr std::uint32_t multiply_modulo(std::uint32_t a, std::uint32_t b) {
  std::uint32_t product = 0;
  for (std::uint32_t bit = 1u << 31; bit != 0; bit >>= 1) {
    if ((a & bit) != 0) product ^= b;
    b = (b & 1) != 0 ? (b >> 1) ^ castagnoli_reversed : b >> 1;
  }
  return product;
}

// x^(8 * bytes) modulo the polynomial: the operator that moves a CRC register past `bytes`
// zero bytes.
constexpr std::uint32_t shift_operator(std::size_t bytes) {
  std::uint32_t power = 1u << 31;  // x^0
  for (std::size_t i = 0; i < 8 * bytes; ++i) power = (power & 1) != 0 ? (power >> 1) ^ castagnoli_reversed : power >> 1;
  return power;
}

// The shift as four byte-indexed tables: the operator is linear over GF(2), so shifting a
// register is the XOR of its four bytes shifted alone (four loads instead of a 32-step
// multiplication).
struct ShiftTables {
  std::array<std::array<std::uint32_t, 256>, 4> by_byte{};
  std::uint32_t apply(std::uint32_t crc) const {
    return by_byte[0][crc & 0xff] ^ by_byte[1][(crc >> 8) & 0xff] ^ by_byte[2][(crc >> 16) & 0xff] ^
           by_byte[3][crc >> 24];
  }
};

constexpr ShiftTables make_shift_tables(std::size_t bytes) {
  const std::uint32_t op = shift_operator(bytes);
  ShiftTables tables;
  for (std::uint32_t lane = 0; lane < 4; ++lane) {
    for (std::uint32_t value = 0; value < 256; ++value) tables.by_byte[lane][value] = multiply_modulo(op, value << (8 * lane));
  }
  return tables;
}

#if defined(__x86_64__)
// The crc32 instruction has a latency of three cycles and a throughput of one, so one
// dependency chain runs at a third of its speed. Buffers of a few hundred bytes and more
// are cut into chunks of three interleaved streams, whose registers are then joined:
// crc(A B C) = shift(crc(A), 2 stream) ^ shift(crc(B), stream) ^ crc(C) with B and C
// started from zero (the register is linear in its start value and its input).
constexpr std::size_t stream_bytes = 128;
const ShiftTables shift_one_stream = make_shift_tables(stream_bytes);
const ShiftTables shift_two_streams = make_shift_tables(2 * stream_bytes);

__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::span<const std::byte> bytes, std::uint32_t crc) {
  std::uint64_t value = ~crc;
  const std::byte* at = bytes.data();
  std::size_t left = bytes.size();
  while (left >= 3 * stream_bytes) {
    std::uint64_t second = 0;
    std::uint64_t third = 0;
    for (std::size_t offset = 0; offset < stream_bytes; offset += 8) {
      std::uint64_t words[3];
      std::memcpy(&words[0], at + offset, 8);
      std::memcpy(&words[1], at + stream_bytes + offset, 8);
      std::memcpy(&words[2], at + 2 * stream_bytes + offset, 8);
      value = _mm_crc32_u64(value, words[0]);
      second = _mm_crc32_u64(second, words[1]);
      third = _mm_crc32_u64(third, words[2]);
    }
    value = shift_two_streams.apply(static_cast<std::uint32_t>(value)) ^
            shift_one_stream.apply(static_cast<std::uint32_t>(second)) ^ static_cast<std::uint32_t>(third);
    at += 3 * stream_bytes;
    left -= 3 * stream_bytes;
  }
  while (left >= 8) {
    std::uint64_t word;
    std::memcpy(&word, at, 8);
    value = _mm_crc32_u64(value, word);
    at += 8;
    left -= 8;
  }
  auto value32 = static_cast<std::uint32_t>(value);
  while (left-- > 0) value32 = _mm_crc32_u8(value32, static_cast<std::uint8_t>(*at++));
  return ~value32;
}

const bool have_sse42 = __builtin_cpu_supports("sse4.2");
#endif

}  // namespace

std::uint32_t crc32c_portable(std::span<const std::byte> bytes, std::uint32_t crc) {
  std::uint32_t value = ~crc;
  for (const std::byte byte : bytes) {
    value = table[(value ^ static_cast<std::uint8_t>(byte)) & 0xff] ^ (value >> 8);
  }
  return ~value;
}

std::uint32_t crc32c(std::span<const std::byte> bytes, std::uint32_t crc) {
#if defined(__x86_64__)
  if (have_sse42) return crc32c_sse42(bytes, crc);
#endif
  return crc32c_portable(bytes, crc);
}

}  // namespace mu::engine
