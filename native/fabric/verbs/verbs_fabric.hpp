// Backend `verbs`: libibverbs (rdma-core) RC queue pairs on an RDMA NIC or Soft-RoCE.
#pragma once

#include <memory>

#include "fabric/fabric.hpp"

namespace mu::fabric::verbs {

std::shared_ptr<Fabric> create_verbs_fabric(const FabricConfig& config);

}  // namespace mu::fabric::verbs
