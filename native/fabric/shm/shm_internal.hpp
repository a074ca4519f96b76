// The shm backend's objects. Private to native/fabric/shm.
//
// A node owns `<cluster dir>/node-<id>.control` (see shm_layout.hpp) and one file per
// registered region, `node-<id>.region-<slot>-<generation>`. A peer maps both; the
// initiator of an operation performs it itself, with a memcpy into or out of the mapped
// region, after checking the target's access word, connection generation and region
// table, all inside the announcement window described in shm_layout.hpp.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fabric/fabric.hpp"
#include "fabric/shm/liveness.hpp"
#include "fabric/shm/mapped_file.hpp"
#include "fabric/shm/shm_layout.hpp"

namespace mu::fabric::shm {

inline constexpr std::size_t shm_max_inline_bytes = 256;

// A peer's control file as mapped here: one incarnation of that peer.
struct PeerControl {
  NodeId node_id = 0;
  MappedFile file;
  ControlBlock* control = nullptr;
  ProcessExitWatch process;
  std::uint64_t incarnation() const { return control->incarnation; }
  // One load: the process is running (used on the data path).
  bool alive() const { return is_alive(&control->liveness); }
  // No thread of the process can run again (a syscall; used only while a revoke waits).
  bool exited() const { return !alive() && process.exited(); }
};

// Everything one shm Fabric owns; shared by its children so that it outlives them.
class NodeContext {
 public:
  explicit NodeContext(const FabricConfig& config);
  ~NodeContext();
  NodeContext(const NodeContext&) = delete;
  NodeContext& operator=(const NodeContext&) = delete;

  const FabricConfig& config() const { return config_; }
  ControlBlock& control() { return *control_; }
  std::uint64_t incarnation() const { return control_->incarnation; }
  std::string control_path(NodeId node_id) const;
  std::string region_path(NodeId node_id, std::uint32_t slot, std::uint32_t generation) const;

  // The current incarnation of a peer's control file (this node's own included).
  // Throws FabricError when the peer has no initialized control file.
  std::shared_ptr<PeerControl> peer(NodeId node_id);

  std::uint32_t allocate_connection_slot();
  void free_connection_slot(std::uint32_t slot);
  std::uint32_t allocate_region_slot();
  void free_region_slot(std::uint32_t slot);

  // Per connection slot: bumped at every reset so completions from an earlier life of
  // the slot no longer count toward its outstanding operations.
  struct CompletionAccounting {
    std::atomic<std::uint32_t> epoch{0};
    std::atomic<std::uint64_t> completed_sequence{0};
  };
  CompletionAccounting& accounting(std::uint32_t slot) { return accounting_[slot]; }

 private:
  void remove_stale_files_or_throw();

  FabricConfig config_;
  std::string directory_;
  MappedFile control_file_;
  ControlBlock* control_ = nullptr;
  std::unique_ptr<LivenessHolder> liveness_;
  std::mutex mutex_;  // guards slot allocation and the peer map
  std::array<bool, max_connections_per_node> connection_slot_used_{};
  std::array<bool, max_regions_per_node> region_slot_used_{};
  std::map<NodeId, std::shared_ptr<PeerControl>> peers_;
  std::array<CompletionAccounting, max_connections_per_node> accounting_{};
};

class ShmLocalRegion final : public LocalRegion {
 public:
  ShmLocalRegion(std::shared_ptr<NodeContext> node, std::size_t size_bytes);
  ~ShmLocalRegion() override;
  std::byte* data() override { return file_.data(); }
  std::size_t size_bytes() const override { return size_bytes_; }
  RegionDescriptor descriptor() const override;

 private:
  std::shared_ptr<NodeContext> node_;
  std::uint32_t slot_;
  std::uint32_t generation_;
  std::size_t size_bytes_;
  std::string path_;
  MappedFile file_;
};

class ShmRemoteRegion final : public RemoteRegion {
 public:
  ShmRemoteRegion(std::shared_ptr<NodeContext> node, const RegionDescriptor& descriptor, MappedFile::Populate populate);
  const RegionDescriptor& descriptor() const override { return descriptor_; }

  // Data-path view, used by ShmConnection.
  const PeerControl& owner() const { return *owner_; }
  std::uint32_t slot() const { return region_key_slot(descriptor_.key); }
  std::uint32_t generation() const { return region_key_generation(descriptor_.key); }
  std::byte* memory() const { return file_.data(); }
  std::size_t mapped_bytes() const { return file_.size_bytes(); }

