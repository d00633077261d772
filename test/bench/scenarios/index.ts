// SPDX-License-Identifier: Apache-2.0
// Every scenario `npm run bench -- <name>` knows. A new scenario is one file
// in this folder and one line here.
import type { Scenario } from '../scenario.ts';
import { hbone } from './hbone.ts';
import { reference } from './reference.ts';
import { connectlb } from './connectlb.ts';
import { samenode } from './samenode.ts';

export const scenarios: readonly Scenario[] = [reference, hbone, samenode, connectlb];

export function findScenario(name: string): Scenario | undefined {
  return scenarios.find((s) => s.name === name);
}
