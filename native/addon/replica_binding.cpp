#include "addon/replica_binding.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace mu::addon {
namespace {

// Reads an optional integer option within [low, high]; `fallback` when absent.
std::uint64_t integer_option(const Napi::Object& options, const char* name, std::uint64_t fallback, std::uint64_t low,
                             std::uint64_t high) {
  const Napi::Env env = options.Env();
  if (!options.Has(name) || options.Get(name).IsUndefined()) return fallback;
  const Napi::Value value = options.Get(name);
  if (!value.IsNumber()) throw Napi::TypeError::New(env, std::string("Replica: option ") + name + " must be a number");
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(number) || std::floor(number) != number || number < static_cast<double>(low) ||
      number > static_cast<double>(high)) {
    throw Napi::RangeError::New(env, std::string("Replica: option ") + name + " must be an integer in [" +
                                         std::to_string(low) + ", " + std::to_string(high) + "]");
  }
  return static_cast<std::uint64_t>(number);
}

std::string string_option(const Napi::Object& options, const char* name, const std::string& fallback) {
  if (!options.Has(name) || options.Get(name).IsUndefined()) return fallback;
  const Napi::Value value = options.Get(name);
  if (!value.IsString()) {
    throw Napi::TypeError::New(options.Env(), std::string("Replica: option ") + name + " must be a string");
  }
  return value.As<Napi::String>().Utf8Value();
}

EngineHostConfig config_from(const Napi::Object& options) {
  constexpr std::uint64_t u32_max = std::numeric_limits<std::uint32_t>::max();
  EngineHostConfig config;
  auto& leader = config.replica.leader;
  auto& background = config.replica.background;
  leader.replica_count = static_cast<std::uint32_t>(integer_option(options, "replicaCount", 3, 1, engine::max_replicas));
  leader.self = static_cast<fabric::NodeId>(integer_option(options, "nodeId", 0, 0, leader.replica_count - 1));
  leader.log_area_bytes = integer_option(options, "logBytes", leader.log_area_bytes, 64 * 1024, std::uint64_t{1} << 36);
  leader.max_payload_bytes =
      static_cast<std::uint32_t>(integer_option(options, "maxEntryBytes", leader.max_payload_bytes, 256, engine::max_entry_payload_bytes));
  if (leader.log_area_bytes < 4 * static_cast<std::uint64_t>(leader.max_payload_bytes)) {
    throw Napi::RangeError::New(options.Env(), "Replica: logBytes must hold at least four of the largest entries");
  }
  leader.max_outstanding_entries =
      static_cast<std::uint32_t>(integer_option(options, "pipelineDepth", leader.max_outstanding_entries, 1, 256));
  leader.max_pending_commands =
      static_cast<std::uint32_t>(integer_option(options, "maxPendingCommands", leader.max_pending_commands, 1, u32_max));
  leader.commit_publish_delay_ns =
      integer_option(options, "commitPublishDelayUs", leader.commit_publish_delay_ns / 1000, 1, 1'000'000) * 1000;
  auto& detector = background.detector;
  detector.heartbeat_interval_ns =
      integer_option(options, "heartbeatIntervalUs", detector.heartbeat_interval_ns / 1000, 1, 10'000'000) * 1000;
  detector.read_interval_ns =
      integer_option(options, "readIntervalUs", detector.read_interval_ns / 1000, 1, 10'000'000) * 1000;
  detector.max_score = static_cast<std::uint32_t>(integer_option(options, "maxScore", detector.max_score, 1, 1000));
  detector.failure_threshold =
      static_cast<std::uint32_t>(integer_option(options, "failureThreshold", detector.failure_threshold, 0, 1000));
  detector.recovery_threshold =
      static_cast<std::uint32_t>(integer_option(options, "recoveryThreshold", detector.recovery_threshold, 1, 1000));
  background.candidate_timeout_ns =
      integer_option(options, "candidateTimeoutUs", background.candidate_timeout_ns / 1000, 1, 60'000'000) * 1000;
  background.candidate_backoff_ns =
      integer_option(options, "candidateBackoffUs", background.candidate_backoff_ns / 1000, 1, 60'000'000) * 1000;
  background.fate_sharing_timeout_ns =
      integer_option(options, "fateSharingTimeoutUs", background.fate_sharing_timeout_ns / 1000, 1, 600'000'000) *
      1000;
  config.idle_strategy = string_option(options, "idleStrategy", config.idle_strategy);
  config.event_ring_bytes = std::max<std::size_t>(config.event_ring_bytes, 4 * std::size_t{leader.max_payload_bytes});

  const std::string backend = string_option(options, "fabric", "shm");
  if (backend == "shm") {
    config.fabric.backend = fabric::Backend::shm;
  } else if (backend == "verbs") {
    config.fabric.backend = fabric::Backend::verbs;
  } else {
    throw Napi::RangeError::New(options.Env(), "Replica: option fabric must be \"shm\" or \"verbs\"");
  }
  config.fabric.cluster_name = string_option(options, "clusterName", config.fabric.cluster_name);
  config.fabric.shm_root = string_option(options, "shmRoot", config.fabric.shm_root);
  config.fabric.verbs_device = string_option(options, "verbsDevice", config.fabric.verbs_device);
  config.fabric.verbs_port = static_cast<std::uint8_t>(integer_option(options, "verbsPort", config.fabric.verbs_port, 1, 255));
  config.fabric.verbs_gid_index =
      static_cast<std::uint8_t>(integer_option(options, "verbsGidIndex", config.fabric.verbs_gid_index, 0, 255));
  return config;
}

