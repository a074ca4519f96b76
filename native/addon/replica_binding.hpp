// The Node-API face of an EngineHost: `new Replica(options)`, card(), connect(cards),
// start(onEvents), submit(commands), status(), stop(). Option checking with friendly
// messages is mu/'s job (mu/config.ts); this layer re-checks types and ranges and throws
// TypeError/RangeError rather than trusting its caller.
//
// Events reach JavaScript through an unref'd ThreadSafeFunction: the engine thread only
// signals, and the callback, on the main thread, drains the event ring into one Buffer
// of event records (addon/engine_host.hpp) that mu/ parses without further copies.
#pragma once

#include <napi.h>

#include <memory>

#include "addon/engine_host.hpp"

namespace mu::addon {

class ReplicaBinding final : public Napi::ObjectWrap<ReplicaBinding> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit ReplicaBinding(const Napi::CallbackInfo& info);
  ~ReplicaBinding() override;

 private:
  Napi::Value card(const Napi::CallbackInfo& info);
  Napi::Value connect(const Napi::CallbackInfo& info);
  Napi::Value reconnect_peer(const Napi::CallbackInfo& info);
  Napi::Value release_link(const Napi::CallbackInfo& info);
  Napi::Value request_state_transfer(const Napi::CallbackInfo& info);
  Napi::Value resume_from_state_transfer(const Napi::CallbackInfo& info);
  Napi::Value start(const Napi::CallbackInfo& info);
  Napi::Value submit(const Napi::CallbackInfo& info);
  Napi::Value poll(const Napi::CallbackInfo& info);
  Napi::Value status(const Napi::CallbackInfo& info);
  Napi::Value stop(const Napi::CallbackInfo& info);
  Napi::Value max_command_bytes(const Napi::CallbackInfo& info);

  static void deliver_events(Napi::Env env, Napi::Function on_events, const std::weak_ptr<EngineHost>& weak_host);
  static std::vector<std::uint8_t> drain_records(EngineHost& host);
  void shut_down();
  EngineHost& live_host(Napi::Env env);

  std::shared_ptr<EngineHost> host_;
  Napi::ThreadSafeFunction events_signal_;
  bool signal_created_ = false;
  HostStatus last_status_;  // what status() reports once stopped
  std::size_t max_command_bytes_ = 0;
};

}  // namespace mu::addon
