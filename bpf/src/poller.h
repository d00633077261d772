// SPDX-License-Identifier: Apache-2.0
// new Poller(fd, onEvent(status: number, events: number))
// A libuv poll handle on Node's own event loop, for fds Node cannot wrap
// (SOCK_SEQPACKET, later BPF ring buffers). It only says "readable" or
// "writable"; the reads and writes are separate non-blocking calls.
#pragma once

#include <napi.h>
#include <uv.h>

namespace skein {

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit Poller(const Napi::CallbackInfo& info);
  ~Poller() override;

 private:
  // start(events: number): watch for UV_READABLE | UV_WRITABLE.
  Napi::Value Start(const Napi::CallbackInfo& info);
  // stop(): stop watching; start() may be called again.
  Napi::Value Stop(const Napi::CallbackInfo& info);
  // close(): release the handle. The fd stays open; the caller closes it.
  Napi::Value Close(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  void Release();

  uv_poll_t* handle_ = nullptr;  // freed in uv_close's callback
  Napi::FunctionReference callback_;
  bool active_ = false;  // holds a reference to this object while polling
};

}  // namespace skein
