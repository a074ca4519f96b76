// Backend `verbs`: the fabric contract (fabric.hpp) on libibverbs reliable-connection queue
// pairs, for RDMA NICs with RoCE and for Soft-RoCE (rxe).
//
// How the contract maps onto verbs
//   Fabric          -> DeviceCore: one ibv_context and one protection domain, chosen by device
//                      name, port and GID index. Every other object holds a shared_ptr to it,
//                      so the device outlives everything registered on it.
//   LocalRegion     -> mmap'ed (page-aligned, zeroed) memory plus one ibv_mr that allows
//                      LOCAL_WRITE | REMOTE_WRITE | REMOTE_READ. The memory region never
//                      restricts anything: what a peer may do is decided per connection by
//                      the queue pair's access flags, which is what change_access() edits.
//                      descriptor() = {node, rkey, virtual address, length}.
//   CompletionQueue -> CompletionQueueCore: one ibv_cq, plus the table that turns a verbs
//                      completion back into the caller's work id (see "Accounting").
//   Connection      -> one RC queue pair. The endpoint is {node, QPN, initial PSN, GID}.
//                      Peers are addressed by GID (RoCE: always a global route header),
//                      never by LID; an InfiniBand link layer is refused at creation.
//   RemoteRegion    -> the peer's descriptor, copied as it is. The bounds and the key are
//                      checked by the target's NIC, never here, so that an out-of-range
//                      access is refused by the target (an error completion), as on
//                      hardware.
//
// Accounting. Verbs reports an unsignaled work request only when it fails, and one
// completion retires every earlier request of the same send queue. So each connection
// numbers its posts (a 64-bit sequence) and sends wr_id = connection id | epoch | low 32
// bits of the sequence; the caller's work id waits in a per-connection ring (the
// SendLedger) indexed by sequence. When the completion of sequence s is polled, every
// post up to s is retired. The epoch changes on every reset, so completions that a
// reset queue pair left behind in the completion queue are recognised and dropped.
// Every outstanding operation can still produce one completion, so each completion
// queue counts them and refuses posts (queue_full) that could overflow it.
//
// reset() moves the queue pair to RESET. Devices do not report the work requests that a
// RESET discards (rxe drops them silently, libmlx5 even removes their completions from
// the queue), so the ledger itself emits a `flushed` completion for every operation still
// outstanding, as the contract asks.
//
// Access changes. The fast path is ibv_modify_qp(IBV_QP_ACCESS_FLAGS) on the live queue
// pair: the NIC checks every incoming request against the flags, so the change is in force
// when the call returns (settled at once; access_change_settled() is always true). When
// the device refuses that (some do in some states, and every device does in the error
// state) the robust path runs instead: RESET -> INIT -> RTR -> RTS towards the remembered
// peer with the new flags. The queue pair keeps its QPN, so the peer's copy of this
// endpoint stays valid; from a healthy connection it also keeps both PSNs, so the peer
// does not notice the cycle; from the error state it is one half of a paired reset (see
// change_access_robust).
//
// Choices the contract leaves open:
//   - Zero-length operations are refused (invalid_request): NICs check neither key nor
//     bounds for them, so they prove nothing about access.
//   - A write with an inline payload sends exactly that payload; `length` and
//     `local_region` are then ignored.
//   - change_access() on a connection that is not connected only records the flags (the
//     next connect() sets its own) and reports settled: nobody can reach that end.
//   - connect() on a connection that is connected (or in the error state) throws: reset()
//     it first.
#include "fabric/verbs/verbs_fabric.hpp"

#include <infiniband/verbs.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace mu::fabric::verbs {
namespace {

// Queue-pair timing. The local ACK timeout is 4.096 us * 2^ack_timeout_exponent; with 12
// that is ~17 ms per attempt, and the requester gives up after 1 + transport_retry_count
// attempts, so a dead peer is reported (peer_unreachable) after ~0.12 s on a NIC: fast
// enough for Mu to move on, while seven ~17 ms silences in a row do not happen on a
// healthy fabric. Measured on rxe in the TCG guest: 0.14 s typically, up to ~1 s (rxe's
// timers run late there; exponent 14 took up to 3.5 s). transport_retry_count must stay
// below 7: rxe treats 7 as "retry forever" (rxe_comp.c), so a dead peer would never be
// reported there.
constexpr std::uint8_t ack_timeout_exponent = 12;
constexpr std::uint8_t transport_retry_count = 6;
// Receiver-not-ready only concerns SEND, which this fabric never uses; the values are the
// conventional ones (0.64 ms, retry without limit) and never come into play.
constexpr std::uint8_t min_rnr_timer_code = 12;
constexpr std::uint8_t rnr_retry_count = 7;
// RDMA READs in flight per queue pair, capped by what the device supports.
constexpr int max_reads_in_flight = 16;
// RoCE v2 packets are IP packets: a hop limit of 64 lets them cross routed fabrics.
constexpr std::uint8_t route_hop_limit = 64;
// Inline sizes to ask for, largest first; the first one the device accepts is the fabric's
// max_inline_bytes().
constexpr std::array<std::uint32_t, 5> inline_sizes_to_try_bytes = {256, 128, 64, 32, 0};

// wr_id layout: [connection id : 20][epoch : 12][sequence, low 32 bits : 32].
constexpr unsigned connection_id_bits = 20;
constexpr unsigned epoch_bits = 12;
constexpr std::uint32_t max_connection_id = (1u << connection_id_bits) - 1;
constexpr std::uint32_t epoch_mask = (1u << epoch_bits) - 1;
constexpr std::uint32_t psn_mask = 0xffffff;  // PSNs are 24 bits

std::uint64_t make_wr_id(std::uint32_t connection_id, std::uint32_t epoch, std::uint64_t sequence) {
  return (static_cast<std::uint64_t>(connection_id) << (32 + epoch_bits)) |
         (static_cast<std::uint64_t>(epoch & epoch_mask) << 32) | (sequence & 0xffffffffu);
}
std::uint32_t wr_connection_id(std::uint64_t wr_id) {
  return static_cast<std::uint32_t>(wr_id >> (32 + epoch_bits));
}
std::uint32_t wr_epoch(std::uint64_t wr_id) {
  return static_cast<std::uint32_t>(wr_id >> 32) & epoch_mask;
}
std::uint32_t wr_sequence_low(std::uint64_t wr_id) {
  return static_cast<std::uint32_t>(wr_id & 0xffffffffu);
}

std::string errno_text(int error_number) {
  return std::string(std::strerror(error_number)) + " (errno " + std::to_string(error_number) + ")";
}

CompletionStatus map_status(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_SUCCESS: return CompletionStatus::success;
    case IBV_WC_REM_ACCESS_ERR: return CompletionStatus::remote_access_error;
    case IBV_WC_REM_INV_REQ_ERR: return CompletionStatus::remote_invalid_request;
    case IBV_WC_WR_FLUSH_ERR: return CompletionStatus::flushed;
    case IBV_WC_RETRY_EXC_ERR:
    case IBV_WC_RNR_RETRY_EXC_ERR: return CompletionStatus::peer_unreachable;
    default: return CompletionStatus::local_error;
  }
}

