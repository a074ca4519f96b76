#include "fabric/fabric.hpp"

#include "fabric/shm/shm_fabric.hpp"
#if MU_HAVE_VERBS
#include "fabric/verbs/verbs_fabric.hpp"
#endif

namespace mu::fabric {

std::string_view backend_name(Backend backend) {
  switch (backend) {
    case Backend::shm: return "shm";
    case Backend::verbs: return "verbs";
    case Backend::sim: return "sim";
  }
  return "unknown";
}

Backend parse_backend(std::string_view name) {
  if (name == "shm") return Backend::shm;
  if (name == "verbs") return Backend::verbs;
  if (name == "sim") return Backend::sim;
  throw FabricError("unknown fabric backend '" + std::string(name) + "' (expected shm, verbs or sim)");
}

std::vector<Backend> compiled_backends() {
#if MU_HAVE_VERBS
  return {Backend::shm, Backend::verbs};
#else
  return {Backend::shm};
#endif
}

std::string_view completion_status_name(CompletionStatus status) {
  switch (status) {
    case CompletionStatus::success: return "success";
    case CompletionStatus::remote_access_error: return "remote_access_error";
    case CompletionStatus::remote_invalid_request: return "remote_invalid_request";
    case CompletionStatus::flushed: return "flushed";
    case CompletionStatus::peer_unreachable: return "peer_unreachable";
    case CompletionStatus::local_error: return "local_error";
  }
  return "unknown";
}

std::shared_ptr<Fabric> create_fabric(const FabricConfig& config) {
  if (config.node_id >= max_node_count) {
    throw FabricError("node id " + std::to_string(config.node_id) + " is out of range (max " +
                      std::to_string(max_node_count - 1) + ")");
  }
  if (config.max_outstanding_operations == 0 || config.max_outstanding_operations > 16384) {
    throw FabricError("max_outstanding_operations must be in 1..16384");
  }
  switch (config.backend) {
    case Backend::shm: return shm::create_shm_fabric(config);
    case Backend::verbs:
#if MU_HAVE_VERBS
      return verbs::create_verbs_fabric(config);
#else
      throw FabricError("fabric backend 'verbs' is not compiled in (libibverbs was not found at build time)");
#endif
    case Backend::sim:
      throw FabricError("fabric backend 'sim' nodes come from sim::SimNetwork::create_node()");
  }
  throw FabricError("unknown fabric backend");
}

}  // namespace mu::fabric
