// The fabric: the one-sided operations the Mu engine needs, with reliable-connection (RC)
// semantics. The engine is written against this contract and nothing else; each backend
// (`shm` for processes on one host, `verbs` for RDMA NICs and Soft-RoCE) implements it.
//
// THE CONTRACT
//
// Objects. A Fabric is one node's handle on the network (a device context and protection
// domain on verbs; a per-cluster directory of shared-memory files on shm). From it come:
//   - LocalRegion: memory registered for remote access. Peers reach it through a
//     RegionDescriptor (plain data: node, key, address, length), which the control plane
//     carries to them. Its bytes may change under the owner at any moment a peer is
//     granted remote write on some connection.
//   - CompletionQueue: where completions of posted operations appear, in the order they
//     complete. One queue may serve many connections.
//   - Connection: one end of a reliable connection (a queue pair) with exactly one peer.
//     Its local end posts WRITE/READ to the peer's regions; its access flags decide what
//     the peer may do to this node's regions through it.
//   - RemoteRegion: a peer's region as seen from here, resolved from a RegionDescriptor.
// Every child keeps its parent alive (it holds a shared_ptr to the Fabric's internals),
// and a Connection keeps its CompletionQueue alive, so teardown order is right by
// construction.
//
// Connecting. create_connection() gives an unconnected end; local_endpoint() is the plain
// data (EndpointInfo) its peer needs; connect(remote, access) brings it to the connected
// state with the given access flags. Both ends must connect before either posts.
//
// Posting. post_write() and post_read() are asynchronous and never block. Within one
// connection operations take effect at the target in posting order and complete in posting
// order. Nothing is ordered across connections. A signaled operation yields exactly one
// completion; an unsignaled one yields a completion only if it fails. Up to
// max_outstanding_operations() operations may be outstanding on a connection; an
// unsignaled operation stays outstanding until a later signaled operation on the same
// connection completes, so the poster must signal at least once every that many posts.
// Post rejects with PostStatus::queue_full when the limit would be exceeded.
// Lifetimes that the API cannot enforce: the local source or destination bytes of a
// non-inline operation must stay valid and untouched until the operation's completion
// (or a later one on the same connection) has been polled. Inline writes (at most
// max_inline_bytes(), see WriteRequest::inline_payload) copy the payload at post time.
//
// Errors. An operation the target refuses (access not granted, region unknown or
// deregistered, range outside the region) completes with a remote error status and
// changes nothing at the target. As on RC, any error completion puts the connection into
// the error state: every later or still-queued operation completes with `flushed` until
// the connection is reset and connected again. The target's end of the connection also
// enters the error state when it refuses an operation (both queue pairs go to ERR on RC).
// A peer that is dead or unreachable yields `peer_unreachable` (possibly after the
// backend's retry timeout). Backends differ in which remote error they report for a
// refused write (rxe says `remote_invalid_request`, mlx5 NICs `remote_access_error`);
// callers test is_remote_rejection() rather than one status. Zero-length operations are
// refused at post (`invalid_request`): a NIC checks neither key nor bounds for them, so
// they would prove nothing.
//
// Resets are paired. After an error both ends reset() and connect() again, and neither
// posts until the control plane has seen both ends connected. An end that resets and
// reconnects alone while its peer's end keeps running is out of step, and on verbs its
// writes may then be taken for retransmissions: acknowledged with `success` and never
// executed. So never reset one end alone. shm detects a target end that reset alone
// (`peer_unreachable`) and executes an initiator's writes after a one-sided reset of the
// initiator's end; verbs does neither reliably. Operations outstanding at a reset: verbs reports each as `flushed`
// (whether it reached the target is unknown); shm has already executed them and reports
// nothing more for unsignaled ones.
//
// Access changes (the heart of Mu's one-writer-per-log rule). change_access() at the
// target sets what the connection's peer may do: remote write, remote read, both or none.
//   - AccessPath::fast changes the flags in place (ibv_modify_qp(IBV_QP_ACCESS_FLAGS)).
//   - AccessPath::robust cycles this end through RESET -> INIT -> RTR -> RTS with the new
//     flags, for devices that refuse the in-place change. On a healthy connection it keeps
//     both packet sequence numbers, so the peer does not notice: as after the fast path,
//     its next operation is judged by the new flags.
//   On an unconnected end the flags are recorded for the next connect(). An end in the
//   error state can only be cycled (either path): it comes back connected with the new
//   flags as one half of a paired reset.
// Revocation is strong: once change_access() has returned ChangeStatus::settled (or
// access_change_settled() has returned true after ChangeStatus::pending), no operation
// from the peer that the new flags forbid takes effect, including one that was in flight
// when the change began. On verbs the NIC enforces this the moment ibv_modify_qp returns.
// On shm the initiator itself writes the target's memory, so the revoker waits for the
// peer's in-flight operation to finish or for the peer process to exit; that wait is
// reported as `pending` instead of blocking, so an agent can keep working meanwhile. A
// reset does not wait, so an operation in flight across a reset keeps every later access
// change on that end pending until it ends; settled always means "nothing forbidden can
// still land", whatever happened in between.
// ChangeStatus::failed means the device refused the change; treat access as revoked.
//
// Threads. A Fabric and its objects may be used from several threads, but a
// CompletionQueue and every Connection that posts to it must be used by one thread at a
// time, together (shm completes operations at post time, into the queue): in the engine,
// one agent owns a queue and its connections.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fabric/endpoint.hpp"