const char* role_name(engine::LeaderAgent::Role role) {
  switch (role) {
    case engine::LeaderAgent::Role::follower: return "follower";
    case engine::LeaderAgent::Role::recovering: return "recovering";
    case engine::LeaderAgent::Role::preparing: return "preparing";
    case engine::LeaderAgent::Role::steady: return "leader";
    case engine::LeaderAgent::Role::deposed: return "deposed";
  }
  return "unknown";
}

const char* candidacy_name(engine::BackgroundAgent::Candidacy candidacy) {
  switch (candidacy) {
    case engine::BackgroundAgent::Candidacy::idle: return "idle";
    case engine::BackgroundAgent::Candidacy::requesting: return "requesting";
    case engine::BackgroundAgent::Candidacy::leading: return "leading";
  }
  return "unknown";
}

// Runs a native call, turning the engine's exceptions into JavaScript errors.
template <typename Body>
auto guarded(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::invalid_argument& error) {
    throw Napi::TypeError::New(env, error.what());
  } catch (const std::exception& error) {
    throw Napi::Error::New(env, error.what());
  }
}

}  // namespace

Napi::Function ReplicaBinding::define(Napi::Env env) {
  return DefineClass(env, "Replica",
                     {
                         InstanceMethod<&ReplicaBinding::card>("card"),
                         InstanceMethod<&ReplicaBinding::connect>("connect"),
                         InstanceMethod<&ReplicaBinding::reconnect_peer>("reconnectPeer"),
                         InstanceMethod<&ReplicaBinding::release_link>("releaseLink"),
                         InstanceMethod<&ReplicaBinding::request_state_transfer>("requestStateTransfer"),
                         InstanceMethod<&ReplicaBinding::resume_from_state_transfer>("resumeFromStateTransfer"),
                         InstanceMethod<&ReplicaBinding::start>("start"),
                         InstanceMethod<&ReplicaBinding::submit>("submit"),
                         InstanceMethod<&ReplicaBinding::poll>("poll"),
                         InstanceMethod<&ReplicaBinding::status>("status"),
                         InstanceMethod<&ReplicaBinding::stop>("stop"),
                         InstanceMethod<&ReplicaBinding::max_command_bytes>("maxCommandBytes"),
                     });
}

