// SPDX-License-Identifier: Apache-2.0
// Process-wide resources Node has no API for: the open-files limit and the
// C allocator's free memory.
#pragma once

#include <napi.h>

namespace skein {

// raiseNofileLimit(): { before: number, soft: number, hard: number }
// Raises the soft RLIMIT_NOFILE to the hard limit (never lowers it), as
// ztunnel does at start. Throws when setrlimit(2) fails.
Napi::Value RaiseNofileLimit(const Napi::CallbackInfo& info);

// mallocTrim(): boolean
// glibc malloc_trim(0): gives the heap's free pages (every arena's) back to
// the kernel. True when memory was released.
Napi::Value MallocTrim(const Napi::CallbackInfo& info);

// memoryPressure(): void
// Tells V8 memory is critically short: it runs a memory-reducing full
// collection at once and gives its freed pages back to the kernel (ordinary
// collections keep them resident for reuse). A pause as long as a full GC.
Napi::Value MemoryPressure(const Napi::CallbackInfo& info);

void InitProcess(Napi::Env env, Napi::Object exports);

}  // namespace skein
