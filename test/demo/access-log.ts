// SPDX-License-Identifier: Apache-2.0
// Reading the daemons' access-log lines back (JSON lines, `scope: access`) to
// say what Skein decided for a flow, in its own words.
import fs from 'node:fs';

export type AccessLine = Record<string, unknown> & { message?: string; msg?: string };

/** A log file's size now: lines after it belong to what happens next. */
export function mark(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** The access-log lines written to `file` since `from`. */
export function accessSince(file: string, from: number): AccessLine[] {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - from));
    fs.readSync(fd, buf, 0, buf.length, from);
    return parseAccess(buf.toString());
  } finally {
    fs.closeSync(fd);
  }
}

export function parseAccess(text: string): AccessLine[] {
  const out: AccessLine[] = [];
  for (const l of text.split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      const o = JSON.parse(l) as AccessLine;
      if (o.scope === 'access') out.push(o);
    } catch { /* a partial last line */ }
  }
  return out;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');

/** One line, shortened for a person: "inbound default/client → default/server: connection complete". */
export function describe(l: AccessLine): string {
  const who = (side: 'src' | 'dst'): string => {
    const w = str(l[`${side}.workload`]);
    return w === '' ? str(l[`${side}.addr`]) : `${str(l[`${side}.namespace`])}/${w}`;
  };
  const err = str(l.error);
  return `${str(l.direction)} ${who('src')} → ${who('dst')}: ${str(l.message ?? l.msg)}${err === '' ? '' : ` (${err})`}`;
}
