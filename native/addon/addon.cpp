// The Node-API boundary: the Replica class (addon/replica_binding.hpp) and what the
// native build contains.
#include <napi.h>

#include "addon/replica_binding.hpp"
#include "fabric/fabric.hpp"

namespace {

Napi::Value compiled_fabric_backends(const Napi::CallbackInfo& info) {
  const auto backends = mu::fabric::compiled_backends();
  Napi::Array names = Napi::Array::New(info.Env(), backends.size());
  for (std::uint32_t i = 0; i < backends.size(); ++i) {
    names.Set(i, Napi::String::New(info.Env(), std::string(mu::fabric::backend_name(backends[i]))));
  }
  return names;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("compiledFabricBackends", Napi::Function::New(env, compiled_fabric_backends));
  exports.Set("Replica", mu::addon::ReplicaBinding::define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(mu_native, init)
