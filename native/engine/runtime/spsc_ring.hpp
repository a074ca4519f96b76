// A bounded single-producer, single-consumer ring of variable-length records: how another
// thread (the Node addon's, later) hands commands to an agent without locks. The producer
// and the consumer each own one index, on cache lines of their own (Aeron's single-writer
// principle); a record is published by the release store of the producer's index.
//
// Layout: each record is a 4-byte length and its bytes, padded to 8; a record never wraps
// (a padding record with length `padding_marker` fills the end of the buffer instead).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

namespace mu::engine {

class SpscRing {
 public:
  // `capacity_bytes` is rounded up to a power of two (at least 64).
  explicit SpscRing(std::size_t capacity_bytes);
  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  // Producer side. False when the record does not fit now (the ring is full: backpressure)
  // or ever (longer than half the ring).
  bool try_push(std::span<const std::byte> record);
  // One record made of two parts (a header and a payload), without joining them first.
  bool try_push(std::span<const std::byte> first, std::span<const std::byte> second);
  // Whether a record of `record_bytes` would be taken now. Producer side: since only the
  // consumer frees space, a true answer holds until the producer pushes.
  bool can_push(std::size_t record_bytes);
  // The largest record this ring can ever take.
  std::size_t max_record_bytes() const { return capacity_ / 2 - header_bytes; }

  // Consumer side: hands each available record to `visit`, up to `max_records`, and
  // returns how many. A record's bytes are valid only during the call.
  std::size_t drain(const std::function<void(std::span<const std::byte>)>& visit, std::size_t max_records);
  // Consumer side: whether a record is waiting (a cheap check to spin on).
  bool has_records() const {
    return head_.load(std::memory_order_relaxed) != tail_.load(std::memory_order_acquire);
  }

 private:
  static constexpr std::size_t header_bytes = 8;
  static constexpr std::uint32_t padding_marker = 0xffff'ffff;
  static std::size_t round_up(std::size_t bytes) { return (bytes + 7) & ~std::size_t{7}; }

  struct Reservation {
    std::uint64_t tail;
    std::size_t place;
    std::size_t padding;
    std::size_t needed;
  };
  std::optional<Reservation> reserve(std::size_t record_bytes);

  std::size_t capacity_;
  std::vector<std::byte> buffer_;
  alignas(64) std::atomic<std::uint64_t> head_{0};  // written by the consumer
  alignas(64) std::atomic<std::uint64_t> tail_{0};  // written by the producer
  alignas(64) std::uint64_t cached_head_ = 0;       // the producer's last look at head_
};

}  // namespace mu::engine
