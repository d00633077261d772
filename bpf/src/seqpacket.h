// SPDX-License-Identifier: Apache-2.0
// Unix SOCK_SEQPACKET sockets with SCM_RIGHTS: the transport of istio-cni's
// ZDS protocol, which hands each pod's netns fd to the node proxy. All calls
// are non-blocking; the TypeScript side drives them from a Poller.
#pragma once

#include <napi.h>

namespace skein {

void InitSeqpacket(Napi::Env env, Napi::Object exports);

}  // namespace skein
