// SPDX-License-Identifier: Apache-2.0
// A thin, fd-based wrapper over libbpf and the bpf(2) syscall: load an object
// file, pin and fetch by path, attach through links or prog_attach, map
// operations on Buffers, object info, feature probes, and a ring buffer
// consumed on Node's own loop. Every call is one or two quick bpf syscalls;
// nothing blocks. Typed in lib/addon.d.ts, wrapped by lib/ebpf.ts.
#pragma once

#include <napi.h>

namespace skein {

void InitEbpf(Napi::Env env, Napi::Object exports);

}  // namespace skein