unsigned int to_verbs_access(AccessFlags access) {
  // LOCAL_WRITE is always needed: RDMA READ responses are written into local memory.
  unsigned int flags = IBV_ACCESS_LOCAL_WRITE;
  if (access & access_remote_write) flags |= IBV_ACCESS_REMOTE_WRITE;
  if (access & access_remote_read) flags |= IBV_ACCESS_REMOTE_READ;
  return flags;
}

// ---------------------------------------------------------------------------------------
// The device: context + protection domain, shared by every object of one Fabric.

struct DeviceCore {
  ibv_context* context = nullptr;
  ibv_pd* protection_domain = nullptr;
  std::string device_name;
  NodeId node_id = 0;
  std::uint8_t port = 1;
  std::uint8_t gid_index = 0;
  ibv_gid gid{};
  ibv_mtu active_mtu = IBV_MTU_1024;
  std::uint32_t max_outstanding_operations = 0;
  std::uint32_t max_inline_bytes = 0;
  std::uint8_t initiator_reads_in_flight = 1;  // max_rd_atomic
  std::uint8_t responder_reads_in_flight = 1;  // max_dest_rd_atomic
  int max_completion_queue_entries = 0;
  std::atomic<std::uint32_t> next_connection_id{0};

  DeviceCore() = default;
  DeviceCore(const DeviceCore&) = delete;
  DeviceCore& operator=(const DeviceCore&) = delete;
  ~DeviceCore() {
    if (protection_domain != nullptr) ibv_dealloc_pd(protection_domain);
    if (context != nullptr) ibv_close_device(context);
  }
};

// ---------------------------------------------------------------------------------------
// Regions.

class VerbsLocalRegion final : public LocalRegion {
 public:
  VerbsLocalRegion(std::shared_ptr<DeviceCore> device, std::size_t size_bytes)
      : device_(std::move(device)), size_bytes_(size_bytes) {
    const auto page_bytes = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    mapped_bytes_ = (size_bytes + page_bytes - 1) / page_bytes * page_bytes;
    // Anonymous mappings are page-aligned and zero-filled, as the contract asks.
    void* memory = mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
      throw FabricError("verbs: cannot allocate a region of " + std::to_string(size_bytes) +
                        " bytes: " + errno_text(errno));
    }
    memory_ = static_cast<std::byte*>(memory);
    // Only the requested length is registered, so the NIC refuses anything past it even
    // though the mapping is rounded up to whole pages.
    memory_region_ = ibv_reg_mr(device_->protection_domain, memory_, size_bytes,
                                IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
    if (memory_region_ == nullptr) {
      const int error_number = errno;
      munmap(memory_, mapped_bytes_);
      throw FabricError("verbs: ibv_reg_mr of " + std::to_string(size_bytes) +
                        " bytes failed: " + errno_text(error_number));
    }
  }
  VerbsLocalRegion(const VerbsLocalRegion&) = delete;
  VerbsLocalRegion& operator=(const VerbsLocalRegion&) = delete;
  ~VerbsLocalRegion() override {
    ibv_dereg_mr(memory_region_);
    munmap(memory_, mapped_bytes_);
  }

  std::byte* data() override { return memory_; }
  std::size_t size_bytes() const override { return size_bytes_; }
  RegionDescriptor descriptor() const override {
    return RegionDescriptor{device_->node_id, memory_region_->rkey,
                            reinterpret_cast<std::uint64_t>(memory_), size_bytes_};
  }

  const DeviceCore* device() const { return device_.get(); }
  std::uint32_t local_key() const { return memory_region_->lkey; }

 private:
  std::shared_ptr<DeviceCore> device_;
  std::size_t size_bytes_;
  std::size_t mapped_bytes_ = 0;
  std::byte* memory_ = nullptr;
  ibv_mr* memory_region_ = nullptr;
};

class VerbsRemoteRegion final : public RemoteRegion {
 public:
  VerbsRemoteRegion(std::shared_ptr<DeviceCore> device, const RegionDescriptor& descriptor)
      : device_(std::move(device)), descriptor_(descriptor) {}
  const RegionDescriptor& descriptor() const override { return descriptor_; }

