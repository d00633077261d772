// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { codecs, type Authorization as XdsAuthorization, type Match as XdsMatch, type MessageInit } from '../xds/proto.ts';
import {
  cidrContains, cidrFromBytes, formatIp, newIpWords, parseCidr, parseIpInto, policyFromXds, policyKey, policyToConfigDump,
  PolicyError, type Cidr,
} from './policy.ts';

/** Encodes and decodes through the real proto, as the xDS client delivers it. */
function wire(a: MessageInit<XdsAuthorization>): XdsAuthorization {
  return codecs.Authorization.decode(codecs.Authorization.encode(a));
}

const v4 = (s: string): Buffer => Buffer.from(s.split('.').map(Number));

function bad(a: MessageInit<XdsAuthorization>, message: RegExp): void {
  assert.throws(() => policyFromXds(wire(a)), (err: unknown) => {
    assert.ok(err instanceof PolicyError);
    assert.equal(err.code, 'SKEIN_BAD_POLICY');
    assert.match(err.message, message);
    return true;
  });
}

const FULL: MessageInit<XdsAuthorization> = {
  name: 'allow-frontend',
  namespace: 'shop',
  scope: 1,
  action: 0,
  dryRun: true,
  rules: [
    {
      clauses: [
        {
          matches: [
            {
              namespaces: [{ exact: 'web' }], notNamespaces: [{ prefix: 'kube-' }],
              principals: [{ suffix: '/sa/frontend' }], notPrincipals: [{ presence: {} }],
              serviceAccounts: [{ namespace: 'web', serviceAccount: 'frontend' }],
              notServiceAccounts: [{ namespace: 'web', serviceAccount: 'admin' }],
              sourceIps: [{ address: v4('10.1.2.3'), length: 8 }],
              notSourceIps: [{ address: Buffer.from('20010db8000000000000000000000001', 'hex'), length: 64 }],
              destinationIps: [{ address: Buffer.from('00000000000000000000ffff0a000001', 'hex'), length: 128 }],
              notDestinationIps: [{ address: v4('0.0.0.0'), length: 0 }],
              destinationPorts: [8080, 0], notDestinationPorts: [65535],
            },
            {},
          ],
        },
        { matches: [] },
      ],
    },
    { clauses: [] },
  ],
};

test('an xDS Authorization converts field by field, keeping empty clauses, rules and matches', () => {
  const p = policyFromXds(wire(FULL));
  assert.equal(p.name, 'allow-frontend');
  assert.equal(p.namespace, 'shop');
  assert.equal(p.scope, 'Namespace');
  assert.equal(p.action, 'Allow');
  assert.equal(p.dryRun, true);
  assert.equal(p.rules.length, 2);
  assert.equal(p.rules[1]?.length, 0);
  const [c0, c1] = p.rules[0] ?? [];
  assert.equal(c1?.length, 0);
  const [m, empty] = c0 ?? [];
  assert.ok(m && empty);
  assert.deepEqual(m.namespaces, [{ kind: 'exact', value: 'web' }]);
  assert.deepEqual(m.notNamespaces, [{ kind: 'prefix', value: 'kube-' }]);
  assert.deepEqual(m.principals, [{ kind: 'suffix', value: '/sa/frontend' }]);
  assert.deepEqual(m.notPrincipals, [{ kind: 'presence' }]);
  assert.deepEqual(m.serviceAccounts, [{ namespace: 'web', serviceAccount: 'frontend' }]);
  assert.deepEqual(m.notServiceAccounts, [{ namespace: 'web', serviceAccount: 'admin' }]);
  const brief = (c: readonly Cidr[]) => c.map((x) => [x.address, x.prefix, x.family]);
  assert.deepEqual(brief(m.sourceIps), [['10.1.2.3', 8, 4]]);
  assert.deepEqual(brief(m.notSourceIps), [['2001:db8::1', 64, 6]]);
  assert.deepEqual(brief(m.destinationIps), [['::ffff:10.0.0.1', 128, 6]]);
  assert.deepEqual(brief(m.notDestinationIps), [['0.0.0.0', 0, 4]]);
  assert.deepEqual(m.destinationPorts, [8080, 0]);
  assert.deepEqual(m.notDestinationPorts, [65535]);
  for (const k of Object.keys(empty) as (keyof typeof empty)[]) assert.equal(empty[k].length, 0, k);
});

test('absent scope and action are the proto defaults GLOBAL and ALLOW; absent dry_run is false', () => {
  const p = policyFromXds(wire({ name: 'n', namespace: 'istio-system' }));
  assert.equal(p.scope, 'Global');
  assert.equal(p.action, 'Allow');
  assert.equal(p.dryRun, false);
  assert.deepEqual(p.rules, []);
  assert.equal(policyFromXds(wire({ name: 'n', scope: 2, action: 1 })).scope, 'WorkloadSelector');
  assert.equal(policyFromXds(wire({ name: 'n', scope: 2, action: 1 })).action, 'Deny');
});

