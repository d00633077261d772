// SPDX-License-Identifier: Apache-2.0
// Build facts, shown by `skein version` and (later) the istio_build metric.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pkg = require('../package.json') as { version: string };

export const version: string = pkg.version;