 private:
  std::shared_ptr<DeviceCore> device_;
  RegionDescriptor descriptor_;
};

// ---------------------------------------------------------------------------------------
// Accounting shared by a connection (which posts) and its completion queue (which
// retires). They may be used from two threads, hence the mutex; it is uncontended in
// the common case of one thread doing both.

struct PostedOperation {
  std::uint64_t work_id = 0;
  Opcode opcode = Opcode::write;
};

struct SendLedger {
  SendLedger(std::uint32_t id, std::uint32_t capacity_operations)
      : connection_id(id), capacity(capacity_operations), ring(capacity_operations) {}

  std::mutex mutex;
  const std::uint32_t connection_id;
  const std::uint32_t capacity;
  std::uint32_t epoch = 0;           // bumped by every reset; only its low 12 bits travel
  std::uint64_t next_sequence = 0;   // the sequence the next post gets
  std::uint64_t retired_sequence = 0;  // every post below this one is done
  bool error_completion_seen = false;
  std::vector<PostedOperation> ring;  // indexed by sequence % capacity

  std::uint64_t outstanding() const { return next_sequence - retired_sequence; }
};

struct CompletionQueueCore {
  CompletionQueueCore(std::shared_ptr<DeviceCore> owner, ibv_cq* queue, std::uint32_t depth)
      : device(std::move(owner)), completion_queue(queue), depth_completions(depth) {}
  CompletionQueueCore(const CompletionQueueCore&) = delete;
  CompletionQueueCore& operator=(const CompletionQueueCore&) = delete;
  ~CompletionQueueCore() { ibv_destroy_cq(completion_queue); }

  // Claims room for one more completion; false when the queue could overflow.
  bool reserve() {
    std::uint32_t current = reserved_completions.load(std::memory_order_relaxed);
    do {
      if (current >= depth_completions) return false;
    } while (!reserved_completions.compare_exchange_weak(current, current + 1, std::memory_order_relaxed));
    return true;
  }
  void release(std::uint64_t count) {
    reserved_completions.fetch_sub(static_cast<std::uint32_t>(count), std::memory_order_relaxed);
  }
  // A reset or a destroyed queue pair leaves up to `count` completions of dropped
  // operations in the device queue (libmlx5 keeps those generated before the RESET; rxe
  // discards them). They occupy device entries until polled, so their reservations are
  // kept until a poll finds the device queue empty: after that none can remain, because a
  // queue pair in RESET (or destroyed) generates nothing more.
  void hold_for_leftovers(std::uint64_t count) {
    possible_leftovers.fetch_add(static_cast<std::uint32_t>(count), std::memory_order_relaxed);
  }
  void device_queue_seen_empty() {
    release(possible_leftovers.exchange(0, std::memory_order_relaxed));
  }

  void register_ledger(const std::shared_ptr<SendLedger>& ledger) {
    const std::lock_guard lock(ledgers_mutex);
    ledgers.emplace(ledger->connection_id, ledger);
  }
  void unregister_ledger(std::uint32_t connection_id) {
    const std::lock_guard lock(ledgers_mutex);
    ledgers.erase(connection_id);
  }

  // Completions made up by the fabric itself (operations dropped by a reset).
  void add_synthetic(std::vector<Completion>&& completions) {
    if (completions.empty()) return;
    const std::lock_guard lock(synthetic_mutex);
    synthetic.insert(synthetic.end(), completions.begin(), completions.end());
    has_synthetic.store(true, std::memory_order_release);
  }

  std::shared_ptr<DeviceCore> device;
  ibv_cq* completion_queue;
  const std::uint32_t depth_completions;
  std::atomic<std::uint32_t> reserved_completions{0};
  std::atomic<std::uint32_t> possible_leftovers{0};  // part of reserved_completions

  std::mutex ledgers_mutex;
  std::unordered_map<std::uint32_t, std::shared_ptr<SendLedger>> ledgers;

  std::mutex synthetic_mutex;
  std::deque<Completion> synthetic;
  std::atomic<bool> has_synthetic{false};
};

class VerbsCompletionQueue final : public CompletionQueue {
 public:
  explicit VerbsCompletionQueue(std::shared_ptr<CompletionQueueCore> core) : core_(std::move(core)) {}

  std::size_t poll(std::span<Completion> out) override {
    std::size_t produced = take_synthetic(out);
    std::array<ibv_wc, 16> batch{};
    while (produced < out.size()) {
      const int wanted = static_cast<int>(std::min(batch.size(), out.size() - produced));
      const int polled = ibv_poll_cq(core_->completion_queue, wanted, batch.data());
      if (polled <= 0) {  // empty (0) or a device error (< 0): nothing more to give
        if (polled == 0) core_->device_queue_seen_empty();
        break;
      }
      const std::lock_guard lock(core_->ledgers_mutex);
      for (int i = 0; i < polled; ++i) {
        if (translate(batch[static_cast<std::size_t>(i)], out[produced])) ++produced;
      }
      if (polled < wanted) {
        core_->device_queue_seen_empty();
        break;
      }
    }
    return produced;
  }

  const std::shared_ptr<CompletionQueueCore>& core() const { return core_; }

 private:
  std::size_t take_synthetic(std::span<Completion> out) {
    if (!core_->has_synthetic.load(std::memory_order_acquire)) return 0;
    const std::lock_guard lock(core_->synthetic_mutex);
    std::size_t produced = 0;
    while (produced < out.size() && !core_->synthetic.empty()) {
      out[produced++] = core_->synthetic.front();
      core_->synthetic.pop_front();
    }
    core_->has_synthetic.store(!core_->synthetic.empty(), std::memory_order_release);
    return produced;
  }