ReplicaBinding::ReplicaBinding(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ReplicaBinding>(info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "Replica: expected an options object");
  const EngineHostConfig config = config_from(info[0].As<Napi::Object>());
  guarded(env, [&] {
    // The engine thread calls this; the ThreadSafeFunction exists before start() runs it.
    host_ = std::make_shared<EngineHost>(config, [this] {
      // Engine thread: only a signal. The delivery runs on the main thread and holds the
      // host weakly, in case the Replica is stopped and collected before it runs.
      if (!signal_created_) return;
      events_signal_.NonBlockingCall([weak_host = std::weak_ptr<EngineHost>(host_)](Napi::Env call_env,
                                                                                     Napi::Function on_events) {
        deliver_events(call_env, on_events, weak_host);
      });
    });
    return 0;
  });
}

ReplicaBinding::~ReplicaBinding() { shut_down(); }

void ReplicaBinding::shut_down() {
  if (host_) {
    host_->stop();  // joins the engine thread: no signal after this
    last_status_ = host_->status();
    max_command_bytes_ = host_->max_command_bytes();
    // Now, not at garbage collection: the fabric's regions (shm files) go with it.
    host_.reset();
  }
  if (signal_created_) {
    signal_created_ = false;
    events_signal_.Release();
  }
}

EngineHost& ReplicaBinding::live_host(Napi::Env env) {
  if (!host_) throw Napi::Error::New(env, "Replica: stopped");
  return *host_;
}

Napi::Value ReplicaBinding::card(const Napi::CallbackInfo& info) {
  EngineHost& host = live_host(info.Env());
  const std::vector<std::byte> bytes = guarded(info.Env(), [&] { return host.card(); });
  return Napi::Buffer<std::uint8_t>::Copy(info.Env(), reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
}

Napi::Value ReplicaBinding::connect(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "Replica.connect: expected an array of cards");
  const auto array = info[0].As<Napi::Array>();
  std::vector<std::vector<std::byte>> cards;
  for (std::uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Value value = array.Get(i);
    // null: that peer's card has not come (the engine starts with a majority of them).
    if (value.IsNull()) {
      cards.emplace_back();
      continue;
    }
    if (!value.IsBuffer()) throw Napi::TypeError::New(env, "Replica.connect: every card must be a Buffer or null");
    const auto buffer = value.As<Napi::Buffer<std::uint8_t>>();
    const auto* bytes = reinterpret_cast<const std::byte*>(buffer.Data());
    cards.emplace_back(bytes, bytes + buffer.Length());
  }
  guarded(env, [&] {
    live_host(env).connect(cards);
    return 0;
  });
  return env.Undefined();
}

// (card[, hold]): hold true resets the link to a live peer and holds it (EngineHost).
// Returns the change's number, which the peer-reconnected event for it carries.
Napi::Value ReplicaBinding::reconnect_peer(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 1 || info.Length() > 2 || !info[0].IsBuffer() || (info.Length() == 2 && !info[1].IsBoolean())) {
    throw Napi::TypeError::New(env, "Replica.reconnectPeer: expected a card Buffer and optionally a boolean hold");
  }
  const auto buffer = info[0].As<Napi::Buffer<std::uint8_t>>();
  const bool hold = info.Length() == 2 && info[1].As<Napi::Boolean>().Value();
  const std::uint64_t number = guarded(env, [&] {
    return live_host(env).reconnect_peer(std::span(reinterpret_cast<const std::byte*>(buffer.Data()), buffer.Length()), hold);
  });
  return Napi::Number::New(env, static_cast<double>(number));
}

