// SPDX-License-Identifier: Apache-2.0
// Runs inside the VM (under Node, from the 9p share): Skein's own userspace
// HBONE server (proxy/hbone/server.ts, as the daemon runs it on :15008) in
// front of an echo server, with certificates from a local CA. It writes the
// client's and the server's certificates and keys and the root to the
// directory it is given, for the C programs that drive the kernel module,
// prints "ready PORT", and exits by itself after a bounded time.
import fs from 'node:fs';
import path from 'node:path';
import { HboneServer } from '../../ztunnel-compat/src/proxy/hbone/server.ts';
import { certs, connectUpstream, echoServer } from '../../ztunnel-compat/src/proxy/hbone/testing.ts';

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: hbone-peer.ts DIR');
const c = await certs();
const echo = await echoServer();
let tunnels = 0;
const server = new HboneServer(c.server, {
  handler: () => { tunnels++; return connectUpstream(echo.port); },
  onReject: (r) => { console.log(`reject ${JSON.stringify(r)}`); },
  onHandshakeReject: (r) => { console.log(`handshake-reject ${r.error.message}`); },
});
const addr = await server.listen({ port: 0, host: '127.0.0.1' });
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(path.join(dir, 'client.pem'), c.client.chainPems.map((p) => `${p.trimEnd()}\n`).join(''));
fs.writeFileSync(path.join(dir, 'client.key'), `${c.client.keyPem.trimEnd()}\n`);
// The server's too, for kmod/test/hbone_interop_server.c (the other way round).
fs.writeFileSync(path.join(dir, 'server.pem'), c.server.chainPems.map((p) => `${p.trimEnd()}\n`).join(''));
fs.writeFileSync(path.join(dir, 'server.key'), `${c.server.keyPem.trimEnd()}\n`);
fs.writeFileSync(path.join(dir, 'ca.pem'), c.client.rootPems.map((p) => `${p.trimEnd()}\n`).join(''));

console.log(`ready ${addr.port}`);
const stop = async (): Promise<void> => {
  console.log(`tunnels ${tunnels}`);
  await server.close(100);
  await echo.close();
  process.exit(0);
};
process.once('SIGTERM', () => { void stop(); });
setTimeout(() => { void stop(); }, 300_000).unref();
setInterval(() => { /* stay up until told */ }, 1_000);