  // Retires the operations a verbs completion accounts for; true when it yields a
  // Completion for the caller. Called with ledgers_mutex held.
  bool translate(const ibv_wc& work_completion, Completion& out) {
    const auto found = core_->ledgers.find(wr_connection_id(work_completion.wr_id));
    if (found == core_->ledgers.end()) return false;  // the connection is gone
    SendLedger& ledger = *found->second;
    const std::lock_guard lock(ledger.mutex);
    if (wr_epoch(work_completion.wr_id) != (ledger.epoch & epoch_mask)) return false;  // before a reset
    const std::uint32_t distance = wr_sequence_low(work_completion.wr_id) -
                                   static_cast<std::uint32_t>(ledger.retired_sequence);
    const std::uint64_t sequence = ledger.retired_sequence + distance;
    if (sequence >= ledger.next_sequence) return false;  // not one of ours: ignore it
    const std::uint64_t retired_count = sequence + 1 - ledger.retired_sequence;
    ledger.retired_sequence = sequence + 1;
    core_->release(retired_count);
    const CompletionStatus status = map_status(work_completion.status);
    if (status != CompletionStatus::success) ledger.error_completion_seen = true;
    const PostedOperation& operation = ledger.ring[sequence % ledger.capacity];
    out = Completion{operation.work_id, ledger.connection_id, operation.opcode, status};
    return true;
  }

  std::shared_ptr<CompletionQueueCore> core_;
};

// ---------------------------------------------------------------------------------------
// Connections.

class VerbsConnection final : public Connection {
 public:
  VerbsConnection(std::shared_ptr<DeviceCore> device, std::shared_ptr<CompletionQueueCore> queue)
      : device_(std::move(device)), queue_(std::move(queue)) {
    id_ = device_->next_connection_id.fetch_add(1);
    if (id_ > max_connection_id) {
      throw FabricError("verbs: this fabric has created all " + std::to_string(max_connection_id + 1) +
                        " connections it can number");
    }
    ibv_qp_init_attr init{};
    init.send_cq = queue_->completion_queue;
    init.recv_cq = queue_->completion_queue;
    init.qp_type = IBV_QPT_RC;
    init.sq_sig_all = 0;  // each request says whether it is signaled
    init.cap.max_send_wr = device_->max_outstanding_operations;
    init.cap.max_recv_wr = 1;  // nothing is ever received; some devices want a non-empty queue
    init.cap.max_send_sge = 1;
    init.cap.max_recv_sge = 1;
    init.cap.max_inline_data = device_->max_inline_bytes;
    queue_pair_ = ibv_create_qp(device_->protection_domain, &init);
    if (queue_pair_ == nullptr) {
      throw FabricError("verbs: ibv_create_qp failed on " + device_->device_name + ": " + errno_text(errno));
    }
    try {
      std::random_device random;
      local_.node_id = device_->node_id;
      local_.queue_number = queue_pair_->qp_num;
      local_.packet_sequence = random() & psn_mask;
      local_.process_id = static_cast<std::uint32_t>(getpid());
      std::memcpy(local_.gid.data(), device_->gid.raw, local_.gid.size());

      ledger_ = std::make_shared<SendLedger>(id_, device_->max_outstanding_operations);
      queue_->register_ledger(ledger_);
    } catch (...) {
      ibv_destroy_qp(queue_pair_);  // no destructor runs for a half-built object
      throw;
    }
  }
  VerbsConnection(const VerbsConnection&) = delete;
  VerbsConnection& operator=(const VerbsConnection&) = delete;

  ~VerbsConnection() override {
    ibv_destroy_qp(queue_pair_);
    queue_->unregister_ledger(id_);
    const std::lock_guard lock(ledger_->mutex);
    queue_->hold_for_leftovers(ledger_->outstanding());
  }

  std::uint32_t id() const override { return id_; }
  EndpointInfo local_endpoint() const override { return local_; }
  const EndpointInfo& remote_endpoint() const override { return remote_; }
  AccessFlags access() const override { return access_; }
  std::uint32_t max_outstanding_operations() const override { return device_->max_outstanding_operations; }
  bool access_change_settled() override { return true; }  // verbs changes are synchronous

  void connect(const EndpointInfo& remote, AccessFlags access) override {
    if (tracked_state_ != ConnectionState::unconnected) {
      throw FabricError("verbs: connection " + std::to_string(id_) + " is already connected; reset() it first");
    }
    if (remote.node_id >= max_node_count) {
      throw FabricError("verbs: remote endpoint has node id " + std::to_string(remote.node_id) +
                        ", out of range");
    }
    const int error_number = bring_up(remote, access, local_.packet_sequence, remote.packet_sequence);
    if (error_number != 0) {
      move_to_reset();
      throw FabricError("verbs: connecting queue pair " + std::to_string(local_.queue_number) + " to node " +
                        std::to_string(remote.node_id) + " queue pair " + std::to_string(remote.queue_number) +
                        " failed: " + failed_transition_ + ": " + errno_text(error_number));
    }
    remote_ = remote;
    has_remote_ = true;
    access_ = access;
    tracked_state_ = ConnectionState::connected;
  }

