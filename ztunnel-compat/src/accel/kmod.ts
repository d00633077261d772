// SPDX-License-Identifier: Apache-2.0
// The kernel module path (kmod/, docs/kernel.md): whether this kernel could
// carry HBONE tunnels' DATA frames itself, over kTLS. A probe of what the
// kernel has loaded, not a version check: the module live in sysfs, and the
// kernel's tls (its per-netns /proc/net/tls_stat, or the module in sysfs).
// Not tcp_available_ulp: that sysctl exists only in the host's network
// namespace, and Skein runs in its own. Reported in config_dump and /metrics
// like the eBPF paths. Active when the module, kTLS and the native HBONE
// engine are all there: the engine then carries each outbound tunnel on the
// module (bpf/src/hbone/ktls.cc).
import fs from 'node:fs';
import path from 'node:path';
import type { FastpathState } from './probe.ts';

/** The module's name and TCP ULP name: SKEIN_HBONE_ULP_NAME in kmod/skein_hbone.h (checked by a test). */
export const KMOD_ULP_NAME = 'skein_hbone';
export const KMOD_PATH = 'kmod-hbone';

export interface KmodFacts {
  /** /sys/module/skein_hbone/initstate says "live". */
  moduleLive: boolean;
  /** kTLS is in this kernel: /proc/net/tls_stat or /sys/module/tls. */
  ktls: boolean;
}

export function readKmodFacts(roots: { sys: string; proc: string } = { sys: '/sys', proc: '/proc' }): KmodFacts {
  let moduleLive = false;
  try {
    moduleLive = fs.readFileSync(path.join(roots.sys, 'module', KMOD_ULP_NAME, 'initstate'), 'utf8').trim() === 'live';
  } catch {
    moduleLive = false;
  }
  const ktls = fs.existsSync(path.join(roots.proc, 'net/tls_stat')) || fs.existsSync(path.join(roots.sys, 'module/tls'));
  return { moduleLive, ktls };
}

/**
 * Whether outbound tunnels go to the module. `engine` says whether the
 * native HBONE engine (which does the hand-over) is active, or why not.
 */
export function decideKmod(mode: 'auto' | 'off', f: KmodFacts, engine: { active: boolean; reason?: string | undefined } = { active: false }): FastpathState {
  if (mode === 'off') return { active: false, reason: 'SKEIN_KERNEL_FASTPATH=off' };
  const missing: string[] = [];
  if (!f.moduleLive) missing.push(`the ${KMOD_ULP_NAME} module (kmod/, see docs/kernel.md)`);
  if (!f.ktls) missing.push('kTLS (the tls module)');
  if (!engine.active) missing.push(`the native HBONE engine (SKEIN_HBONE_ENGINE=native${engine.reason === undefined ? '' : `: ${engine.reason}`})`);
  if (missing.length > 0) return { active: false, reason: `missing: ${missing.join('; ')}` };
  return { active: true, reason: 'module, kTLS and the native HBONE engine present' };
}
