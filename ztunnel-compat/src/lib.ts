// SPDX-License-Identifier: Apache-2.0
// @skein/ztunnel-compat as a library (for the lab, the demo and tests).
export { version } from './version.ts';
export { parseArgs, UsageError, type Command } from './cli.ts';
