// SPDX-License-Identifier: Apache-2.0
// Canonical IP text must be exactly what Node prints, since it is a map key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SocketAddress } from 'node:net';
import { randomBytes } from 'node:crypto';
import { ipFromBytes, ipToBytes, prefixContains } from './ip.ts';

function nodePrints(b: Uint8Array): string {
  const words = [];
  for (let i = 0; i < 16; i += 2) words.push(((b[i] ?? 0) << 8 | (b[i + 1] ?? 0)).toString(16));
  return new SocketAddress({ address: words.join(':'), family: 'ipv6' }).address;
}

test('IPv4 bytes become a dotted quad', () => {
  assert.equal(ipFromBytes(Uint8Array.of(10, 0, 255, 1)), '10.0.255.1');
  assert.equal(ipFromBytes(Uint8Array.of(0, 0, 0, 0)), '0.0.0.0');
});

test('only 4- and 16-byte addresses convert', () => {
  for (const n of [0, 1, 3, 5, 15, 17]) assert.equal(ipFromBytes(new Uint8Array(n)), undefined, `length ${n}`);
});

test('IPv6 text matches Node for edge cases (zero runs, ties, embedded IPv4)', () => {
  const cases = [
    '::', '::1', '::2', '1::', 'fe80::', '2001:db8::1', '2001:db8:0:0:1:0:0:1', '1:0:0:2:0:0:0:3',
    '0:0:1::', '::ffff:1.2.3.4', '::1.2.3.4', '::0.1.0.0', '::ffff:0:1:2', '0:0:0:0:ffff:0:1:2',
    '2001:db8::1:0:0:0:1', '1:2:3:4:5:6:7:8', '1:0:2:0:3:0:4:0', '0:1:0:1:0:1:0:1',
  ];
  for (const c of cases) {
    const b = ipToBytes(c);
    assert.ok(b !== undefined, c);
    assert.equal(ipFromBytes(b), nodePrints(b), c);
  }
});

test('IPv6 text matches Node for random addresses with zero words', () => {
  for (let i = 0; i < 2000; i++) {
    const b = randomBytes(16);
    // Zero out random words so that runs and ties are common.
    for (let w = 0; w < 8; w++) if (Math.random() < 0.5) { b[2 * w] = 0; b[2 * w + 1] = 0; }
    assert.equal(ipFromBytes(b), nodePrints(b), b.toString('hex'));
  }
});

test('ipToBytes parses what ipFromBytes prints, and rejects junk', () => {
  for (let i = 0; i < 500; i++) {
    const b = randomBytes(i % 2 === 0 ? 4 : 16);
    const text = ipFromBytes(b);
    assert.ok(text !== undefined);
    assert.deepEqual(ipToBytes(text), new Uint8Array(b));
  }
  for (const bad of ['', '1.2.3', '1.2.3.256', '1.2.3.4.5', 'a.b.c.d', '1:2', ':::', '1::2::3', '12345::', '1:2:3:4:5:6:7:8:9', '::1.2.3']) {
    assert.equal(ipToBytes(bad), undefined, bad);
  }
});

test('prefixContains compares only the prefix bits, within one family', () => {
  const net = ipToBytes('10.1.128.0');
  const inside = ipToBytes('10.1.191.7');
  const outside = ipToBytes('10.1.64.1');
  const v6 = ipToBytes('::ffff:10.1.128.1');
  assert.ok(net && inside && outside && v6);
  assert.equal(prefixContains(net, 18, inside), true);
  assert.equal(prefixContains(net, 18, outside), false);
  assert.equal(prefixContains(net, 0, outside), true);
  assert.equal(prefixContains(net, 18, v6), false);
});
