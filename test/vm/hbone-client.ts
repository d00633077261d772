// SPDX-License-Identifier: Apache-2.0
// Runs inside the VM (under Node): Skein's userspace HBONE client
// (proxy/hbone/client.ts) against test/vm/hbone-peer.ts, with the client
// certificate the peer wrote. Sends BYTES through the server's echo and back,
// checks them, and prints "bench userspace bytes=N ms=T cpu_ms=C" (C: this
// process's CPU during the transfer): the baseline the module's tunnel
// (kmod/test/hbone_interop.c) is compared with by npm run bench -- kmod.
import fs from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { WorkloadCertificate } from '../../ztunnel-compat/src/identity/certificate.ts';
import { HboneClient } from '../../ztunnel-compat/src/proxy/hbone/client.ts';
import { matchesPattern, patternAt } from './bench-pattern.ts';

const [port, dir, bytesArg] = process.argv.slice(2);
const bytes = Number(bytesArg);
if (port === undefined || dir === undefined || !(bytes > 0)) throw new Error('usage: hbone-client.ts PORT CERTDIR BYTES');
// The identities hbone-peer.ts's certificates carry (proxy/hbone/testing.ts).
const clientId = { trustDomain: 'cluster.local', namespace: 'client-ns', serviceAccount: 'client-sa' };
const serverId = { trustDomain: 'cluster.local', namespace: 'server-ns', serviceAccount: 'server-sa' };
const pems = (f: string): string[] => fs.readFileSync(path.join(dir, f), 'utf8').split(/(?<=-----END CERTIFICATE-----\n)/).filter((p) => p.includes('BEGIN'));
const cert = WorkloadCertificate.fromCertChain(clientId, [...pems('client.pem'), ...pems('ca.pem')], fs.readFileSync(path.join(dir, 'client.key'), 'utf8'));

const client = new HboneClient();
const tunnel: Duplex = await client.connect({
  cert, expected: [serverId], upstream: { ip: '127.0.0.1', port: Number(port) }, authority: '127.0.0.1:9',
});
const cpu0 = process.cpuUsage();
const t0 = performance.now();
let got = 0;
let bad = -1;
const read = new Promise<void>((resolve, reject) => {
  tunnel.on('data', (chunk: Buffer) => {
    if (bad < 0 && !matchesPattern(got, chunk)) bad = got;
    got += chunk.length;
    if (got >= bytes) resolve();
  });
  tunnel.once('error', reject);
  tunnel.once('end', () => { if (got < bytes) reject(new Error(`tunnel ended after ${got} bytes`)); });
});
const CHUNK = 32 * 1024;
for (let off = 0; off < bytes; off += CHUNK) {
  if (!tunnel.write(patternAt(off, Math.min(CHUNK, bytes - off)))) await new Promise((r) => tunnel.once('drain', r));
}
await read;
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
if (bad >= 0 || got !== bytes) throw new Error(`${got} bytes back, first difference at ${bad}`);
console.log(`bench userspace bytes=${bytes} ms=${ms.toFixed(0)} cpu_ms=${((cpu.user + cpu.system) / 1000).toFixed(0)}`);
tunnel.destroy();
await client.close();