  ConnectionState state() const override {
    if (tracked_state_ != ConnectionState::connected) return tracked_state_;
    {
      const std::lock_guard lock(ledger_->mutex);
      if (ledger_->error_completion_seen) return ConnectionState::error;
    }
    // The target's end goes to the error state without any completion of its own when it
    // refuses a peer's request; only the device knows that.
    ibv_qp_attr attributes{};
    ibv_qp_init_attr init{};
    if (ibv_query_qp(queue_pair_, &attributes, IBV_QP_STATE, &init) != 0) return ConnectionState::error;
    if (attributes.qp_state == IBV_QPS_ERR || attributes.qp_state == IBV_QPS_SQE) return ConnectionState::error;
    return ConnectionState::connected;
  }

  void reset() override {
    move_to_reset();
    tracked_state_ = ConnectionState::unconnected;
  }

  PostStatus post_write(const WriteRequest& request) override {
    ibv_sge scatter_gather{};
    ibv_send_wr work_request{};
    work_request.opcode = IBV_WR_RDMA_WRITE;
    if (!request.inline_payload.empty()) {
      // The payload is copied into the send queue by ibv_post_send itself.
      if (request.inline_payload.size() > device_->max_inline_bytes) return PostStatus::invalid_request;
      scatter_gather.addr = reinterpret_cast<std::uint64_t>(request.inline_payload.data());
      scatter_gather.length = static_cast<std::uint32_t>(request.inline_payload.size());
      work_request.send_flags = IBV_SEND_INLINE;
    } else if (!local_source(request.local_region, request.local_offset, request.length, scatter_gather)) {
      return PostStatus::invalid_request;
    }
    return post(work_request, scatter_gather, request.remote, request.remote_offset, request.work_id,
                Opcode::write, request.signaled);
  }

  PostStatus post_read(const ReadRequest& request) override {
    ibv_sge scatter_gather{};
    ibv_send_wr work_request{};
    work_request.opcode = IBV_WR_RDMA_READ;
    if (!local_source(request.local_region, request.local_offset, request.length, scatter_gather)) {
      return PostStatus::invalid_request;
    }
    return post(work_request, scatter_gather, request.remote, request.remote_offset, request.work_id,
                Opcode::read, request.signaled);
  }

  ChangeStatus change_access(AccessFlags access, AccessPath path) override {
    if (tracked_state_ == ConnectionState::unconnected) {
      // Nobody can reach this end yet; the flags apply when it is next connected.
      access_ = access;
      return ChangeStatus::settled;
    }
    if (path == AccessPath::fast) {
      ibv_qp_attr attributes{};
      attributes.qp_access_flags = to_verbs_access(access);
      if (ibv_modify_qp(queue_pair_, &attributes, IBV_QP_ACCESS_FLAGS) == 0) {
        access_ = access;
        return ChangeStatus::settled;
      }
      // Refused (e.g. the queue pair is in the error state): take the robust path.
    }
    return change_access_robust(access);
  }

 private:
  // RESET -> INIT -> RTR -> RTS towards the remembered peer with new flags.
  //
  // From a healthy connection the cycle is invisible to the peer: both packet sequence
  // numbers are read from the queue pair first and restored, so the peer's stream stays
  // in step, a request it retransmits after the RESET dropped it is judged by the new
  // flags, and a forbidden one fails with a remote error exactly as after the fast path.
  // Restarting from the initial PSNs instead would be dangerous: the peer's stream, having
  // moved on, looks *ahead* (NAKed until its retries run out) or, once it has sent 2^23
  // packets or more, *behind* - taken for retransmissions, acknowledged and never executed:
  // success at the peer with nothing written here (both seen on rxe, scripts/rdma-vm).
  //
  // From the error state there is no stream to keep: this end comes back from its initial
  // PSNs with the new flags, as one half of a paired reset; the peer's end (in the error
  // state too after a refused request) must reset() and connect() before posting again.
  ChangeStatus change_access_robust(AccessFlags access) {
    std::uint32_t send_psn = local_.packet_sequence;
    std::uint32_t receive_psn = remote_.packet_sequence;
    const bool healthy = state() == ConnectionState::connected;
    if (healthy) {
      ibv_qp_attr current{};
      ibv_qp_init_attr init{};
      if (ibv_query_qp(queue_pair_, &current, IBV_QP_SQ_PSN | IBV_QP_RQ_PSN, &init) != 0) {
        std::fprintf(stderr, "mu fabric verbs: cannot read the PSNs of connection %u for a robust access change\n",
                     id_);
        return ChangeStatus::failed;
      }
      send_psn = current.sq_psn & psn_mask;
      receive_psn = current.rq_psn & psn_mask;
    }
    move_to_reset();
    tracked_state_ = ConnectionState::unconnected;
    access_ = access;  // a RESET queue pair already refuses everything: revocation holds
    if (!has_remote_) return ChangeStatus::failed;
    const int error_number = bring_up(remote_, access, send_psn, receive_psn);
    if (error_number != 0) {
      std::fprintf(stderr, "mu fabric verbs: robust access change on connection %u failed at %s: %s\n", id_,
                   failed_transition_.c_str(), errno_text(error_number).c_str());
      move_to_reset();
      return ChangeStatus::failed;
    }
    tracked_state_ = ConnectionState::connected;
    return ChangeStatus::settled;
  }

