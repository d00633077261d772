// SPDX-License-Identifier: Apache-2.0
// Network namespaces. A socket belongs for life to the namespace that was
// current on the thread that created it, so creating a pod-side socket means
// entering the pod's namespace for exactly one socket(2) call.
#pragma once

#include <napi.h>

namespace skein {

// openNetns(path: string): number
// Opens a netns file (/proc/<pid>/ns/net, /run/netns/<name>, a bind mount)
// read-only and close-on-exec; the caller owns the returned fd.
Napi::Value OpenNetns(const Napi::CallbackInfo& info);

// createSocket(family: 4|6, kind: 'stream'|'dgram', netnsFd: number): number
// Returns a non-blocking, close-on-exec socket created inside the namespace
// `netnsFd` refers to (-1: the current one). The calling thread is back in its
// own namespace before this returns, also when socket(2) fails.
Napi::Value CreateSocket(const Napi::CallbackInfo& info);

void InitNetns(Napi::Env env, Napi::Object exports);

}  // namespace skein
