// SPDX-License-Identifier: Apache-2.0
// Loads the addon that setup builds (bpf/build/Release/skein.node).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { Native } from './addon.d.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const candidates = [
  path.join(here, '..', 'build', 'Release', 'skein.node'),
  path.join(here, '..', 'build', 'Debug', 'skein.node'),
];

function load(): Native {
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const file of candidates) {
    try {
      return require(file) as Native;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== 'MODULE_NOT_FOUND') throw err;
      tried.push(file);
    }
  }
  throw new Error(`skein native addon not built (tried ${tried.join(', ')}); run 'npm run setup'`);
}

export const native: Native = load();
export const constants = native.constants;
