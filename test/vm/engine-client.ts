// SPDX-License-Identifier: Apache-2.0
// Runs inside the VM (under Node): the native HBONE engine's outbound client
// (proxy/hbone/native-client.ts, bpf/src/hbone) against test/vm/hbone-peer.ts
// (Skein's userspace HBONE server in front of an echo, another process),
// with the kernel module carrying the tunnel (MODE kmod) or the engine's
// own userspace TLS + nghttp2 (MODE userspace). A pod socket pair stands in
// for a pod: the app end writes BYTES, reads them back and checks each.
//
//   engine-client.ts PORT CERTDIR BYTES MODE [fallback]
//
// Prints "ok - NAME" / "not ok - NAME: why" lines, and "bench engine-MODE
// bytes=N ms=T cpu_ms=C" for npm run bench -- kmod, C the CPU time of the
// engine's worker thread (user and the kernel time of its syscalls: splice,
// the module's framing, kTLS's crypto), not of the JavaScript app end. With
// "fallback", a second run goes to an HTTP/2 peer in this process (Node's
// http2) that sends SETTINGS and PING in the middle of the stream: frames
// the module gives back to userspace (ENOMSG), which the engine must handle
// and then hand the stream back, without losing a byte.
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { WorkloadCertificate } from '../../ztunnel-compat/src/identity/certificate.ts';
import { carriedEnd } from '../../ztunnel-compat/src/proxy/carried.ts';
import { NativeHboneClient } from '../../ztunnel-compat/src/proxy/hbone/native-client.ts';
import { matchesPattern, patternAt } from './bench-pattern.ts';

const [portArg, dir, bytesArg, mode, extra] = process.argv.slice(2);
const bytes = Number(bytesArg);
if (portArg === undefined || dir === undefined || !(bytes > 0) || (mode !== 'kmod' && mode !== 'userspace')) {
  throw new Error('usage: engine-client.ts PORT CERTDIR BYTES kmod|userspace [fallback]');
}
const name = `engine/${mode}`;
// Bounded: the suite's VM has its own limit, this is the program's.
setTimeout(() => { console.log(`not ok - ${name}: timed out`); process.exit(1); }, 40_000).unref();

// The identities hbone-peer.ts's certificates carry (proxy/hbone/testing.ts).
const clientId = { trustDomain: 'cluster.local', namespace: 'client-ns', serviceAccount: 'client-sa' };
const serverId = { trustDomain: 'cluster.local', namespace: 'server-ns', serviceAccount: 'server-sa' };
const read = (f: string): string => fs.readFileSync(path.join(dir, f), 'utf8');
const pems = (f: string): string[] => read(f).split(/(?<=-----END CERTIFICATE-----\n)/).filter((p) => p.includes('BEGIN'));
const cert = WorkloadCertificate.fromCertChain(clientId, [...pems('client.pem'), ...pems('ca.pem')], read('client.key'));

const client = new NativeHboneClient({ workers: 1, kmod: mode === 'kmod' });
const accepted: net.Socket[] = [];
const pods = net.createServer({ allowHalfOpen: true }, (s) => { accepted.push(s); });
await new Promise<void>((resolve) => { pods.listen(0, '127.0.0.1', resolve); });

/** CPU ms of the engine's worker threads ("skein-hbone-N"), from /proc/self/task. */
function engineCpuMs(): number {
  const tick = 100;  // USER_HZ: clock ticks per second in /proc stat files
  let ticks = 0;
  for (const tid of fs.readdirSync('/proc/self/task')) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    } catch {
      continue;
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    if (!comm.startsWith('skein-hbone-')) continue;
    // Fields after "(comm) ": state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(rest[11]) + Number(rest[12]);
  }
  return (ticks * 1000) / tick;
}

/** One tunnel to PORT, BYTES through the echo and back; the figures, or why not. */
async function run(port: number): Promise<{ ms: number; cpuMs: number; sent: number; recv: number; error: string | undefined }> {
  const app = net.connect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port, allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => { app.once('connect', resolve); app.once('error', reject); });
  while (accepted.length === 0) await new Promise((r) => setTimeout(r, 2));
  const pod = accepted.shift() as net.Socket;
  const tunnel = await client.open(pod, { cert, expected: [serverId], upstream: { ip: '127.0.0.1', port }, authority: '127.0.0.1:9' });
  const cpu0 = engineCpuMs();
  const t0 = performance.now();
  let got = 0;
  let bad = -1;
  const back = new Promise<void>((resolve, reject) => {
    app.on('data', (chunk: Buffer) => {
      if (bad < 0 && !matchesPattern(got, chunk)) bad = got;
      got += chunk.length;
    });
    app.once('error', reject);
    app.once('end', () => { resolve(); });
  });
  const CHUNK = 32 * 1024;  // patternAt makes at most one period (65521 bytes)
  for (let off = 0; off < bytes; off += CHUNK) {
    if (!app.write(patternAt(off, Math.min(CHUNK, bytes - off)))) await new Promise((r) => app.once('drain', r));
  }
  app.end();
  await back;
  const ms = performance.now() - t0;
  const end = await tunnel.done;
  const cpuMs = engineCpuMs() - cpu0;
  app.destroy();
  if (bad >= 0 || got !== bytes) return { ms, cpuMs: 0, sent: end.sent, recv: end.recv, error: `${got} bytes back, first difference at ${bad}` };
  return { ms, cpuMs, ...end };
}

