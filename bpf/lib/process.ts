// SPDX-License-Identifier: Apache-2.0
// Process-wide resources Node has no API for (src/process.cc).
import { native } from './native.ts';

/** Soft RLIMIT_NOFILE raised to the hard limit (never lowered); -1 is unlimited. */
export function raiseNofileLimit(): { before: number; soft: number; hard: number } {
  return native.raiseNofileLimit();
}

/** glibc's malloc_trim(0): the allocator's free pages back to the kernel. True when some were. */
export function mallocTrim(): boolean {
  return native.mallocTrim();
}

/** A memory-reducing V8 collection now (MemoryPressureNotification, critical): its freed pages go back to the kernel. */
export function memoryPressure(): void {
  native.memoryPressure();
}
