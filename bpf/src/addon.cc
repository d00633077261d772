// SPDX-License-Identifier: Apache-2.0
// The one native addon: what Node lacks for a node proxy, and nothing else.
// Typed for TypeScript in lib/addon.d.ts.
#include <napi.h>

#include "bpffs.h"
#include "ebpf.h"
#include "libbpf.h"
#include "netns.h"
#include "poller.h"
#include "process.h"
#include "seqpacket.h"
#include "sockets.h"

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  skein::InitSockets(env, exports);  // first: it creates `constants`
  skein::InitNetns(env, exports);
  skein::InitSeqpacket(env, exports);
  skein::Poller::Init(env, exports);
  skein::InitLibbpf(env, exports);
  skein::InitEbpf(env, exports);  // after InitSockets: extends `constants`
  skein::InitBpffs(env, exports);  // likewise
  skein::InitProcess(env, exports);
  return exports;
}

NODE_API_MODULE(skein, InitAddon)
