// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import packet from 'dns-packet';
import { respond, servfail, TTL_SECONDS } from './answer.ts';

const query = (name: string, type: 'A' | 'AAAA' | 'TXT' | 'SRV', id = 4242): Buffer =>
  packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] });

const known = (qname: string): { v4: string[]; v6: string[] } | undefined =>
  qname === 'echo.default.svc.cluster.local' ? { v4: ['10.96.0.20', '10.96.0.21'], v6: ['fd00::20'] } : undefined;

test('A and AAAA for a known host are answered here with its VIPs, the question echoed, TTL 30', () => {
  for (const [type, ips] of [['A', ['10.96.0.20', '10.96.0.21']], ['AAAA', ['fd00::20']]] as const) {
    const v = respond(query('echo.default.svc.cluster.local', type), known);
    assert.equal(v.kind, 'answer');
    assert.equal(v.type, type.toLowerCase());
    const r = packet.decode(v.response);
    assert.equal(r.id, 4242);
    assert.equal(r.type, 'response');
    assert.equal(r.flag_rd && r.flag_ra, true);
    assert.equal(r.flags !== undefined && (r.flags & 0xf), 0, 'NOERROR');
    assert.deepEqual(r.questions, [{ name: 'echo.default.svc.cluster.local', type, class: 'IN' }]);
    const answers = (r.answers ?? []) as packet.StringAnswer[];
    assert.deepEqual(answers.map((a) => [a.name, a.type, a.ttl, a.data]), ips.map((ip) => ['echo.default.svc.cluster.local', type, TTL_SECONDS, ip]));
  }
});

test('unknown hosts, other types and other opcodes go upstream untouched', () => {
  assert.deepEqual(respond(query('example.com', 'A'), known), { kind: 'forward', type: 'a' });
  assert.deepEqual(respond(query('echo.default.svc.cluster.local', 'SRV'), known), { kind: 'forward', type: 'srv' });
  const notify = query('echo.default.svc.cluster.local', 'A');
  notify.writeUInt16BE(notify.readUInt16BE(2) | (4 << 11), 2);
  assert.equal(respond(notify, known).kind, 'forward');
});

test('garbage gets FORMERR with its id when it has a header, and is dropped when not; a response gets no reply', () => {
  const junk = Buffer.from('12340100ffff', 'hex');
  const tooShort = respond(junk, known);
  assert.deepEqual(tooShort, { kind: 'malformed', type: 'unknown', response: undefined });
  const broken = Buffer.concat([Buffer.from('beef01000001000000000000', 'hex'), Buffer.from([0x3f])]);
  const v = respond(broken, known);
  assert.equal(v.kind, 'malformed');
  const r = v.response;
  assert.ok(r !== undefined);
  assert.equal(r.readUInt16BE(0), 0xbeef);
  assert.equal(r.readUInt16BE(2) & 0x800f, 0x8001, 'a response, FORMERR');
  const answerAsQuery = respond(packet.encode({ type: 'response', id: 1, questions: [{ name: 'a', type: 'A', class: 'IN' }] }), known);
  assert.deepEqual(answerAsQuery, { kind: 'malformed', type: 'unknown', response: undefined }, 'a response gets no reply');
});

test('SERVFAIL keeps the id and the question', () => {
  const r = packet.decode(servfail(query('example.com', 'A', 7)) ?? Buffer.alloc(0));
  assert.equal(r.id, 7);
  assert.equal(r.flags !== undefined && (r.flags & 0xf), 2);
  assert.deepEqual(r.questions, [{ name: 'example.com', type: 'A', class: 'IN' }]);
  assert.equal(servfail(Buffer.alloc(3)), undefined);
});
