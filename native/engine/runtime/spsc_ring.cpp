#include "engine/runtime/spsc_ring.hpp"

#include <bit>
#include <cassert>

namespace mu::engine {

SpscRing::SpscRing(std::size_t capacity_bytes)
    : capacity_(std::bit_ceil(std::max<std::size_t>(capacity_bytes, 64))), buffer_(capacity_) {}

std::optional<SpscRing::Reservation> SpscRing::reserve(std::size_t record_bytes) {
  if (record_bytes > max_record_bytes()) return std::nullopt;
  const std::size_t needed = header_bytes + round_up(record_bytes);
  const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
  const std::size_t place = tail & (capacity_ - 1);
  const std::size_t to_end = capacity_ - place;
  // A record that would cross the end goes to the start, after a padding record.
  const std::size_t padding = needed > to_end ? to_end : 0;
  if (tail + padding + needed - cached_head_ > capacity_) {
    cached_head_ = head_.load(std::memory_order_acquire);
    if (tail + padding + needed - cached_head_ > capacity_) return std::nullopt;
  }
  return Reservation{tail, place, padding, needed};
}

bool SpscRing::can_push(std::size_t record_bytes) { return reserve(record_bytes).has_value(); }

bool SpscRing::try_push(std::span<const std::byte> record) { return try_push(record, {}); }

bool SpscRing::try_push(std::span<const std::byte> first, std::span<const std::byte> second) {
  const std::size_t record_bytes = first.size() + second.size();
  const auto reservation = reserve(record_bytes);
  if (!reservation) return false;
  std::size_t place = reservation->place;
  if (reservation->padding != 0) {
    const std::uint32_t marker = padding_marker;
    std::memcpy(buffer_.data() + place, &marker, sizeof marker);
    place = 0;
  }
  const auto length = static_cast<std::uint32_t>(record_bytes);
  std::memcpy(buffer_.data() + place, &length, sizeof length);
  if (!first.empty()) std::memcpy(buffer_.data() + place + header_bytes, first.data(), first.size());
  if (!second.empty()) std::memcpy(buffer_.data() + place + header_bytes + first.size(), second.data(), second.size());
  // Publishes the bytes above.
  tail_.store(reservation->tail + reservation->padding + reservation->needed, std::memory_order_release);
  return true;
}

std::size_t SpscRing::drain(const std::function<void(std::span<const std::byte>)>& visit, std::size_t max_records) {
  std::uint64_t head = head_.load(std::memory_order_relaxed);
  const std::uint64_t tail = tail_.load(std::memory_order_acquire);
  std::size_t records = 0;
  while (head != tail && records < max_records) {
    const std::size_t place = head & (capacity_ - 1);
    std::uint32_t length = 0;
    std::memcpy(&length, buffer_.data() + place, sizeof length);
    if (length == padding_marker) {
      head += capacity_ - place;
      continue;
    }
    assert(header_bytes + length <= capacity_ - place);
    visit(std::span<const std::byte>(buffer_.data() + place + header_bytes, length));
    head += header_bytes + round_up(length);
    ++records;
  }
  head_.store(head, std::memory_order_release);  // the space may be reused from now on
  return records;
}

}  // namespace mu::engine
