// NodeContext: this node's control file, its liveness word, slot allocation and the map
// of peers' control files.
#include <dirent.h>
#include <sys/random.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>

#include "fabric/shm/shm_internal.hpp"

namespace mu::fabric::shm {
namespace {

std::uint64_t load_magic(const ControlBlock& control) {
  return __atomic_load_n(&control.magic, __ATOMIC_ACQUIRE);
}

std::uint64_t random_incarnation() {
  std::uint64_t value = 0;
  while (value == 0) {  // 0 means "no peer" in a connection slot
    if (::getrandom(&value, sizeof value, 0) != static_cast<ssize_t>(sizeof value)) {
      throw FabricError(std::string("shm: getrandom failed: ") + std::strerror(errno));
    }
  }
  return value;
}

}  // namespace

NodeContext::NodeContext(const FabricConfig& config)
    : config_(config), directory_(prepare_cluster_directory(config.shm_root, config.cluster_name)) {
  remove_stale_files_or_throw();
  control_file_ = MappedFile::create(control_path(config.node_id), sizeof(ControlBlock));
  control_ = reinterpret_cast<ControlBlock*>(control_file_.data());
  control_->version = control_version;
  control_->node_id = config.node_id;
  control_->process_id = static_cast<std::uint32_t>(::getpid());
  control_->incarnation = random_incarnation();
  liveness_ = std::make_unique<LivenessHolder>(&control_->liveness);
  // Published last: a peer that sees the magic sees an initialized block.
  __atomic_store_n(&control_->magic, control_magic, __ATOMIC_RELEASE);
}

NodeContext::~NodeContext() {
  // Children keep this context alive, so every region and connection is gone by now.
  ::unlink(control_path(config_.node_id).c_str());
  liveness_.reset();
  // The last node of a cluster to leave removes the directory; rmdir fails harmlessly
  // while other nodes' files remain.
  ::rmdir(directory_.c_str());
}

std::string NodeContext::control_path(NodeId node_id) const {
  return directory_ + "/node-" + std::to_string(node_id) + ".control";
}

std::string NodeContext::region_path(NodeId node_id, std::uint32_t slot, std::uint32_t generation) const {
  return directory_ + "/node-" + std::to_string(node_id) + ".region-" + std::to_string(slot) + "-" +
         std::to_string(generation);
}

// A restarted node replaces its previous incarnation's files, but never a live one's:
// two processes claiming one node id is a configuration error that must be loud.
void NodeContext::remove_stale_files_or_throw() {
  const std::string control = control_path(config_.node_id);
  if (::access(control.c_str(), F_OK) == 0) {
    try {
      MappedFile existing = MappedFile::open(control, sizeof(ControlBlock), MappedFile::Populate::all_pages);
      const auto* block = reinterpret_cast<const ControlBlock*>(existing.data());
      if (load_magic(*block) == control_magic && is_alive(&block->liveness)) {
        throw FabricError("shm: node " + std::to_string(config_.node_id) + " of cluster '" +
                          config_.cluster_name + "' is already running (pid " +
                          std::to_string(block->process_id) + ")");
      }
    } catch (const FabricError& error) {
      if (std::strstr(error.what(), "already running") != nullptr) throw;
      // Unreadable or foreign leftovers are removed below like any stale file.
    }
  }
  const std::string prefix = "node-" + std::to_string(config_.node_id) + ".";
  DIR* directory = ::opendir(directory_.c_str());
  if (directory == nullptr) throw FabricError("shm: cannot list " + directory_ + ": " + std::strerror(errno));
  while (const dirent* entry = ::readdir(directory)) {
    if (std::strncmp(entry->d_name, prefix.c_str(), prefix.size()) == 0) {
      ::unlinkat(::dirfd(directory), entry->d_name, 0);
    }
  }
  ::closedir(directory);
}

std::shared_ptr<PeerControl> NodeContext::peer(NodeId node_id) {
  if (node_id >= max_node_count) throw FabricError("shm: peer node id out of range");
  std::lock_guard guard(mutex_);
  auto mapped = std::make_shared<PeerControl>();
  mapped->node_id = node_id;
  mapped->file = MappedFile::open(control_path(node_id), sizeof(ControlBlock), MappedFile::Populate::all_pages);
  auto& cached = peers_[node_id];
  if (cached && cached->file.inode() == mapped->file.inode() && cached->file.device() == mapped->file.device()) {
    return cached;  // same incarnation: share one mapping
  }
  mapped->control = reinterpret_cast<ControlBlock*>(mapped->file.data());
  if (load_magic(*mapped->control) != control_magic || mapped->control->version != control_version ||
      mapped->control->node_id != node_id) {
    throw FabricError("shm: node " + std::to_string(node_id) + " has no initialized control file yet");
  }
  mapped->process = ProcessExitWatch(mapped->control->process_id, &mapped->control->liveness);
  cached = mapped;
  return mapped;
}

namespace {

template <std::size_t N>
std::uint32_t take_free_slot(std::array<bool, N>& used, const char* what) {
  for (std::uint32_t slot = 0; slot < N; ++slot) {
    if (!used[slot]) {
      used[slot] = true;
      return slot;
    }
  }
  throw FabricError("shm: all " + std::to_string(N) + " " + what + " slots are in use");
}

}  // namespace

std::uint32_t NodeContext::allocate_connection_slot() {
  std::lock_guard guard(mutex_);
  return take_free_slot(connection_slot_used_, "connection");
}

void NodeContext::free_connection_slot(std::uint32_t slot) {
  std::lock_guard guard(mutex_);
  assert(connection_slot_used_[slot]);
  connection_slot_used_[slot] = false;
}

std::uint32_t NodeContext::allocate_region_slot() {
  std::lock_guard guard(mutex_);
  return take_free_slot(region_slot_used_, "region");
}

void NodeContext::free_region_slot(std::uint32_t slot) {
  std::lock_guard guard(mutex_);
  assert(region_slot_used_[slot]);
  region_slot_used_[slot] = false;
}

}  // namespace mu::fabric::shm
