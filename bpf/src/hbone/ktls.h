// SPDX-License-Identifier: Apache-2.0
// Outbound tunnels carried by the kernel module (kmod/, skein_hbone.h is the
// contract) over kTLS, when TypeScript says the module and kTLS are there
// (the engine's `kmod` option; the engine decides nothing itself).
//
// A tunnel gets a connection of its own (the module carries one stream per
// connection): the skein_hbone ULP on the connected socket, the TLS 1.3
// handshake and the SPIFFE check in userspace exactly as a pooled session's,
// kTLS keyed from the traffic secrets (record sequence 0 both ways: nothing
// was sent or read under them), the HTTP/2 preface, SETTINGS and CONNECT
// through nghttp2 over the kTLS socket (fed one whole frame at a time, so the
// socket is at a frame boundary when the 200 has been read), then
// SKEIN_HBONE_STREAM and the pod socket and the tunnel paired with splice():
// the bytes go pod → pipe → module (DATA frames) → kTLS and back without
// entering userspace.
//
// A frame the module does not handle (ENOMSG): the windows from
// SKEIN_HBONE_INFO, SKEIN_HBONE_DETACH, then userspace reads the raw frames
// the module held back and handles them (SETTINGS acknowledged and applied,
// PING answered, WINDOW_UPDATE applied, DATA into the pod's pipe with its
// window given back, RST_STREAM and a GOAWAY that excludes the stream end
// the tunnel, anything else ignored as RFC 9113 allows), and hands the stream
// back to the module once it holds nothing more. No byte is lost.
#pragma once

#include <openssl/ssl.h>

#include <string>

#include "engine.h"

namespace skein::hbone {

class Worker;

// Worker thread: carries `req` on a connection of its own through the
// module. A socket that will not take the ULP or kTLS keys (nothing of the
// pod read yet) goes back to the pooled userspace path.
void StartKtlsTunnel(Worker* w, OutboundRequest req);

// Worker thread: ends the module-carried tunnel `id` (closeOutbound); false
// when this worker has none by that id.
bool CloseKtlsTunnel(Worker* w, uint32_t id, const std::string& why);

// Worker thread, at engine stop: ends every module-carried tunnel.
void CloseKtlsTunnels(Worker* w);

// The client SSL_CTX's key-log callback: keeps the traffic secrets of a
// handshake made for a module-carried tunnel (no-op for any other).
void KtlsKeylog(const SSL* ssl, const char* line);

}  // namespace skein::hbone
