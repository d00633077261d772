// SPDX-License-Identifier: Apache-2.0
// SKEIN_KERNEL_FASTPATH for the daemons of the data-path suites: `auto` (the
// product's default) unless a `*.fastpath-off.test.ts` wrapper asks for `off`,
// so every HBONE-issue test runs both ways.
export function kernelMode(): 'auto' | 'off' {
  return process.env.SKEIN_TEST_KERNEL_FASTPATH === 'off' ? 'off' : 'auto';
}

/**
 * SKEIN_HBONE_ENGINE for the same daemons: `native` (the product's default)
 * unless a `*.js-engine.test.ts` wrapper asks for `js`, the JavaScript path
 * that stays the reference and the fallback (docs/native-engine.md).
 */
export function hboneEngineMode(): 'native' | 'js' {
  return process.env.SKEIN_TEST_HBONE_ENGINE === 'js' ? 'js' : 'native';
}