  // Returns 0 or the errno of the transition that failed (named in failed_transition_).
  int bring_up(const EndpointInfo& remote, AccessFlags access, std::uint32_t send_psn, std::uint32_t receive_psn) {
    ibv_qp_attr init{};
    init.qp_state = IBV_QPS_INIT;
    init.pkey_index = 0;
    init.port_num = device_->port;
    init.qp_access_flags = to_verbs_access(access);
    if (const int error = ibv_modify_qp(queue_pair_, &init,
                                        IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) {
      failed_transition_ = "RESET->INIT";
      return error;
    }

    ibv_qp_attr ready_to_receive{};
    ready_to_receive.qp_state = IBV_QPS_RTR;
    ready_to_receive.path_mtu = device_->active_mtu;
    ready_to_receive.dest_qp_num = remote.queue_number;
    ready_to_receive.rq_psn = receive_psn & psn_mask;
    ready_to_receive.max_dest_rd_atomic = device_->responder_reads_in_flight;
    ready_to_receive.min_rnr_timer = min_rnr_timer_code;
    ready_to_receive.ah_attr.is_global = 1;  // RoCE: peers are addressed by GID
    std::memcpy(ready_to_receive.ah_attr.grh.dgid.raw, remote.gid.data(), remote.gid.size());
    ready_to_receive.ah_attr.grh.sgid_index = device_->gid_index;
    ready_to_receive.ah_attr.grh.hop_limit = route_hop_limit;
    ready_to_receive.ah_attr.port_num = device_->port;
    if (const int error = ibv_modify_qp(queue_pair_, &ready_to_receive,
                                        IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                                            IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER)) {
      failed_transition_ = "INIT->RTR";
      return error;
    }

    ibv_qp_attr ready_to_send{};
    ready_to_send.qp_state = IBV_QPS_RTS;
    ready_to_send.sq_psn = send_psn;
    ready_to_send.timeout = ack_timeout_exponent;
    ready_to_send.retry_cnt = transport_retry_count;
    ready_to_send.rnr_retry = rnr_retry_count;
    ready_to_send.max_rd_atomic = device_->initiator_reads_in_flight;
    if (const int error = ibv_modify_qp(queue_pair_, &ready_to_send,
                                        IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                                            IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC)) {
      failed_transition_ = "RTR->RTS";
      return error;
    }
    return 0;
  }

  // RESET discards the send queue without completions (rxe) or even erases completions
  // already queued (libmlx5), so the ledger reports every outstanding operation as flushed
  // and starts a new epoch: whatever the device still delivers from before is dropped.
  void move_to_reset() {
    ibv_qp_attr attributes{};
    attributes.qp_state = IBV_QPS_RESET;
    if (const int error = ibv_modify_qp(queue_pair_, &attributes, IBV_QP_STATE)) {
      // Every state may move to RESET; failing here means the device is gone.
      std::fprintf(stderr, "mu fabric verbs: moving queue pair %u to RESET failed: %s\n", local_.queue_number,
                   errno_text(error).c_str());
    }
    std::vector<Completion> dropped;
    {
      const std::lock_guard lock(ledger_->mutex);
      dropped.reserve(ledger_->outstanding());
      for (std::uint64_t sequence = ledger_->retired_sequence; sequence < ledger_->next_sequence; ++sequence) {
        const PostedOperation& operation = ledger_->ring[sequence % ledger_->capacity];
        dropped.push_back(Completion{operation.work_id, id_, operation.opcode, CompletionStatus::flushed});
      }
      queue_->hold_for_leftovers(ledger_->outstanding());
      ledger_->retired_sequence = ledger_->next_sequence;
      ++ledger_->epoch;
      ledger_->error_completion_seen = false;
    }
    queue_->add_synthetic(std::move(dropped));
  }

  // Fills the scatter-gather entry for `length` bytes of a local region; false when the
  // region is not one of this fabric's or the range does not lie inside it.
  bool local_source(LocalRegion* region, std::uint64_t offset, std::uint32_t length, ibv_sge& scatter_gather) const {
    auto* verbs_region = dynamic_cast<VerbsLocalRegion*>(region);
    if (verbs_region == nullptr || verbs_region->device() != device_.get()) return false;
    if (offset > verbs_region->size_bytes() || length > verbs_region->size_bytes() - offset) return false;
    scatter_gather.addr = reinterpret_cast<std::uint64_t>(verbs_region->data()) + offset;
    scatter_gather.length = length;
    scatter_gather.lkey = verbs_region->local_key();
    return true;
  }

  PostStatus post(ibv_send_wr& work_request, ibv_sge& scatter_gather, const RemoteRegion* remote,
                  std::uint64_t remote_offset, std::uint64_t work_id, Opcode opcode, bool signaled) {
    if (tracked_state_ != ConnectionState::connected) return PostStatus::not_connected;
    // Zero-length requests are refused: the NIC checks neither key nor bounds for them
    // (IBA C9-88), so they would "succeed" where a real access would be refused.
    if (scatter_gather.length == 0) return PostStatus::invalid_request;
    if (remote == nullptr || remote->descriptor().node_id != remote_.node_id) return PostStatus::invalid_request;
    // The remote range is deliberately not checked here: the target's NIC refuses what
    // lies outside the region, and the caller sees that as an error completion.
    work_request.wr.rdma.remote_addr = remote->descriptor().address + remote_offset;
    work_request.wr.rdma.rkey = remote->descriptor().key;
    work_request.sg_list = &scatter_gather;
    work_request.num_sge = 1;
    if (signaled) work_request.send_flags |= IBV_SEND_SIGNALED;

    const std::lock_guard lock(ledger_->mutex);
    if (ledger_->outstanding() >= ledger_->capacity) return PostStatus::queue_full;
    if (!queue_->reserve()) return PostStatus::queue_full;
    const std::uint64_t sequence = ledger_->next_sequence;
    ledger_->ring[sequence % ledger_->capacity] = PostedOperation{work_id, opcode};
    work_request.wr_id = make_wr_id(id_, ledger_->epoch, sequence);
    ibv_send_wr* rejected = nullptr;
    if (const int error = ibv_post_send(queue_pair_, &work_request, &rejected)) {
      queue_->release(1);
      // A send queue that cannot take the request although the ledger says there is room
      // means the device is out of resources; the caller retries after polling.
      if (error == ENOMEM) return PostStatus::queue_full;
      std::fprintf(stderr, "mu fabric verbs: ibv_post_send on connection %u failed: %s\n", id_,
                   errno_text(error).c_str());
      return PostStatus::invalid_request;
    }
    ledger_->next_sequence = sequence + 1;
    return PostStatus::posted;
  }

  std::shared_ptr<DeviceCore> device_;
  std::shared_ptr<CompletionQueueCore> queue_;
  std::shared_ptr<SendLedger> ledger_;
  ibv_qp* queue_pair_ = nullptr;
  std::uint32_t id_ = 0;
  EndpointInfo local_;
  EndpointInfo remote_;
  bool has_remote_ = false;
  ConnectionState tracked_state_ = ConnectionState::unconnected;
  AccessFlags access_ = access_none;
  std::string failed_transition_;
};

// ---------------------------------------------------------------------------------------
// The fabric.

class VerbsFabric final : public Fabric {
 public:
  explicit VerbsFabric(std::shared_ptr<DeviceCore> device) : device_(std::move(device)) {}