test('an empty exact string survives the wire: a oneof member set to "" is still set', () => {
  const p = policyFromXds(wire({ name: 'n', rules: [{ clauses: [{ matches: [{ namespaces: [{ exact: '' }, { prefix: '' }] }] }] }] }));
  assert.deepEqual(p.rules[0]?.[0]?.[0]?.namespaces, [{ kind: 'exact', value: '' }, { kind: 'prefix', value: '' }]);
});

test('invalid resources are SKEIN_BAD_POLICY errors naming the problem and where it is', () => {
  const inMatch = (m: MessageInit<XdsMatch>): MessageInit<XdsAuthorization> =>
    ({ name: 'p', namespace: 'ns', rules: [{ clauses: [{}, { matches: [{}, m] }] }] });
  bad({ namespace: 'ns' }, /in namespace "ns" has no name/);
  bad({}, /with no namespace has no name/);
  bad({ name: 'p', namespace: 'ns', scope: 3 }, /"ns\/p": unknown scope 3/);
  bad({ name: 'p', namespace: 'ns', action: 2 }, /"ns\/p": unknown action 2 \(only ALLOW=0 and DENY=1/);
  bad(inMatch({ principals: [{ exact: 'a' }, {}] }), /"ns\/p": rules\[0\]\.clauses\[1\]\.matches\[1\]\.principals\[1\]: StringMatch has none of/);
  bad(inMatch({ notNamespaces: [{}] }), /notNamespaces\[0\]: StringMatch has none/);
  bad(inMatch({ sourceIps: [{ address: Buffer.from([10, 0, 0]), length: 8 }] }), /sourceIps\[0\]: address has 3 bytes, want 4 \(IPv4\) or 16/);
  bad(inMatch({ destinationIps: [{ length: 8 }] }), /destinationIps\[0\]: address has 0 bytes/);
  bad(inMatch({ notSourceIps: [{ address: v4('10.0.0.0'), length: 33 }] }), /notSourceIps\[0\]: prefix length 33 is out of range for IPv4 \(0-32\)/);
  bad(inMatch({ notDestinationIps: [{ address: Buffer.alloc(16), length: 129 }] }), /prefix length 129 is out of range for IPv6 \(0-128\)/);
  bad(inMatch({ destinationPorts: [80, 65536] }), /destinationPorts\[1\]: port 65536 is out of range/);
  bad(inMatch({ notDestinationPorts: [70000] }), /notDestinationPorts\[0\]: port 70000/);
});

test('policyKey is namespace/name for every scope; a Global policy keeps its own namespace', () => {
  assert.equal(policyKey(policyFromXds(wire({ name: 'allow', namespace: 'shop', scope: 1 }))), 'shop/allow');
  assert.equal(policyKey(policyFromXds(wire({ name: 'deny-all', namespace: 'istio-system', scope: 0 }))), 'istio-system/deny-all');
  assert.equal(policyKey({ namespace: '', name: 'local' }), '/local');
});

test('config_dump prints a policy exactly as ztunnel serde does', () => {
  // Expected text produced by serde_json 1.x with ztunnel's rbac.rs derives
  // (pretty printer, 2-space indent, as /config_dump serves).
  const expected = `{
  "name": "allow-frontend",
  "namespace": "shop",
  "scope": "Namespace",
  "action": "Allow",
  "rules": [
    [
      [
        {
          "namespaces": [
            {
              "Exact": "web"
            }
          ],
          "notNamespaces": [
            {
              "Prefix": "kube-"
            }
          ],
          "serviceAccounts": [
            {
              "namespace": "web",
              "serviceAccount": "frontend"
            }
          ],
          "notServiceAccounts": [
            {
              "namespace": "web",
              "serviceAccount": "admin"
            }
          ],
          "principals": [
            {
              "Suffix": "/sa/frontend"
            }
          ],
          "notPrincipals": [
            {
              "Presence": []
            }
          ],
          "sourceIps": [
            "10.1.2.3/8"
          ],
          "notSourceIps": [
            "2001:db8::1/64"
          ],
          "destinationIps": [
            "::ffff:10.0.0.1/128"
          ],
          "notDestinationIps": [
            "0.0.0.0/0"
          ],
          "destinationPorts": [
            8080,
            0
          ],
          "notDestinationPorts": [
            65535
          ]
        },
        {}
      ],
      []
    ],
    []
  ],
  "dryRun": true
}`;
  assert.equal(JSON.stringify(policyToConfigDump(policyFromXds(wire(FULL))), null, 2), expected);
});

test('addresses print as Rust prints them (checked against rustc 1.95 std::net)', () => {
  const cases: [string, string][] = [
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['00000000000000000000000001020304', '::102:304'],
    ['00000000000000000000ffff01020304', '::ffff:1.2.3.4'],
    ['00000000000000000000ffff00000000', '::ffff:0.0.0.0'],
    ['00010000000000010000000000010001', '1::1:0:0:1:1'],
    ['00010000000100010001000100010001', '1:0:1:1:1:1:1:1'],
    ['00000000000100000000000000010001', '0:0:1::1:1'],
    ['fe800000000000000000000000000000', 'fe80::'],
    ['0064ff9b000000000000000001020304', '64:ff9b::102:304'],
    ['abcd0000000000000000000000000000', 'abcd::'],
  ];
  for (const [hex, text] of cases) assert.equal(formatIp(Buffer.from(hex, 'hex')), text, hex);
  assert.equal(formatIp(Buffer.from([192, 168, 0, 255])), '192.168.0.255');
});

test('parseIpInto reads IPv4 and IPv6 text, canonicalizes IPv4-mapped IPv6, and rejects the rest', () => {
  const ip = newIpWords();
  const words = (s: string) => (parseIpInto(s, ip) ? [ip.family, ip.w0 >>> 0, ip.w1 >>> 0, ip.w2 >>> 0, ip.w3 >>> 0] : [ip.family]);
  assert.deepEqual(words('10.1.2.3'), [4, 0, 0, 0, 0x0a010203]);
  assert.deepEqual(words('255.255.255.255'), [4, 0, 0, 0, 0xffffffff]);
  assert.deepEqual(words('::ffff:10.1.2.3'), [4, 0, 0, 0xffff, 0x0a010203]);
  assert.deepEqual(words('::FFFF:a01:203'), [4, 0, 0, 0xffff, 0x0a010203]);
  assert.deepEqual(words('2001:db8::1'), [6, 0x20010db8, 0, 0, 1]);
  assert.deepEqual(words('fe80::1%eth0'), [6, 0xfe800000, 0, 0, 1]);
  assert.deepEqual(words('::'), [6, 0, 0, 0, 0]);
  assert.deepEqual(words('1::'), [6, 0x00010000, 0, 0, 0]);
  assert.deepEqual(words('1:2:3:4:5:6:7:8'), [6, 0x00010002, 0x00030004, 0x00050006, 0x00070008]);
  assert.deepEqual(words('1:2:3:4:5:6:1.2.3.4'), [6, 0x00010002, 0x00030004, 0x00050006, 0x01020304]);
  for (const s of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.4 ', 'a.b.c.d', ':', ':1', '1:', ':::',
    '1::2::3', '12345::', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7::8', '::1.2.3', 'g::', '1.2.3.4::', 'localhost']) {
    assert.deepEqual(words(s), [0], JSON.stringify(s));
  }
});

test('a CIDR contains exactly the addresses under its mask, across word boundaries', () => {
  const ip = newIpWords();
  const has = (cidr: string, addr: string) => {
    parseIpInto(addr, ip);
    return cidrContains(parseCidr(cidr), ip);
  };
  assert.ok(has('10.0.0.0/8', '10.255.1.2'));
  assert.ok(!has('10.0.0.0/8', '11.0.0.0'));
  assert.ok(has('10.1.2.3/8', '10.9.9.9'), 'host bits in the sent address are ignored');
  assert.ok(has('10.0.0.5', '10.0.0.5'));
  assert.ok(!has('10.0.0.5', '10.0.0.6'));
  assert.ok(has('0.0.0.0/0', '203.0.113.9'));
  assert.ok(has('128.0.0.0/1', '200.0.0.1'));
  assert.ok(!has('128.0.0.0/1', '100.0.0.1'));
  assert.ok(has('10.0.0.0/8', '::ffff:10.2.3.4'), 'IPv4-mapped peers match IPv4 CIDRs');
  assert.ok(has('::ffff:10.0.0.0/104', '10.2.3.4'), 'an IPv4-mapped CIDR matches as IPv4');
  assert.ok(!has('::/0', '10.2.3.4'), 'no IPv6 CIDR matches IPv4, as in ipnet');
  assert.ok(!has('0.0.0.0/0', '2001:db8::1'));
  assert.ok(has('::/0', '2001:db8::1'));
  assert.ok(has('2001:db8::/32', '2001:db8:ffff::1'));
  assert.ok(!has('2001:db8::/32', '2001:db9::1'));
  assert.ok(has('2001:db8:0:0:8000::/65', '2001:db8::8000:0:0:1'));
  assert.ok(!has('2001:db8:0:0:8000::/65', '2001:db8::7fff:0:0:1'));
  assert.ok(has('2001:db8::1/128', '2001:db8::1'));
  assert.ok(!has('2001:db8::1/128', '2001:db8::2'));
  assert.ok(!has('10.0.0.0/8', 'not an ip'), 'an unparsable address matches nothing');
  assert.throws(() => parseCidr('10.0.0.0/33'), PolicyError);
  assert.throws(() => parseCidr('10.0.0.0/'), PolicyError);
  assert.throws(() => parseCidr('10.0.0.0/08'), PolicyError);
  assert.throws(() => parseCidr('fe80::1%eth0/64'), PolicyError);
  assert.throws(() => cidrFromBytes(new Uint8Array(5), 8), /5 bytes/);
  assert.throws(() => cidrFromBytes(new Uint8Array(4), 1.5), /prefix length 1.5/);
});
