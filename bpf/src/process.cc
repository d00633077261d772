// SPDX-License-Identifier: Apache-2.0
#include "process.h"

#include <malloc.h>
#include <sys/resource.h>
#include <v8.h>

#include "errors.h"

namespace skein {

namespace {

// RLIM_INFINITY as a JS number: -1 (it does not fit a double exactly).
double AsNumber(rlim_t v) { return v == RLIM_INFINITY ? -1 : static_cast<double>(v); }

}  // namespace

Napi::Value RaiseNofileLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct rlimit lim {};
  if (getrlimit(RLIMIT_NOFILE, &lim) < 0) ThrowErrno(env, "getrlimit", "RLIMIT_NOFILE");
  rlim_t before = lim.rlim_cur;
  if (lim.rlim_cur != lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) < 0) ThrowErrno(env, "setrlimit", "RLIMIT_NOFILE");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("before", AsNumber(before));
  out.Set("soft", AsNumber(lim.rlim_cur));
  out.Set("hard", AsNumber(lim.rlim_max));
  return out;
}

Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
}

Napi::Value MemoryPressure(const Napi::CallbackInfo& info) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  // On the isolate's own thread this runs the memory-reducing collection
  // now; back to kNone after, so V8 does not stay in its pressure mode.
  isolate->MemoryPressureNotification(v8::MemoryPressureLevel::kCritical);
  isolate->MemoryPressureNotification(v8::MemoryPressureLevel::kNone);
  return info.Env().Undefined();
}

void InitProcess(Napi::Env env, Napi::Object exports) {
  exports.Set("raiseNofileLimit", Napi::Function::New(env, RaiseNofileLimit, "raiseNofileLimit"));
  exports.Set("memoryPressure", Napi::Function::New(env, MemoryPressure, "memoryPressure"));
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
}

}  // namespace skein