// (peer): the peer has reset its ends too: connect this replica's. Returns the change's number.
Napi::Value ReplicaBinding::release_link(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "Replica.releaseLink: expected a replica id");
  const double peer = info[0].As<Napi::Number>().DoubleValue();
  if (peer < 0 || peer > 0xffff || peer != static_cast<double>(static_cast<std::uint32_t>(peer))) {
    throw Napi::RangeError::New(env, "Replica.releaseLink: the replica id must be a small non-negative integer");
  }
  const std::uint64_t number = guarded(env, [&] { return live_host(env).release_link(static_cast<std::uint32_t>(peer)); });
  return Napi::Number::New(env, static_cast<double>(number));
}

Napi::Value ReplicaBinding::request_state_transfer(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 0) throw Napi::TypeError::New(env, "Replica.requestStateTransfer: expected no arguments");
  live_host(env).request_state_transfer();
  return env.Undefined();
}

// (nextIndex, position): numbers, exact below 2^53 (log indices and positions are).
Napi::Value ReplicaBinding::resume_from_state_transfer(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "Replica.resumeFromStateTransfer: expected (nextIndex, position)");
  }
  const double next_index = info[0].As<Napi::Number>().DoubleValue();
  const double position = info[1].As<Napi::Number>().DoubleValue();
  constexpr double exact_limit = 9007199254740992.0;  // 2^53
  if (!(next_index >= 1 && next_index < exact_limit && position >= 0 && position < exact_limit) ||
      next_index != static_cast<double>(static_cast<std::uint64_t>(next_index)) ||
      position != static_cast<double>(static_cast<std::uint64_t>(position))) {
    throw Napi::RangeError::New(env, "Replica.resumeFromStateTransfer: nextIndex and position must be non-negative integers below 2^53");
  }
  live_host(env).resume_from_state_transfer(static_cast<std::uint64_t>(next_index), static_cast<std::uint64_t>(position));
  return env.Undefined();
}

Napi::Value ReplicaBinding::start(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "Replica.start: expected an event callback");
  if (signal_created_) throw Napi::Error::New(env, "Replica.start: already started");
  EngineHost& host = live_host(env);
  events_signal_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "mu replica events", 0, 1);
  // The Node process may exit while the engine runs: the proxy's servers keep it alive.
  events_signal_.Unref(env);
  signal_created_ = true;
  guarded(env, [&] {
    host.start();
    return 0;
  });
  return env.Undefined();
}

// On the main thread, after a signal: every waiting event record, each preceded by its
// 4-byte length, in one Buffer handed to the JavaScript callback (at most the event
// ring's size). Static, holding the host weakly: a delivery queued before the Replica was
// stopped and collected finds nothing and does nothing.
std::vector<std::uint8_t> ReplicaBinding::drain_records(EngineHost& host) {
  std::vector<std::uint8_t> out;
  while (host.drain_events(
             [&](std::span<const std::byte> record) {
               const auto length = static_cast<std::uint32_t>(record.size());
               const std::size_t at = out.size();
               out.resize(at + sizeof length + record.size());
               std::memcpy(out.data() + at, &length, sizeof length);
               std::memcpy(out.data() + at + sizeof length, record.data(), record.size());
             },
             4096) != 0) {
  }
  return out;
}

void ReplicaBinding::deliver_events(Napi::Env env, Napi::Function on_events, const std::weak_ptr<EngineHost>& weak_host) {
  const std::shared_ptr<EngineHost> host = weak_host.lock();
  if (!host) return;
  const std::vector<std::uint8_t> out = drain_records(*host);
  if (out.empty()) return;  // taken by poll() meanwhile
  on_events.Call({Napi::Buffer<std::uint8_t>::Copy(env, out.data(), out.size())});
}

