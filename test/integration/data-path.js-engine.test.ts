// SPDX-License-Identifier: Apache-2.0
// data-path.test.ts again with SKEIN_HBONE_ENGINE=js: the JavaScript HBONE
// path, the reference and the fallback when the native engine (the default)
// is not built, passes the same end-to-end tests.
process.env.SKEIN_TEST_HBONE_ENGINE = 'js';
await import('./data-path.test.ts');
