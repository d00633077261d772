// SPDX-License-Identifier: Apache-2.0
// For tests that check the daemon's code against a list it must keep in step
// with (SKEIN_VARS, log SCOPES): every capture of `pattern` in the product's
// own sources (not tests, not test helpers).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const SRC = new URL('.', import.meta.url).pathname;

/** The first defined capture group of each match of `pattern` (a /g regex), over every product source file. */
export function capturesInSources(pattern: RegExp): Set<string> {
  const out = new Set<string>();
  const files = (readdirSync(SRC, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('testing.ts'));
  for (const f of files) {
    for (const m of readFileSync(join(SRC, f), 'utf8').matchAll(pattern)) {
      const hit = (m.slice(1) as (string | undefined)[]).find((g) => g !== undefined);
      if (hit !== undefined) out.add(hit);
    }
  }
  return out;
}
