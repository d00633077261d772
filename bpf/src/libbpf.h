// SPDX-License-Identifier: Apache-2.0
// libbpf, linked from Debian's libbpf-dev; the eBPF loader builds on this.
#pragma once

#include <napi.h>

namespace skein {

void InitLibbpf(Napi::Env env, Napi::Object exports);

}  // namespace skein
