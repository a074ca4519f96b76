#include "fabric/endpoint.hpp"

#include <cstring>

#include "fabric/fabric.hpp"

namespace mu::fabric {
namespace {

// Little-endian field writer/reader over a fixed buffer; the encodings are small and
// fixed, so a cursor is clearer than a serialization library.
class Writer {
 public:
  explicit Writer(std::span<std::byte> out) : out_(out) {}
  template <typename T>
  void put(T value) {
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      out_[at_++] = static_cast<std::byte>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff);
    }
  }
  void put_bytes(std::span<const std::uint8_t> bytes) {
    std::memcpy(out_.data() + at_, bytes.data(), bytes.size());
    at_ += bytes.size();
  }

 private:
  std::span<std::byte> out_;
  std::size_t at_ = 0;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  template <typename T>
  T get() {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      value |= static_cast<std::uint64_t>(in_[at_++]) << (8 * i);
    }
    return static_cast<T>(value);
  }
  void get_bytes(std::span<std::uint8_t> bytes) {
    std::memcpy(bytes.data(), in_.data() + at_, bytes.size());
    at_ += bytes.size();
  }

 private:
  std::span<const std::byte> in_;
  std::size_t at_ = 0;
};

void check_length(std::span<const std::byte> bytes, std::size_t expected, const char* what) {
  if (bytes.size() != expected) {
    throw FabricError(std::string(what) + ": expected " + std::to_string(expected) +
                      " bytes, got " + std::to_string(bytes.size()));
  }
}

void check_node(NodeId node_id, const char* what) {
  if (node_id >= max_node_count) {
    throw FabricError(std::string(what) + ": node id " + std::to_string(node_id) +
                      " is out of range (max " + std::to_string(max_node_count - 1) + ")");
  }
}

}  // namespace

std::array<std::byte, EndpointInfo::encoded_bytes> EndpointInfo::encode() const {
  std::array<std::byte, encoded_bytes> out{};
  Writer writer(out);
  writer.put<std::uint16_t>(node_id);
  writer.put<std::uint16_t>(0);  // reserved
  writer.put<std::uint32_t>(queue_number);
  writer.put<std::uint32_t>(packet_sequence);
  writer.put<std::uint32_t>(process_id);
  writer.put_bytes(gid);
  return out;
}

EndpointInfo EndpointInfo::decode(std::span<const std::byte> bytes) {
  check_length(bytes, encoded_bytes, "endpoint");
  Reader reader(bytes);
  EndpointInfo endpoint;
  endpoint.node_id = reader.get<std::uint16_t>();
  if (reader.get<std::uint16_t>() != 0) throw FabricError("endpoint: reserved field is not zero");
  endpoint.queue_number = reader.get<std::uint32_t>();
  endpoint.packet_sequence = reader.get<std::uint32_t>();
  endpoint.process_id = reader.get<std::uint32_t>();
  reader.get_bytes(endpoint.gid);
  check_node(endpoint.node_id, "endpoint");
  return endpoint;
}

std::array<std::byte, RegionDescriptor::encoded_bytes> RegionDescriptor::encode() const {
  std::array<std::byte, encoded_bytes> out{};
  Writer writer(out);
  writer.put<std::uint16_t>(node_id);
  writer.put<std::uint16_t>(0);  // reserved
  writer.put<std::uint32_t>(key);
  writer.put<std::uint64_t>(address);
  writer.put<std::uint64_t>(length_bytes);
  return out;
}

RegionDescriptor RegionDescriptor::decode(std::span<const std::byte> bytes) {
  check_length(bytes, encoded_bytes, "region descriptor");
  Reader reader(bytes);
  RegionDescriptor region;
  region.node_id = reader.get<std::uint16_t>();
  if (reader.get<std::uint16_t>() != 0) throw FabricError("region descriptor: reserved field is not zero");
  region.key = reader.get<std::uint32_t>();
  region.address = reader.get<std::uint64_t>();
  region.length_bytes = reader.get<std::uint64_t>();
  check_node(region.node_id, "region descriptor");
  return region;
}

}  // namespace mu::fabric