namespace mu::fabric {

// `sim` is the deterministic in-process backend for tests and the simulator; its nodes
// come from sim::SimNetwork (fabric/sim/sim_network.hpp), not from create_fabric().
enum class Backend : std::uint8_t { shm, verbs, sim };

std::string_view backend_name(Backend backend);
// Parses "shm", "verbs" or "sim"; throws FabricError for anything else.
Backend parse_backend(std::string_view name);
// The deployable backends this build contains (verbs only when libibverbs was found at
// build time). `sim` is always there and never deployable.
std::vector<Backend> compiled_backends();

// Raised for setup failures (bad configuration, missing device, exhausted resources).
// Data-path failures never throw: they are completions.
class FabricError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What the peer of a connection may do to this node's regions through it.
enum AccessFlags : std::uint32_t {
  access_none = 0,
  access_remote_write = 1u << 0,
  access_remote_read = 1u << 1,
  access_remote_all = access_remote_write | access_remote_read,
};

enum class Opcode : std::uint8_t { write, read };

enum class CompletionStatus : std::uint8_t {
  success = 0,
  // The target refused: access not granted, or the region is unknown or deregistered,
  // or the range lies outside it (mlx5 reports revoked access this way).
  remote_access_error,
  // The target refused the request as invalid (rxe reports revoked access this way).
  remote_invalid_request,
  // Posted or still queued on a connection that is in the error state.
  flushed,
  // The peer did not answer: it is dead, restarted, or unreachable.
  peer_unreachable,
  // The request was wrong before it left this node (bad local range, wrong peer).
  local_error,
};

std::string_view completion_status_name(CompletionStatus status);
constexpr bool is_remote_rejection(CompletionStatus status) {
  return status == CompletionStatus::remote_access_error ||
         status == CompletionStatus::remote_invalid_request;
}

struct Completion {
  std::uint64_t work_id = 0;
  std::uint32_t connection_id = 0;  // Connection::id() of the connection it was posted on
  Opcode opcode = Opcode::write;
  CompletionStatus status = CompletionStatus::success;
};

enum class PostStatus : std::uint8_t {
  posted,
  // Too many outstanding operations on this connection (or no room in its completion
  // queue); nothing was posted. Poll completions and retry.
  queue_full,
  // The connection was never connected or is being reset; nothing was posted.
  not_connected,
  // The request itself is malformed (inline payload too long, local range outside the
  // local region). Nothing was posted.
  invalid_request,
};

enum class ConnectionState : std::uint8_t { unconnected, connected, error };
enum class AccessPath : std::uint8_t { fast, robust };
enum class ChangeStatus : std::uint8_t { settled, pending, failed };

class LocalRegion {
 public:
  virtual ~LocalRegion() = default;
  virtual std::byte* data() = 0;
  virtual std::size_t size_bytes() const = 0;
  // What a peer needs to reach this region (through the control plane).
  virtual RegionDescriptor descriptor() const = 0;
};

class RemoteRegion {
 public:
  virtual ~RemoteRegion() = default;
  virtual const RegionDescriptor& descriptor() const = 0;
};

class CompletionQueue {
 public:
  virtual ~CompletionQueue() = default;
  // Moves up to out.size() completions into out; returns how many. Never blocks.
  virtual std::size_t poll(std::span<Completion> out) = 0;
};

struct WriteRequest {
  std::uint64_t work_id = 0;
  const RemoteRegion* remote = nullptr;
  std::uint64_t remote_offset = 0;
  // Source: either inline_payload (copied at post time, at most max_inline_bytes()) or
  // `length` bytes of local_region at local_offset.
  std::span<const std::byte> inline_payload{};
  LocalRegion* local_region = nullptr;
  std::uint64_t local_offset = 0;
  std::uint32_t length = 0;
  bool signaled = true;
};

struct ReadRequest {
  std::uint64_t work_id = 0;
  const RemoteRegion* remote = nullptr;
  std::uint64_t remote_offset = 0;
  LocalRegion* local_region = nullptr;  // destination
  std::uint64_t local_offset = 0;
  std::uint32_t length = 0;
  bool signaled = true;
};

class Connection {
 public:
  virtual ~Connection() = default;
  // Unique among this Fabric's connections; reported in every Completion.
  virtual std::uint32_t id() const = 0;
  virtual EndpointInfo local_endpoint() const = 0;
  // Connects to the peer's end with the given initial access flags. The remote endpoint
  // is remembered, so reset() + connect(remote_endpoint(), ...) reconnects.
  virtual void connect(const EndpointInfo& remote, AccessFlags access) = 0;
  virtual const EndpointInfo& remote_endpoint() const = 0;
  virtual ConnectionState state() const = 0;
  // Drops every queued operation (they complete as `flushed`) and returns the connection
  // to the unconnected state. Idempotent.
  virtual void reset() = 0;