// poll(spinUs): spins up to spinUs for event records and returns them (the same format
// as the event callback's Buffer), or undefined. Used right after submit().
Napi::Value ReplicaBinding::poll(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "Replica.poll: expected microseconds");
  const double spin_us = info[0].As<Napi::Number>().DoubleValue();
  if (!(spin_us >= 0 && spin_us <= 1000)) throw Napi::RangeError::New(env, "Replica.poll: between 0 and 1000 microseconds");
  EngineHost& host = live_host(env);
  if (!host.wait_for_events(static_cast<std::uint64_t>(spin_us * 1000))) return env.Undefined();
  const std::vector<std::uint8_t> out = drain_records(host);
  if (out.empty()) return env.Undefined();
  return Napi::Buffer<std::uint8_t>::Copy(env, out.data(), out.size());
}

Napi::Value ReplicaBinding::submit(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsArray()) {
    throw Napi::TypeError::New(env, "Replica.submit: expected an array of Buffers");
  }
  const auto commands = info[0].As<Napi::Array>();
  EngineHost& host = live_host(env);
  std::uint64_t first_sequence = 0;
  std::uint32_t accepted = 0;
  for (; accepted < commands.Length(); ++accepted) {
    const Napi::Value value = commands.Get(accepted);
    if (!value.IsBuffer()) throw Napi::TypeError::New(env, "Replica.submit: every command must be a Buffer");
    const auto buffer = value.As<Napi::Buffer<std::uint8_t>>();
    const auto tag = host.submit(std::span(reinterpret_cast<const std::byte*>(buffer.Data()), buffer.Length()));
    if (!tag) break;  // the ring is full (or the command too large): the caller keeps the rest
    if (accepted == 0) first_sequence = tag->sequence;
  }
  if (accepted > 0) host.wake();
  // Sequences are consecutive: [first, first + accepted).
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, static_cast<double>(first_sequence)));
  result.Set(1u, Napi::Number::New(env, accepted));
  return result;
}

Napi::Value ReplicaBinding::status(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const HostStatus status = host_ ? host_->status() : last_status_;
  Napi::Object out = Napi::Object::New(env);
  out.Set("running", status.running);
  out.Set("role", role_name(status.role));
  out.Set("candidacy", candidacy_name(status.candidacy));
  out.Set("holder", status.holder ? Napi::Value(Napi::Number::New(env, *status.holder)) : env.Null());
  out.Set("proposal", static_cast<double>(status.proposal));
  out.Set("firstUncommittedIndex", static_cast<double>(status.first_uncommitted_index));
  out.Set("firstUndecidedIndex", static_cast<double>(status.first_undecided_index));
  out.Set("appliedIndex", static_cast<double>(status.applied_index));
  out.Set("heartbeat", static_cast<double>(status.heartbeat));
  out.Set("grantsServed", static_cast<double>(status.grants_served));
  Napi::Array scores = Napi::Array::New(env, status.peer_scores.size());
  Napi::Array alive = Napi::Array::New(env, status.peer_alive.size());
  for (std::uint32_t i = 0; i < status.peer_scores.size(); ++i) {
    scores.Set(i, Napi::Number::New(env, status.peer_scores[i]));
    alive.Set(i, Napi::Boolean::New(env, status.peer_alive[i]));
  }
  out.Set("peerScores", scores);
  out.Set("peerAlive", alive);
  out.Set("needsStateTransfer", status.needs_state_transfer);
  out.Set("rounds", static_cast<double>(status.rounds));
  out.Set("idleRounds", static_cast<double>(status.idle_rounds));
  out.Set("entriesApplied", static_cast<double>(status.entries_applied));
  out.Set("commandsDropped", static_cast<double>(status.commands_dropped));
  out.Set("reignsEnded", static_cast<double>(status.reigns_ended));
  out.Set("leaderDetail", status.leader_detail);
  out.Set("backgroundDetail", status.background_detail);
  return out;
}

Napi::Value ReplicaBinding::stop(const Napi::CallbackInfo& info) {
  shut_down();
  return info.Env().Undefined();
}

Napi::Value ReplicaBinding::max_command_bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(host_ ? host_->max_command_bytes() : max_command_bytes_));
}

}  // namespace mu::addon