  Backend backend() const override { return Backend::verbs; }
  NodeId node_id() const override { return device_->node_id; }
  std::size_t max_inline_bytes() const override { return device_->max_inline_bytes; }

  std::unique_ptr<LocalRegion> register_region(std::size_t size_bytes) override {
    if (size_bytes == 0) throw FabricError("verbs: a region must have at least one byte");
    return std::make_unique<VerbsLocalRegion>(device_, size_bytes);
  }

  std::shared_ptr<CompletionQueue> create_completion_queue(std::uint32_t depth) override {
    if (depth == 0) throw FabricError("verbs: a completion queue needs a depth of at least 1");
    // Completions that a reset left behind still occupy the device queue until polled;
    // they keep their reservations until then (hold_for_leftovers), and the device queue
    // gets twice the room that posts may claim as a margin.
    const auto device_entries = static_cast<int>(std::min<std::uint64_t>(
        2 * static_cast<std::uint64_t>(depth), static_cast<std::uint64_t>(device_->max_completion_queue_entries)));
    if (static_cast<std::uint64_t>(device_entries) < depth) {
      throw FabricError("verbs: completion queue depth " + std::to_string(depth) + " exceeds what " +
                        device_->device_name + " supports (" +
                        std::to_string(device_->max_completion_queue_entries) + ")");
    }
    ibv_cq* queue = ibv_create_cq(device_->context, device_entries, nullptr, nullptr, 0);
    if (queue == nullptr) {
      throw FabricError("verbs: ibv_create_cq(" + std::to_string(device_entries) + ") failed: " + errno_text(errno));
    }
    return std::make_unique<VerbsCompletionQueue>(std::make_shared<CompletionQueueCore>(device_, queue, depth));
  }

  std::unique_ptr<Connection> create_connection(std::shared_ptr<CompletionQueue> queue) override {
    auto* verbs_queue = dynamic_cast<VerbsCompletionQueue*>(queue.get());
    if (verbs_queue == nullptr || verbs_queue->core()->device != device_) {
      throw FabricError("verbs: the completion queue does not belong to this fabric");
    }
    return std::make_unique<VerbsConnection>(device_, verbs_queue->core());
  }

  std::unique_ptr<RemoteRegion> attach_remote_region(const RegionDescriptor& region, AttachTiming) override {
    if (region.node_id >= max_node_count) {
      throw FabricError("verbs: region descriptor names node " + std::to_string(region.node_id) + ", out of range");
    }
    return std::make_unique<VerbsRemoteRegion>(device_, region);
  }

