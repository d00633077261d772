// SPDX-License-Identifier: Apache-2.0
#include "errors.h"

#include <cerrno>
#include <cstring>
#include <uv.h>

namespace skein {

Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err,
                       const std::string& detail) {
  // On Unix libuv's error codes are the negated errno values, so uv_err_name
  // gives the same names Node uses for its own system errors.
  const char* code = uv_err_name(-err);
  std::string msg = std::string(syscall) + " failed: " + std::strerror(err) +
                    " (" + code + ")";
  if (!detail.empty()) msg += ": " + detail;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

void ThrowErrno(Napi::Env env, const char* syscall, const std::string& detail) {
  throw ErrnoError(env, syscall, errno, detail);
}

void ThrowUsage(Napi::Env env, const char* usage) {
  Napi::TypeError e =
      Napi::TypeError::New(env, std::string("Usage: ") + usage);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw e;
}

int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowUsage(info.Env(), usage);
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 0x7fffffff || v != static_cast<int>(v))
    ThrowUsage(info.Env(), usage);
  return static_cast<int>(v);
}

int32_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowUsage(info.Env(), usage);
  return info[i].As<Napi::Number>().Int32Value();
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i,
                      const char* usage) {
  if (info.Length() <= i || !info[i].IsString()) ThrowUsage(info.Env(), usage);
  return info[i].As<Napi::String>().Utf8Value();
}

}  // namespace skein