function report(label: string, r: Awaited<ReturnType<typeof run>>, check: () => string | undefined): void {
  const why = r.error ?? (r.sent !== bytes || r.recv !== bytes ? `the engine counted ${r.sent} sent, ${r.recv} received` : check());
  console.log(why === undefined ? `ok - ${label} (${bytes} bytes each way, ${r.ms.toFixed(0)} ms)` : `not ok - ${label}: ${why}`);
}

try {
  const r = await run(Number(portArg));
  const st = client.stats();
  report(name, r, () => {
    if (mode === 'userspace') return st.kmodTunnels === 0 ? undefined : 'the module carried a tunnel it was not asked to';
    // The module's own counters (SKEIN_HBONE_INFO at the tunnel's end) say it carried every byte.
    if (st.kmodTunnels !== 1 || st.kmodDeclined !== 0) return `tunnels handed over ${st.kmodTunnels}, declined ${st.kmodDeclined}`;
    if (st.kmodTxBytes !== bytes || st.kmodRxBytes !== bytes) return `the module carried ${st.kmodTxBytes} out, ${st.kmodRxBytes} in`;
    return undefined;
  });
  if (r.error === undefined) console.log(`bench engine-${mode} bytes=${bytes} ms=${r.ms.toFixed(0)} cpu_ms=${r.cpuMs.toFixed(0)}`);

  if (extra === 'fallback') {
    // Node's http2 as the peer: CONNECT answered 200, the stream echoed, and
    // a SETTINGS (a new initial window) and a PING sent mid-stream.
    const peer = http2.createSecureServer({
      cert: read('server.pem'), key: read('server.key'), ca: read('ca.pem'), requestCert: true, rejectUnauthorized: true,
      minVersion: 'TLSv1.3', allowHTTP1: false,
    });
    let poked = false;
    let streams = 0;
    const sink = { done: (_r: { got: number; bad: number }): void => undefined };
    peer.on('stream', (stream, headers) => {
      streams++;
      if (headers[':method'] !== 'CONNECT' || headers[':authority'] === 'deny.test:9') {
        stream.respond({ ':status': 503 }, { endStream: true });
        return;
      }
      if (headers[':authority'] === 'sink.test:9') {
        // Ends its half at once, and reads nothing for a while: our side
        // sends on after the peer's END_STREAM, into a window that shuts.
        stream.respond({ ':status': 200 });
        stream.end();
        stream.pause();
        let got = 0;
        let bad = -1;
        stream.on('data', (d: Buffer) => {
          if (bad < 0 && !matchesPattern(got, d)) bad = got;
          got += d.length;
        });
        stream.on('end', () => { sink.done({ got, bad }); });
        setTimeout(() => { stream.resume(); }, 300);
        return;
      }
      if (headers[':authority'] === 'reset.test:9') {
        stream.respond({ ':status': 200 });
        stream.once('data', () => { stream.close(http2.constants.NGHTTP2_CANCEL); });
        return;
      }
      stream.respond({ ':status': 200 });
      let seen = 0;
      stream.on('data', (d: Buffer) => {
        seen += d.length;
        if (!poked && seen >= bytes / 4) {
          poked = true;
          stream.session?.settings({ initialWindowSize: 1 << 20 });
          stream.session?.ping(() => undefined);
        }
      });
      stream.pipe(stream);
    });
    await new Promise<void>((resolve) => { peer.listen(0, '127.0.0.1', resolve); });
    const before = client.stats();
    const f = await run((peer.address() as AddressInfo).port);
    const after = client.stats();
    report(`${name}-fallback`, f, () => {
      if (!poked) return 'the peer never sent its SETTINGS';
      if (mode === 'userspace') return undefined;
      if (after.kmodTunnels - before.kmodTunnels !== 1) return 'not handed to the module';
      if (after.kmodFallbacks - before.kmodFallbacks < 1) return 'the module gave no frame back';
      return undefined;
    });

    // A refusal (503) fails the tunnel with that status; a server whose
    // identity is not the expected one gets no CONNECT at all.
    const refused = async (over: { authority?: string; expected?: typeof serverId }): Promise<string> => {
      const app = net.connect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port });
      await new Promise<void>((resolve, reject) => { app.once('connect', resolve); app.once('error', reject); });
      while (accepted.length === 0) await new Promise((r) => setTimeout(r, 2));
      const pod = accepted.shift() as net.Socket;
      try {
        await client.open(pod, { cert, expected: [over.expected ?? serverId], upstream: { ip: '127.0.0.1', port: (peer.address() as AddressInfo).port }, authority: over.authority ?? '127.0.0.1:9' });
        return 'opened';
      } catch (err) {
        return (err as Error).message;
      } finally {
        app.destroy();
      }
    };
    // The peer ends first and its window shuts: every byte still arrives.
    {
      const app = net.connect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port, allowHalfOpen: true });
      await new Promise<void>((resolve, reject) => { app.once('connect', resolve); app.once('error', reject); });
      while (accepted.length === 0) await new Promise((r) => setTimeout(r, 2));
      const pod = accepted.shift() as net.Socket;
      const sunk = new Promise<{ got: number; bad: number }>((resolve) => { sink.done = resolve; });
      const tunnel = await client.open(pod, { cert, expected: [serverId], upstream: { ip: '127.0.0.1', port: (peer.address() as AddressInfo).port }, authority: 'sink.test:9' });
      let back = 0;
      const ended = new Promise<void>((resolve) => { app.on('data', (d: Buffer) => { back += d.length; }); app.once('end', resolve); });
      for (let off = 0; off < bytes; off += 32 * 1024) {
        if (!app.write(patternAt(off, Math.min(32 * 1024, bytes - off)))) await new Promise((r) => app.once('drain', r));
      }
      app.end();
      await ended;
      const got = await sunk;
      const end = await tunnel.done;
      app.destroy();
      const why = got.bad >= 0 || got.got !== bytes ? `the peer got ${got.got} bytes, first difference at ${got.bad}`
        : back !== 0 ? `${back} bytes came back from a peer that sent none`
          : end.error !== undefined || end.sent !== bytes ? `the tunnel ended with ${end.error ?? 'no error'}, ${end.sent} sent` : undefined;
      console.log(why === undefined ? `ok - ${name}-peer-ends-first` : `not ok - ${name}-peer-ends-first: ${why}`);
    }
    // RST_STREAM from the peer mid-stream: the tunnel ends with an error and
    // the app's socket is reset, not ended as if all were through.
    {
      const app = net.connect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port, allowHalfOpen: true });
      await new Promise<void>((resolve, reject) => { app.once('connect', resolve); app.once('error', reject); });
      while (accepted.length === 0) await new Promise((r) => setTimeout(r, 2));
      const pod = accepted.shift() as net.Socket;
      const tunnel = await client.open(pod, { cert, expected: [serverId], upstream: { ip: '127.0.0.1', port: (peer.address() as AddressInfo).port }, authority: 'reset.test:9' });
      // (Node's http2 ends its half before the RST_STREAM: the app may see
      // its end first, then the reset.)
      let how = 'closed without an error';
      const appEnd = new Promise<void>((resolve) => {
        app.on('data', () => undefined);
        app.once('error', (e: NodeJS.ErrnoException) => { how = e.code ?? e.message; });
        app.once('close', () => { resolve(); });
      });
      app.write(patternAt(0, 32 * 1024));
      const end = await tunnel.done;
      // After its end the app reads no more, so the reset shows on a write.
      app.write(Buffer.alloc(1));
      await Promise.race([appEnd, new Promise((r) => setTimeout(r, 5000))]);
      app.destroy();
      const why = end.error === undefined ? 'the tunnel ended without an error' : how !== 'ECONNRESET' && how !== 'EPIPE' ? `the app saw ${how}` : undefined;
      console.log(why === undefined ? `ok - ${name}-peer-resets (${end.error})` : `not ok - ${name}-peer-resets: ${why}`);
    }
    // The pod leaves the mesh (its listeners call the end hook carried.ts
    // keeps, as at a Del): the tunnel ends with that reason, the app gets a
    // FIN (not a reset) after what was echoed back, and the module carried it.
    {
      const app = net.connect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port, allowHalfOpen: true });
      await new Promise<void>((resolve, reject) => { app.once('connect', resolve); app.once('error', reject); });
      while (accepted.length === 0) await new Promise((r) => setTimeout(r, 2));
      const pod = accepted.shift() as net.Socket;
      const handed = client.stats().kmodTunnels;
      const tunnel = await client.open(pod, { cert, expected: [serverId], upstream: { ip: '127.0.0.1', port: (peer.address() as AddressInfo).port }, authority: '127.0.0.1:9' });
      let back = 0;
      let how = 'open';
      const appEnd = new Promise<void>((resolve) => {
        app.on('data', (d: Buffer) => { back += d.length; });
        app.once('end', () => { how = 'end'; });
        app.once('error', (e: NodeJS.ErrnoException) => { how = e.code ?? e.message; });
        app.once('close', () => { resolve(); });
      });
      app.write(patternAt(0, 1000));
      for (let i = 0; i < 500 && back < 1000; i++) await new Promise((r) => setTimeout(r, 10));
      const end = carriedEnd(pod);
      end?.('the pod left the mesh');
      const done = await Promise.race([tunnel.done, new Promise<undefined>((r) => setTimeout(() => { r(undefined); }, 5000))]);
      app.end();
      await Promise.race([appEnd, new Promise((r) => setTimeout(r, 5000))]);
      app.destroy();
      const why = end === undefined ? 'the socket kept no end hook'
        : back !== 1000 ? `${back} of 1000 bytes came back before the end`
          : done === undefined ? 'the tunnel was still open 5 s after its end was asked for'
            : done.error !== 'the pod left the mesh' ? `the tunnel ended with ${done.error ?? 'no error'}`
              : how !== 'end' ? `the app saw ${how}, not a FIN`
                : mode === 'kmod' && client.stats().kmodTunnels !== handed + 1 ? 'the module did not carry it' : undefined;
      console.log(why === undefined ? `ok - ${name}-closed` : `not ok - ${name}-closed: ${why}`);
    }
    const seen = streams;
    const denied = await refused({ authority: 'deny.test:9' });
    const wrongId = await refused({ expected: clientId });
    const why = !/503/.test(denied) ? `a 503 answer gave: ${denied}`
      : !/the server presented/.test(wrongId) ? `a wrong server identity gave: ${wrongId}`
        : streams !== seen + 1 ? `${streams - seen} CONNECTs reached the peer, expected 1 (the 503 one)` : undefined;
    console.log(why === undefined ? `ok - ${name}-refusals` : `not ok - ${name}-refusals: ${why}`);

    // Last, as it stops the engine (a daemon's upgrade): a tunnel the module
    // carries ends with a FIN to its app, as a pooled one does, not a reset.
    {
      const app = net.connect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port, allowHalfOpen: true });
      await new Promise<void>((resolve, reject) => { app.once('connect', resolve); app.once('error', reject); });
      while (accepted.length === 0) await new Promise((r) => setTimeout(r, 2));
      const pod = accepted.shift() as net.Socket;
      const handed = client.stats().kmodTunnels;
      const tunnel = await client.open(pod, { cert, expected: [serverId], upstream: { ip: '127.0.0.1', port: (peer.address() as AddressInfo).port }, authority: '127.0.0.1:9' });
      let back = 0;
      let how = 'open';
      const appEnd = new Promise<void>((resolve) => {
        app.on('data', (d: Buffer) => { back += d.length; });
        app.once('end', () => { how = 'end'; app.end(); });
        app.once('error', (e: NodeJS.ErrnoException) => { how = e.code ?? e.message; });
        app.once('close', () => { resolve(); });
      });
      app.write(patternAt(0, 1000));
      for (let i = 0; i < 500 && back < 1000; i++) await new Promise((r) => setTimeout(r, 10));
      const carried = client.stats().kmodTunnels === handed + 1;
      client.close();
      const done = await Promise.race([tunnel.done, new Promise<undefined>((r) => setTimeout(() => { r(undefined); }, 5000))]);
      await Promise.race([appEnd, new Promise((r) => setTimeout(r, 5000))]);
      app.destroy();
      const why = back !== 1000 ? `${back} of 1000 bytes came back before the stop`
        : done === undefined ? 'the tunnel was still open 5 s after the engine stopped'
          : how !== 'end' ? `the app saw ${how}, not a FIN`
            : mode === 'kmod' && !carried ? 'the module did not carry it' : undefined;
      console.log(why === undefined ? `ok - ${name}-engine-stop` : `not ok - ${name}-engine-stop: ${why}`);
    }
    peer.close();
  }
} catch (err) {
  console.log(`not ok - ${name}: ${(err as Error).message}`);
}
client.close();
pods.close();
process.exit(0);