 private:
  std::shared_ptr<DeviceCore> device_;
};

// ---------------------------------------------------------------------------------------
// Setup.

std::string link_layer_name(std::uint8_t link_layer) {
  switch (link_layer) {
    case IBV_LINK_LAYER_INFINIBAND: return "InfiniBand";
    case IBV_LINK_LAYER_ETHERNET: return "Ethernet";
    default: return "unspecified";
  }
}

void open_device(const FabricConfig& config, DeviceCore& device) {
  int device_count = 0;
  ibv_device** devices = ibv_get_device_list(&device_count);
  if (devices == nullptr || device_count == 0) {
    if (devices != nullptr) ibv_free_device_list(devices);
    throw FabricError(
        "verbs: no RDMA devices found (for Soft-RoCE: modprobe rdma_rxe && rdma link add rxe0 type rxe "
        "netdev <interface>)");
  }
  ibv_device* chosen = nullptr;
  std::string available;
  for (int i = 0; i < device_count; ++i) {
    const std::string name = ibv_get_device_name(devices[i]);
    available += (available.empty() ? "" : ", ") + name;
    if (chosen == nullptr && (config.verbs_device.empty() || name == config.verbs_device)) chosen = devices[i];
  }
  if (chosen == nullptr) {
    ibv_free_device_list(devices);
    throw FabricError("verbs: RDMA device '" + config.verbs_device + "' not found; available: " + available);
  }
  device.device_name = ibv_get_device_name(chosen);
  if (config.verbs_device.empty()) {
    std::fprintf(stderr, "mu fabric verbs: no device configured, using the first one: %s (available: %s)\n",
                 device.device_name.c_str(), available.c_str());
  }
  device.context = ibv_open_device(chosen);
  const int open_error = errno;
  ibv_free_device_list(devices);
  if (device.context == nullptr) {
    throw FabricError("verbs: cannot open RDMA device " + device.device_name + ": " + errno_text(open_error));
  }
}

void query_port_and_gid(const FabricConfig& config, DeviceCore& device) {
  ibv_port_attr port{};
  if (const int error = ibv_query_port(device.context, config.verbs_port, &port)) {
    throw FabricError("verbs: cannot query port " + std::to_string(config.verbs_port) + " of " +
                      device.device_name + ": " + errno_text(error));
  }
  if (port.state != IBV_PORT_ACTIVE) {
    throw FabricError("verbs: port " + std::to_string(config.verbs_port) + " of " + device.device_name +
                      " is not active (state " + ibv_port_state_str(port.state) + ")");
  }
  if (port.link_layer != IBV_LINK_LAYER_ETHERNET) {
    // Endpoints carry a GID and no LID: without a LID, InfiniBand cannot route.
    throw FabricError("verbs: port " + std::to_string(config.verbs_port) + " of " + device.device_name +
                      " has link layer " + link_layer_name(port.link_layer) +
                      "; this backend addresses peers by GID and needs RoCE (Ethernet)");
  }
  if (config.verbs_gid_index >= port.gid_tbl_len) {
    throw FabricError("verbs: GID index " + std::to_string(config.verbs_gid_index) + " is outside the GID table of " +
                      device.device_name + " port " + std::to_string(config.verbs_port) + " (" +
                      std::to_string(port.gid_tbl_len) + " entries)");
  }
  if (const int error = ibv_query_gid(device.context, config.verbs_port, config.verbs_gid_index, &device.gid)) {
    throw FabricError("verbs: cannot read GID " + std::to_string(config.verbs_gid_index) + " of " +
                      device.device_name + ": " + errno_text(error));
  }
  const ibv_gid empty_gid{};
  if (std::memcmp(device.gid.raw, empty_gid.raw, sizeof(empty_gid.raw)) == 0) {
    throw FabricError("verbs: GID " + std::to_string(config.verbs_gid_index) + " of " + device.device_name +
                      " port " + std::to_string(config.verbs_port) +
                      " is empty (does the network interface have an IP address?)");
  }
  device.port = config.verbs_port;
  device.gid_index = config.verbs_gid_index;
  device.active_mtu = port.active_mtu;
}

void query_device_limits(const FabricConfig& config, DeviceCore& device) {
  ibv_device_attr attributes{};
  if (const int error = ibv_query_device(device.context, &attributes)) {
    throw FabricError("verbs: cannot query " + device.device_name + ": " + errno_text(error));
  }
  if (config.max_outstanding_operations > static_cast<std::uint32_t>(attributes.max_qp_wr)) {
    throw FabricError("verbs: max_outstanding_operations " + std::to_string(config.max_outstanding_operations) +
                      " exceeds the send queue limit of " + device.device_name + " (" +
                      std::to_string(attributes.max_qp_wr) + ")");
  }
  device.max_outstanding_operations = config.max_outstanding_operations;
  device.initiator_reads_in_flight =
      static_cast<std::uint8_t>(std::clamp(attributes.max_qp_init_rd_atom, 1, max_reads_in_flight));
  device.responder_reads_in_flight =
      static_cast<std::uint8_t>(std::clamp(attributes.max_qp_rd_atom, 1, max_reads_in_flight));
  device.max_completion_queue_entries = attributes.max_cqe;
}

// Devices differ in how much data a send queue entry can carry inline (and it depends on
// the queue depth), so the fabric asks with a throwaway queue pair of the real shape.
void probe_inline_limit(DeviceCore& device) {
  ibv_cq* probe_queue = ibv_create_cq(device.context, 1, nullptr, nullptr, 0);
  if (probe_queue == nullptr) {
    throw FabricError("verbs: ibv_create_cq failed on " + device.device_name + ": " + errno_text(errno));
  }
  int last_error = 0;
  bool found = false;
  for (const std::uint32_t inline_bytes : inline_sizes_to_try_bytes) {
    ibv_qp_init_attr init{};
    init.send_cq = probe_queue;
    init.recv_cq = probe_queue;
    init.qp_type = IBV_QPT_RC;
    init.cap.max_send_wr = device.max_outstanding_operations;
    init.cap.max_recv_wr = 1;
    init.cap.max_send_sge = 1;
    init.cap.max_recv_sge = 1;
    init.cap.max_inline_data = inline_bytes;
    ibv_qp* probe = ibv_create_qp(device.protection_domain, &init);
    if (probe == nullptr) {
      last_error = errno;
      continue;
    }
    ibv_destroy_qp(probe);
    device.max_inline_bytes = inline_bytes;
    found = true;
    break;
  }
  ibv_destroy_cq(probe_queue);
  if (!found) {
    throw FabricError("verbs: cannot create an RC queue pair with " +
                      std::to_string(device.max_outstanding_operations) + " send entries on " + device.device_name +
                      ": " + errno_text(last_error));
  }
}

}  // namespace

std::shared_ptr<Fabric> create_verbs_fabric(const FabricConfig& config) {
  auto device = std::make_shared<DeviceCore>();
  device->node_id = config.node_id;
  open_device(config, *device);
  query_port_and_gid(config, *device);
  query_device_limits(config, *device);
  device->protection_domain = ibv_alloc_pd(device->context);
  if (device->protection_domain == nullptr) {
    throw FabricError("verbs: ibv_alloc_pd failed on " + device->device_name + ": " + errno_text(errno));
  }
  probe_inline_limit(*device);
  return std::make_shared<VerbsFabric>(std::move(device));
}

}  // namespace mu::fabric::verbs
