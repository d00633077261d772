// SPDX-License-Identifier: Apache-2.0
// DNS queries from pods (ztunnel-compat/src/dns): the answer path the DNS
// proxy runs on every query, respond() with DnsProxy.find over real state
// (a service with v4 and v6 VIPs), and servfail() for the upstream-failed
// path. Neither declares an error: any throw is a finding. Invariants: a
// reply (answer, FORMERR, SERVFAIL) carries the query's id and is a response;
// an answer decodes.
import fs from 'node:fs';
import packet from 'dns-packet';
import { Registry } from 'prom-client';
import { respond, servfail } from '@skein/ztunnel-compat/dns/answer';
import { DnsMetrics } from '@skein/ztunnel-compat/dns/metrics';
import { DnsProxy } from '@skein/ztunnel-compat/dns/proxy';
import { createLogger } from '@skein/ztunnel-compat/log';
import { ProxyState } from '@skein/ztunnel-compat/state/store';
import { ip, serviceResource } from '@skein/ztunnel-compat/state/testing';
import { ProxyStateUpdater } from '@skein/ztunnel-compat/state/updater';
import { invariant, type FuzzTarget } from '../target.ts';

const HOST = 'echo.default.svc.cluster.local';

function makeProxy(): DnsProxy {
  const state = new ProxyState();
  const rejected = new ProxyStateUpdater(state).addressHandler.handle([
    serviceResource({ name: 'echo', namespace: 'default', hostname: HOST, addresses: [{ address: ip('10.96.0.10') }, { address: ip('fd00::10') }] }),
    serviceResource({ name: 'wild', namespace: 'default', hostname: '*.example.com', addresses: [{ address: ip('240.240.0.1') }] }),
  ], []);
  if (rejected.length > 0) throw new Error(`fuzz state rejected: ${JSON.stringify(rejected)}`);
  return new DnsProxy({
    state, metrics: new DnsMetrics(new Registry()), log: createLogger('error', 'json', fs.createWriteStream('/dev/null')),
    clusterDomain: 'cluster.local', ipv6: true, mark: undefined, resolvConf: '/nonexistent',
  });
}

let proxy: DnsProxy | undefined;

// As dns/answer.test.ts builds them.
function query(name: string, type: packet.RecordType, id = 1): Buffer {
  return packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] });
}

function isReplyTo(reply: Buffer, q: Buffer): boolean {
  return reply.length >= 12 && reply.readUInt16BE(0) === q.readUInt16BE(0) && (reply.readUInt16BE(2) & 0x8000) !== 0;
}

export const target: FuzzTarget = {
  name: 'dns-query',
  parser: 'dns/answer.ts respond/servfail with dns/proxy.ts DnsProxy.find',
  maxLen: 512,
  declared: [],
  dictionary: ['\x00\x01\x00\x01', '\x00\x1c\x00\x01', '\x04echo\x07default\x03svc\x07cluster\x05local\x00', '\xc0\x0c', '\x00\x29'],
  seeds: () => [
    query(HOST, 'A'), query(HOST, 'AAAA', 2), query('echo', 'A', 3), query('echo.default', 'AAAA', 4), query('a.example.com', 'A', 5),
    query('example.com', 'A', 6), query(HOST, 'SRV', 7),
    packet.encode({ type: 'response', id: 1, questions: [{ name: 'a', type: 'A', class: 'IN' }] }),
  ],
  run(data) {
    proxy ??= makeProxy();
    const p = proxy;
    const v = respond(data, (qname) => p.find(qname, 'default'));
    if (v.kind === 'answer') {
      invariant(isReplyTo(v.response, data), 'answer does not carry the query id');
      const decoded = packet.decode(v.response);
      invariant((decoded.answers ?? []).every((a) => a.type === 'A' || a.type === 'AAAA'), 'answer of another type');
    } else if (v.kind === 'malformed' && v.response !== undefined) {
      invariant(isReplyTo(v.response, data), 'FORMERR does not carry the query id');
    }
    const sf = servfail(data);
    if (sf !== undefined) invariant(isReplyTo(sf, data), 'SERVFAIL does not carry the query id');
  },
};
