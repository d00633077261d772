// SPDX-License-Identifier: Apache-2.0
#include "libbpf.h"

#include <bpf/libbpf.h>

#include <string>

namespace skein {

namespace {

// libbpfVersion(): string — the libbpf the addon was linked against.
Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(),
                           std::to_string(libbpf_major_version()) + "." +
                               std::to_string(libbpf_minor_version()));
}

}  // namespace

void InitLibbpf(Napi::Env env, Napi::Object exports) {
  exports.Set("libbpfVersion",
              Napi::Function::New(env, LibbpfVersion, "libbpfVersion"));
}

}  // namespace skein
