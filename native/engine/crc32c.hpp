// CRC32C (Castagnoli), the checksum of log entries. A remote write lands in no promised
// byte order, so a log entry is trusted only when its checksum matches, never because
// its last byte (the canary) arrived.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace mu::engine {

// Extends `crc` (start with 0) over `bytes`. Uses the SSE4.2 instruction when the CPU has
// it, a table otherwise; both give the same values.
std::uint32_t crc32c(std::span<const std::byte> bytes, std::uint32_t crc = 0);

// The portable implementation, exposed so tests can check the fast one against it.
std::uint32_t crc32c_portable(std::span<const std::byte> bytes, std::uint32_t crc = 0);

}  // namespace mu::engine
