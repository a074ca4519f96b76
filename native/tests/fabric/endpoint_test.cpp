// The plain data the control plane carries between replicas round-trips exactly and
// refuses malformed bytes.
#include <gtest/gtest.h>

#include "fabric/endpoint.hpp"
#include "fabric/fabric.hpp"

namespace mu::fabric {
namespace {

TEST(EndpointEncoding, EndpointRoundTrips) {
  EndpointInfo endpoint{.node_id = 7, .queue_number = 0x12345, .packet_sequence = 0xabcdef, .process_id = 4242,
                        .gid = {}};
  for (std::uint8_t i = 0; i < 16; ++i) endpoint.gid[i] = static_cast<std::uint8_t>(0xf0 + i);
  const auto bytes = endpoint.encode();
  EXPECT_EQ(EndpointInfo::decode(bytes), endpoint);
}

TEST(EndpointEncoding, RegionDescriptorRoundTrips) {
  const RegionDescriptor region{.node_id = 3, .key = 0xdeadbeef, .address = 0x7fff'0000'1000, .length_bytes = 1 << 20};
  EXPECT_EQ(RegionDescriptor::decode(region.encode()), region);
}

TEST(EndpointEncoding, WrongLengthIsRefused) {
  const auto bytes = EndpointInfo{}.encode();
  EXPECT_THROW(EndpointInfo::decode(std::span(bytes).first(31)), FabricError);
  EXPECT_THROW(RegionDescriptor::decode(std::span(bytes).first(23)), FabricError);
}

TEST(EndpointEncoding, OutOfRangeNodeIsRefused) {
  auto bytes = RegionDescriptor{.node_id = max_node_count, .key = 1, .address = 0, .length_bytes = 8}.encode();
  EXPECT_THROW(RegionDescriptor::decode(bytes), FabricError);
  bytes[2] = std::byte{1};  // the reserved field
  bytes[0] = std::byte{1};
  EXPECT_THROW(RegionDescriptor::decode(bytes), FabricError);
}

TEST(FabricFactory, UnknownBackendAndBadConfigAreClearErrors) {
  EXPECT_THROW(parse_backend("tcp"), FabricError);
  FabricConfig config;
  config.node_id = max_node_count;
  EXPECT_THROW(create_fabric(config), FabricError);
  config.node_id = 0;
  config.cluster_name = "../escape";
  EXPECT_THROW(create_fabric(config), FabricError);
}

}  // namespace
}  // namespace mu::fabric