 private:
  std::shared_ptr<NodeContext> node_;
  RegionDescriptor descriptor_;
  std::shared_ptr<PeerControl> owner_;
  MappedFile file_;
};

class ShmCompletionQueue final : public CompletionQueue {
 public:
  ShmCompletionQueue(std::shared_ptr<NodeContext> node, std::uint32_t depth);
  std::size_t poll(std::span<Completion> out) override;

  // Called by connections posting to this queue (same thread as poll, by the contract).
  bool full() const { return tail_ - head_ == entries_.size(); }
  void push(const Completion& completion, std::uint32_t epoch, std::uint64_t sequence);

 private:
  struct Entry {
    Completion completion;
    std::uint32_t epoch;
    std::uint64_t sequence;
  };
  std::shared_ptr<NodeContext> node_;
  std::vector<Entry> entries_;
  std::uint64_t head_ = 0;  // next to poll
  std::uint64_t tail_ = 0;  // next to fill
};

class ShmConnection final : public Connection {
 public:
  ShmConnection(std::shared_ptr<NodeContext> node, std::shared_ptr<ShmCompletionQueue> queue);
  ~ShmConnection() override;

  std::uint32_t id() const override { return slot_; }
  EndpointInfo local_endpoint() const override;
  void connect(const EndpointInfo& remote, AccessFlags access) override;
  const EndpointInfo& remote_endpoint() const override { return remote_; }
  ConnectionState state() const override;
  void reset() override;
  PostStatus post_write(const WriteRequest& request) override;
  PostStatus post_read(const ReadRequest& request) override;
  AccessFlags access() const override;
  ChangeStatus change_access(AccessFlags access, AccessPath path) override;
  bool access_change_settled() override;
  std::uint32_t max_outstanding_operations() const override { return max_outstanding_; }

 private:
  struct Operation {
    Opcode opcode;
    std::uint64_t work_id;
    const RemoteRegion* remote;
    std::uint64_t remote_offset;
    std::byte* local;  // destination of a read
    const std::byte* source;  // source of a write
    std::uint32_t length;
    bool signaled;
  };
  PostStatus post(const Operation& operation);
  CompletionStatus perform(const Operation& operation);
  CompletionStatus check_target(const ShmRemoteRegion& region, std::uint64_t offset,
                                std::uint32_t length, AccessFlags needed) const;
  void enter_error(bool target_refused);
  // Operations that some peer may have in flight into this node, which an access change
  // or reset must see end before it is settled (see shm_connection.cpp).
  struct Drain {
    std::shared_ptr<PeerControl> peer;
    std::uint32_t peer_slot;
    std::uint64_t sequence_seen;  // odd operation_sequence observed in flight, 0 = none yet
  };
  void add_drain();
  bool drained(Drain& drain) const;

  std::shared_ptr<NodeContext> node_;
  std::shared_ptr<ShmCompletionQueue> queue_;  // kept alive by every connection posting to it
  std::uint32_t slot_;
  ConnectionSlot& own_;  // this end, in our own control file
  std::uint32_t max_outstanding_;
  std::uint64_t posted_sequence_ = 0;
  EndpointInfo remote_{};
  std::shared_ptr<PeerControl> peer_;   // the peer's incarnation we are connected to
  ConnectionSlot* target_ = nullptr;    // the peer's end, in its control file
  std::uint32_t target_generation_ = 0;
  bool target_generation_bound_ = false;
  std::vector<Drain> drains_;
};

class ShmFabric final : public Fabric {
 public:
  explicit ShmFabric(const FabricConfig& config);
  Backend backend() const override { return Backend::shm; }
  NodeId node_id() const override { return node_->config().node_id; }
  std::size_t max_inline_bytes() const override { return shm_max_inline_bytes; }
  std::unique_ptr<LocalRegion> register_region(std::size_t size_bytes) override;
  std::shared_ptr<CompletionQueue> create_completion_queue(std::uint32_t depth) override;
  std::unique_ptr<Connection> create_connection(std::shared_ptr<CompletionQueue> queue) override;
  std::unique_ptr<RemoteRegion> attach_remote_region(const RegionDescriptor& region, AttachTiming timing) override;

 private:
  std::shared_ptr<NodeContext> node_;
};

}  // namespace mu::fabric::shm
