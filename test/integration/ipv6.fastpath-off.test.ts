// SPDX-License-Identifier: Apache-2.0
// ipv6.test.ts again with SKEIN_KERNEL_FASTPATH=off: the HBONE data path's
// tests hold with the kernel fast paths off as well as on.
process.env.SKEIN_TEST_KERNEL_FASTPATH = 'off';
await import('./ipv6.test.ts');
