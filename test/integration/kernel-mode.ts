// SPDX-License-Identifier: Apache-2.0
// SKEIN_KERNEL_FASTPATH for the daemons of the data-path suites: `auto` (the
// product's default) unless a `*.fastpath-off.test.ts` wrapper asks for `off`,
// so every HBONE-issue test runs both ways.
export function kernelMode(): 'auto' | 'off' {
  return process.env.SKEIN_TEST_KERNEL_FASTPATH === 'off' ? 'off' : 'auto';
}

/**
 * SKEIN_HBONE_ENGINE for the same daemons: `js` unless a
 * `*.native-engine.test.ts` wrapper asks for `native` (docs/native-engine.md).
 */
export function hboneEngineMode(): 'native' | 'js' {
  return process.env.SKEIN_TEST_HBONE_ENGINE === 'native' ? 'native' : 'js';
}
