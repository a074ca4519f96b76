// Backend `shm`: replicas as processes on one host, regions as shared-memory files.
#pragma once

#include <memory>

#include "fabric/fabric.hpp"

namespace mu::fabric::shm {

std::shared_ptr<Fabric> create_shm_fabric(const FabricConfig& config);

}  // namespace mu::fabric::shm
