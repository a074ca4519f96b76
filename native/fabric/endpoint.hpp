// Plain data that peers exchange through the control plane to reach each other: a
// connection's endpoint and a region's descriptor. Fixed-size little-endian encodings, so
// the TypeScript control plane can carry them as opaque bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace mu::fabric {

using NodeId = std::uint16_t;
inline constexpr NodeId max_node_count = 64;  // node ids are 0 .. max_node_count - 1

// One end of a connection.
//   verbs: queue_number is the QPN, packet_sequence the initial PSN, gid the port GID.
//   shm:   queue_number is the connection's slot in its node's control file,
//          process_id the owning process (diagnostics only; liveness is kernel-reported).
struct EndpointInfo {
  NodeId node_id = 0;
  std::uint32_t queue_number = 0;
  std::uint32_t packet_sequence = 0;
  std::uint32_t process_id = 0;
  std::array<std::uint8_t, 16> gid{};

  static constexpr std::size_t encoded_bytes = 32;
  std::array<std::byte, encoded_bytes> encode() const;
  // Throws FabricError when the bytes are not a valid endpoint.
  static EndpointInfo decode(std::span<const std::byte> bytes);
  bool operator==(const EndpointInfo&) const = default;
};

// A registered region as a peer addresses it.
//   verbs: key is the rkey, address the region's virtual address on its node.
//   shm:   key packs the region's slot and generation in its node's control file,
//          address is the owner's incarnation (offsets are relative to the region), so a
//          descriptor from before the owner restarted is refused at attach.
struct RegionDescriptor {
  NodeId node_id = 0;
  std::uint32_t key = 0;
  std::uint64_t address = 0;
  std::uint64_t length_bytes = 0;

  static constexpr std::size_t encoded_bytes = 24;
  std::array<std::byte, encoded_bytes> encode() const;
  static RegionDescriptor decode(std::span<const std::byte> bytes);
  bool operator==(const RegionDescriptor&) const = default;
};

}  // namespace mu::fabric
