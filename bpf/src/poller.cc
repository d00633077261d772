// SPDX-License-Identifier: Apache-2.0
#include "poller.h"

#include "errors.h"

namespace skein {

void Poller::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "Poller",
                                   {
                                       InstanceMethod("start", &Poller::Start),
                                       InstanceMethod("stop", &Poller::Stop),
                                       InstanceMethod("close", &Poller::Close),
                                   });
  exports.Set("Poller", cls);
  Napi::Object c = exports.Get("constants").As<Napi::Object>();
  c.Set("UV_READABLE", static_cast<int>(UV_READABLE));
  c.Set("UV_WRITABLE", static_cast<int>(UV_WRITABLE));
}

Poller::Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
  static const char* usage =
      "new Poller(fd: number, onEvent: (status: number, events: number) => void)";
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, usage);
  if (info.Length() < 2 || !info[1].IsFunction()) ThrowUsage(env, usage);
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok)
    throw Napi::Error::New(env, "Poller: no event loop");
  handle_ = new uv_poll_t;
  int rc = uv_poll_init(loop, handle_, fd);
  if (rc < 0) {
    delete handle_;
    handle_ = nullptr;
    throw ErrnoError(env, "uv_poll_init", -rc);
  }
  handle_->data = this;
  callback_ = Napi::Persistent(info[1].As<Napi::Function>());
}

Poller::~Poller() { Release(); }

void Poller::Release() {
  if (handle_ == nullptr) return;
  handle_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(handle_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  handle_ = nullptr;
}

Napi::Value Poller::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int events = ArgInt(info, 0, "poller.start(events: number)");
  if (handle_ == nullptr) throw Napi::Error::New(env, "Poller is closed");
  int rc = uv_poll_start(handle_, events, OnPoll);
  if (rc < 0) throw ErrnoError(env, "uv_poll_start", -rc);
  // An active poller must not be collected while only libuv points at it.
  if (!active_) {
    Ref();
    active_ = true;
  }
  return env.Undefined();
}

Napi::Value Poller::Stop(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) uv_poll_stop(handle_);
  if (active_) {
    Unref();
    active_ = false;
  }
  return info.Env().Undefined();
}

Napi::Value Poller::Close(const Napi::CallbackInfo& info) {
  Stop(info);
  Release();
  callback_.Reset();
  return info.Env().Undefined();
}

void Poller::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<Poller*>(handle->data);
  if (self == nullptr || self->callback_.IsEmpty()) return;
  Napi::Env env = self->callback_.Env();
  Napi::HandleScope scope(env);
  try {
    // MakeCallback, not Call: it runs the microtask and nextTick queues
    // afterwards, as any libuv-driven callback in Node does.
    self->callback_.MakeCallback(env.Global(),
                                 {Napi::Number::New(env, status),
                                  Napi::Number::New(env, events)});
  } catch (const Napi::Error& e) {
    napi_fatal_exception(env, e.Value());
  }
}

}  // namespace skein