  virtual PostStatus post_write(const WriteRequest& request) = 0;
  virtual PostStatus post_read(const ReadRequest& request) = 0;

  virtual AccessFlags access() const = 0;
  virtual ChangeStatus change_access(AccessFlags access, AccessPath path) = 0;
  // After ChangeStatus::pending: true once the change is in force (see the contract).
  virtual bool access_change_settled() = 0;

  virtual std::uint32_t max_outstanding_operations() const = 0;
};

struct FabricConfig {
  Backend backend = Backend::shm;
  NodeId node_id = 0;
  // shm: the cluster's name; regions live in <shm_root>/mu-<cluster_name>/.
  std::string cluster_name = "default";
  std::string shm_root = "/dev/shm";
  // verbs: device (e.g. "mlx5_0", "rxe0"), port and GID index (RoCE v2: usually the
  // IPv4-mapped GID, index 1 on rxe).
  std::string verbs_device;
  std::uint8_t verbs_port = 1;
  std::uint8_t verbs_gid_index = 1;
  // Per connection; also bounds each completion queue to depth * connections on shm.
  std::uint32_t max_outstanding_operations = 256;
};

class Fabric {
 public:
  virtual ~Fabric() = default;
  virtual Backend backend() const = 0;
  virtual NodeId node_id() const = 0;
  virtual std::size_t max_inline_bytes() const = 0;

  // Allocates and registers `size_bytes` of zeroed memory. Remote access to it is then
  // governed by the access flags of each connection.
  virtual std::unique_ptr<LocalRegion> register_region(std::size_t size_bytes) = 0;
  virtual std::shared_ptr<CompletionQueue> create_completion_queue(std::uint32_t depth) = 0;
  virtual std::unique_ptr<Connection> create_connection(std::shared_ptr<CompletionQueue> queue) = 0;
  // When an attach happens, which bounds what it may cost. At start-up, before the engine
  // runs, shm maps every page of the region, so no write to it ever takes a page fault;
  // while running (on an engine thread, a restarted peer's card), populating a large
  // region would stall the thread for milliseconds, longer than a failure detector's
  // window, so its pages fault in at first touch instead. RDMA backends resolve a
  // descriptor without touching memory either way.
  enum class AttachTiming { at_startup, while_running };
  // Resolves a peer's region; throws FabricError if the descriptor cannot be attached.
  virtual std::unique_ptr<RemoteRegion> attach_remote_region(const RegionDescriptor& region, AttachTiming timing) = 0;
};

// Creates the backend named in config; throws FabricError with a clear message when it is
// unavailable (not compiled in, no such device, shm directory not usable).
std::shared_ptr<Fabric> create_fabric(const FabricConfig& config);

}  // namespace mu::fabric
