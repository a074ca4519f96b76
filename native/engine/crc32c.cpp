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

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::span<const std::byte> bytes, std::uint32_t crc) {
  std::uint64_t value = ~crc;
  const std::byte* at = bytes.data();
  std::size_t left = bytes.size();
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
