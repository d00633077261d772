// SPDX-License-Identifier: Apache-2.0
// `npm run fuzz -- [--seconds N] [--json] [--seed N] [--out DIR] [target...]`:
// fuzzes each parser that takes untrusted input for N seconds (default 30)
// and prints, per target, executions, findings (crashes and hangs), corpus
// size and how many inputs reached new coverage; --json prints one object.
// Findings are written to DIR (default: a skein-fuzz folder in the temp
// directory). Exit 1 when anything was found, 2 on bad usage.
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fuzzReport, fuzzTable } from './report.ts';
import { runTargets } from './run.ts';
import { targetNames } from './targets/index.ts';

const usage = `usage: npm run fuzz -- [--seconds N] [--json] [--seed N] [--out DIR] [target...]\ntargets: ${targetNames.join(', ')}\n`;
let values;
let positionals;
try {
  ({ values, positionals } = parseArgs({
    options: { seconds: { type: 'string' }, json: { type: 'boolean' }, seed: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  }));
} catch (err) {
  process.stderr.write(`fuzz: ${(err as Error).message}\n${usage}`);
  process.exit(2);
}
if (values.help === true) {
  process.stdout.write(usage);
  process.exit(0);
}
const seconds = Number(values.seconds ?? '30');
const seed = Number(values.seed ?? String(Date.now() % 0x7fffffff));
const unknown = positionals.find((t) => !targetNames.includes(t));
if (!(seconds > 0 && seconds <= 86_400) || !Number.isInteger(seed) || unknown !== undefined) {
  process.stderr.write(`fuzz: ${unknown !== undefined ? `no target '${unknown}'` : 'bad --seconds or --seed'}\n${usage}`);
  process.exit(2);
}
const outDir = values.out ?? path.join(os.tmpdir(), 'skein-fuzz');
const log = (line: string): void => { process.stderr.write(`fuzz: ${line}\n`); };
const stats = await runTargets(positionals.length > 0 ? positionals : targetNames, { seconds, seed, outDir, log });
const report = fuzzReport(stats, seed);
process.stdout.write(values.json === true ? `${JSON.stringify(report)}\n` : fuzzTable(report));
process.exit(report.findings > 0 ? 1 : 0);
