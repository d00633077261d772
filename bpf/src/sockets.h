// SPDX-License-Identifier: Apache-2.0
// Socket options and addresses Node does not expose: SO_MARK, IP_TRANSPARENT,
// IP_FREEBIND, SO_REUSEPORT before bind, SO_ORIGINAL_DST, SO_NETNS_COOKIE.
// Every function takes a plain fd; Node owns the socket afterwards.
#pragma once

#include <napi.h>

namespace skein {

void InitSockets(Napi::Env env, Napi::Object exports);

}  // namespace skein
