// ShmFabric and its passive objects: local regions, remote regions, completion queues.
#include "fabric/shm/shm_fabric.hpp"

#include <unistd.h>

#include <algorithm>
#include <cassert>

#include "fabric/shm/shm_internal.hpp"

namespace mu::fabric::shm {

std::shared_ptr<Fabric> create_shm_fabric(const FabricConfig& config) {
  return std::make_shared<ShmFabric>(config);
}

ShmFabric::ShmFabric(const FabricConfig& config) : node_(std::make_shared<NodeContext>(config)) {}

std::unique_ptr<LocalRegion> ShmFabric::register_region(std::size_t size_bytes) {
  return std::make_unique<ShmLocalRegion>(node_, size_bytes);
}

std::shared_ptr<CompletionQueue> ShmFabric::create_completion_queue(std::uint32_t depth) {
  return std::make_unique<ShmCompletionQueue>(node_, depth);
}

std::unique_ptr<Connection> ShmFabric::create_connection(std::shared_ptr<CompletionQueue> queue) {
  // Every queue this backend hands out is a ShmCompletionQueue; mixing backends is a bug.
  return std::make_unique<ShmConnection>(node_, std::static_pointer_cast<ShmCompletionQueue>(queue));
}

std::unique_ptr<RemoteRegion> ShmFabric::attach_remote_region(const RegionDescriptor& region, AttachTiming timing) {
  return std::make_unique<ShmRemoteRegion>(node_, region,
                                           timing == AttachTiming::at_startup ? MappedFile::Populate::all_pages
                                                                              : MappedFile::Populate::on_first_touch);
}

// --- local regions -----------------------------------------------------------------

ShmLocalRegion::ShmLocalRegion(std::shared_ptr<NodeContext> node, std::size_t size_bytes)
    : node_(std::move(node)), slot_(node_->allocate_region_slot()), generation_(0), size_bytes_(size_bytes) {
  if (size_bytes == 0) {
    node_->free_region_slot(slot_);
    throw FabricError("shm: cannot register an empty region");
  }
  RegionSlot& entry = node_->control().regions[slot_];
  generation_ = (entry.generation.load() + 1) & 0x00ff'ffffu;  // 24 bits fit in the key
  path_ = node_->region_path(node_->config().node_id, slot_, generation_);
  try {
    file_ = MappedFile::create(path_, size_bytes);
  } catch (...) {
    node_->free_region_slot(slot_);
    throw;
  }
  entry.size_bytes.store(size_bytes);
  entry.generation.store(generation_);
  entry.valid.store(1, std::memory_order_seq_cst);
}

ShmLocalRegion::~ShmLocalRegion() {
  // From now on every operation on this region is refused. One already past its check
  // lands in memory nobody reads again (the file is unlinked), as if it came first.
  node_->control().regions[slot_].valid.store(0, std::memory_order_seq_cst);
  ::unlink(path_.c_str());
  node_->free_region_slot(slot_);
}

RegionDescriptor ShmLocalRegion::descriptor() const {
  // The address field carries the owner's incarnation: offsets are region-relative on shm.
  return RegionDescriptor{node_->config().node_id, region_key(slot_, generation_), node_->incarnation(), size_bytes_};
}

// --- remote regions ----------------------------------------------------------------

ShmRemoteRegion::ShmRemoteRegion(std::shared_ptr<NodeContext> node, const RegionDescriptor& descriptor,
                                 MappedFile::Populate populate)
    : node_(std::move(node)), descriptor_(descriptor), owner_(node_->peer(descriptor.node_id)) {
  const std::uint32_t slot = region_key_slot(descriptor.key);
  const std::uint32_t generation = region_key_generation(descriptor.key);
  if (slot >= max_regions_per_node) throw FabricError("shm: region descriptor names a slot out of range");
  const RegionSlot& entry = owner_->control->regions[slot];
  if (descriptor.address != owner_->incarnation()) {
    throw FabricError("shm: region descriptor names an earlier incarnation of node " +
                      std::to_string(descriptor.node_id) + " (it restarted)");
  }
  if (entry.valid.load() != 1 || entry.generation.load() != generation ||
      entry.size_bytes.load() != descriptor.length_bytes) {
    throw FabricError("shm: node " + std::to_string(descriptor.node_id) + " has no region matching the descriptor");
  }
  file_ = MappedFile::open(node_->region_path(descriptor.node_id, slot, generation), descriptor.length_bytes, populate);
}

// --- completion queues -------------------------------------------------------------

ShmCompletionQueue::ShmCompletionQueue(std::shared_ptr<NodeContext> node, std::uint32_t depth)
    : node_(std::move(node)), entries_(depth) {
  if (depth == 0) throw FabricError("shm: completion queue depth must be positive");
}

void ShmCompletionQueue::push(const Completion& completion, std::uint32_t epoch, std::uint64_t sequence) {
  assert(!full());
  entries_[tail_ % entries_.size()] = Entry{completion, epoch, sequence};
  ++tail_;
}

std::size_t ShmCompletionQueue::poll(std::span<Completion> out) {
  std::size_t count = 0;
  while (count < out.size() && head_ != tail_) {
    const Entry& entry = entries_[head_ % entries_.size()];
    out[count++] = entry.completion;
    // A polled completion retires its operation and every earlier one on the connection
    // (the RC rule that lets unsignaled operations go without completions).
    auto& accounting = node_->accounting(entry.completion.connection_id);
    if (accounting.epoch.load(std::memory_order_relaxed) == entry.epoch) {
      accounting.completed_sequence.store(
          std::max(accounting.completed_sequence.load(std::memory_order_relaxed), entry.sequence),
          std::memory_order_relaxed);
    }
    ++head_;
  }
  return count;
}

}  // namespace mu::fabric::shm
