// SPDX-License-Identifier: Apache-2.0
// data-path.test.ts again with SKEIN_HBONE_ENGINE=native: outbound HBONE on
// the native engine passes the same end-to-end tests as the JavaScript path.
process.env.SKEIN_TEST_HBONE_ENGINE = 'native';
await import('./data-path.test.ts');
