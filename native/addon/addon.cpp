// The Node-API boundary. For now it reports what the native build contains; the Replica
// binding (issue: Node binding and mu/ API) grows here.
#include <napi.h>

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
  return exports;
}

}  // namespace

NODE_API_MODULE(mu_native, init)
