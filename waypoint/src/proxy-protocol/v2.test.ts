// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { program, skipUnless } from '../../../test/skips.ts';
import { decodeProxyV2, encodeProxyV2, ProxyHeaderError, TLV_PEER_IDENTITY, TLV_SERVICE_HOSTNAME, TlvError } from './index.ts';

const ID = 'spiffe://cluster.local/ns/default/sa/sleep';
const SVC = 'echo.default.svc.cluster.local';

test('an IPv4 header is byte for byte what the spec lays out, TLVs counted in the length', () => {
  const h = encodeProxyV2({ source: { ip: '10.0.0.1', port: 40000 }, destination: { ip: '10.96.0.30', port: 80 }, tlvs: [{ type: TLV_PEER_IDENTITY, value: Buffer.from('ab') }] });
  assert.equal(h.toString('hex'), [
    '0d0a0d0a000d0a515549540a', // signature
    '21', // version 2, command PROXY
    '11', // AF_INET, STREAM
    '0011', // 12 address bytes + 5 TLV bytes
    '0a000001', '0a60001e', '9c40', '0050',
    'd00002', '6162',
  ].join(''));
});

test('IPv4 and IPv6 headers round-trip with their TLVs; the payload after them is left alone', () => {
  for (const [src, dst] of [['10.0.0.1', '10.96.0.30'], ['fd00:244:1::a', 'fd00:96::1e'], ['::1', 'fd00::1e']] as const) {
    const tlvs = [{ type: TLV_PEER_IDENTITY, value: Buffer.from(ID) }, { type: TLV_SERVICE_HOSTNAME, value: Buffer.from(SVC) }];
    const header = encodeProxyV2({ source: { ip: src, port: 1234 }, destination: { ip: dst, port: 8080 }, tlvs });
    const d = decodeProxyV2(Buffer.concat([header, Buffer.from('GET / HTTP/1.1\r\n')]));
    assert.ok(d !== undefined);
    assert.equal(d.length, header.length);
    assert.deepEqual(d.header.source, { ip: src, port: 1234 });
    assert.deepEqual(d.header.destination, { ip: dst, port: 8080 });
    assert.deepEqual(d.header.tlvs.map((t) => [t.type, t.value.toString()]), [[0xd0, ID], [0xd1, SVC]]);
  }
});

test('one IPv4 and one IPv6 address are sent as IPv6, the IPv4 one mapped', () => {
  const d = decodeProxyV2(encodeProxyV2({ source: { ip: '10.0.0.1', port: 1 }, destination: { ip: 'fd00::1', port: 2 }, tlvs: [] }));
  assert.equal(d?.header.source.ip, '::ffff:a00:1');
});

test('a partial header is undefined until complete; garbage and broken TLVs are errors', () => {
  const full = encodeProxyV2({ source: { ip: '10.0.0.1', port: 1 }, destination: { ip: '10.0.0.2', port: 2 }, tlvs: [{ type: 0xd0, value: Buffer.from(ID) }] });
  for (const n of [1, 11, 12, 15, 16, full.length - 1]) assert.equal(decodeProxyV2(full.subarray(0, n)), undefined, `${n} bytes`);
  assert.throws(() => decodeProxyV2(Buffer.from('GET / HTTP/1.1\r\n\r\n')), ProxyHeaderError);
  const broken = Buffer.from(full);
  broken.writeUInt16BE(0xffff, full.length - ID.length - 2); // the TLV claims more than there is
  assert.throws(() => decodeProxyV2(broken), TlvError);
  assert.throws(() => encodeProxyV2({ source: { ip: '10.0.0.1', port: 70000 }, destination: { ip: '10.0.0.2', port: 2 }, tlvs: [] }), ProxyHeaderError);
});

// setup installs haproxy: missing, it is a failure (unless SKEIN_TEST_ALLOW_SKIP=1).
const haproxy = skipUnless(program('/usr/sbin/haproxy'));

test('haproxy (accept-proxy) takes our header, TLVs and all, and sees the addresses in it', { skip: haproxy }, async (t) => {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-pp-'));
  t.after(() => { fs.rmSync(dir, { recursive: true, force: true }); });
  const cfg = path.join(dir, 'haproxy.cfg');
  // fc_pp_authority is TLV 0x02: proof that a TLV we wrote is where haproxy looks for it.
  fs.writeFileSync(cfg, [
    'defaults', '  mode http', '  timeout connect 1s', '  timeout client 5s', '  timeout server 5s',
    'frontend f', `  bind 127.0.0.1:${port} accept-proxy`,
    '  http-request return status 200 content-type text/plain lf-string "%[src]:%[src_port] %[dst]:%[dst_port] %[fc_pp_authority]"',
    '',
  ].join('\n'));
  const proc = spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' });
  t.after(() => { proc.kill(); });
  await waitListening(port);
  const header = encodeProxyV2({
    source: { ip: '10.0.0.1', port: 40000 }, destination: { ip: '10.96.0.30', port: 80 },
    tlvs: [{ type: TLV_PEER_IDENTITY, value: Buffer.from(ID) }, { type: 0x02, value: Buffer.from('echo.example') }, { type: TLV_SERVICE_HOSTNAME, value: Buffer.from(SVC) }],
  });
  const reply = await new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => { s.end(Buffer.concat([header, Buffer.from('GET / HTTP/1.0\r\nHost: x\r\n\r\n')])); });
    let got = '';
    s.on('data', (d: Buffer) => { got += d.toString(); });
    s.on('end', () => { resolve(got); });
    s.on('error', reject);
  });
  assert.match(reply, /^HTTP\/1\.[01] 200/);
  assert.equal(reply.split('\r\n\r\n')[1], '10.0.0.1:40000 10.96.0.30:80 echo.example');
});

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => { srv.listen(0, '127.0.0.1', r); });
  const addr = srv.address();
  await new Promise((r) => srv.close(r));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

async function waitListening(port: number): Promise<void> {
  const end = Date.now() + 5000;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
      s.on('error', () => { r(false); });
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`haproxy not listening on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
