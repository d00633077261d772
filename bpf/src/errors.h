// SPDX-License-Identifier: Apache-2.0
// JavaScript errors for failed system calls, shaped like Node's own:
// `code` is the errno name (EPERM, ENOENT…), `errno` the number, `syscall`
// the call that failed. Argument errors are TypeErrors with a usage line.
#pragma once

#include <napi.h>
#include <string>

namespace skein {

// Builds (does not throw) an Error for `err` returned by `syscall`.
Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err,
                       const std::string& detail = "");

// Throws ErrnoError(…) for the current errno.
[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall,
                             const std::string& detail = "");

// Throws a TypeError whose message starts with "Usage: ".
[[noreturn]] void ThrowUsage(Napi::Env env, const char* usage);

// Argument readers: each throws a usage TypeError when the argument is missing
// or of the wrong type.
int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* usage);
int32_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* usage);
std::string ArgString(const Napi::CallbackInfo& info, size_t i,
                      const char* usage);

}  // namespace skein
