// SPDX-License-Identifier: Apache-2.0
// @skein/waypoint: the PROXY v2 codec, waypoint object generation, `skein waypoint`.
export * from './manifest/index.ts';
export * from './cli/index.ts';
