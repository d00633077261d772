// SPDX-License-Identifier: Apache-2.0
// Reference §7, sentence by sentence. Each row is named after the sentence it
// covers (quoted) and lists connections with the verdict ztunnel gives them.
// Policies are written in xDS form, as istiod sends them, and converted with
// policyFromXds, so each row also pins the conversion.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseSpiffe } from '../identity/spiffe.ts';
import { PolicyStore } from '../state/policy-store.ts';
import { policyFromXds, policyKey, PolicyError, type Policy } from '../state/policy.ts';
import {
  AuthorizationAction, AuthorizationScope,
  type IpPrefix as XdsIpPrefix, type Match as XdsMatch, type StringMatch as XdsStringMatch,
} from '../xds/proto.ts';
import {
  authorize, EXPLICITLY_DENIED_PREFIX, matches, NOT_ALLOWED_REASON, type AuthzRequest, type AuthzVerdict, type DryRunNote,
} from './authz.ts';

// ---- Building policies the way istiod sends them ------------------------------

const exact = (v: string): XdsStringMatch => ({ exact: v });
const prefix = (v: string): XdsStringMatch => ({ prefix: v });
const suffix = (v: string): XdsStringMatch => ({ suffix: v });
const presence: XdsStringMatch = { presence: {} };

/** istiod `stringToMatch`: "*" → presence, "*x" → suffix, "x*" → prefix, else exact. */
function istiodString(v: string): XdsStringMatch {
  if (v === '*') return presence;
  if (v.startsWith('*')) return suffix(v.slice(1));
  if (v.endsWith('*')) return prefix(v.slice(0, -1));
  return exact(v);
}

/** istiod `stringToServiceAccountMatch`: "ns/sa", or a short "sa" in the policy's namespace. */
function istiodServiceAccount(v: string, policyNamespace: string) {
  const slash = v.indexOf('/');
  return slash === -1 ? { namespace: policyNamespace, serviceAccount: v } : { namespace: v.slice(0, slash), serviceAccount: v.slice(slash + 1) };
}

/** "10.0.0.0/8" or "fd00::/8" as an xDS Address. */
function cidr(text: string): XdsIpPrefix {
  const [addr = '', len] = text.split('/');
  let bytes: Buffer;
  if (addr.includes(':')) {
    const [head = '', tail = ''] = addr.split('::');
    const groups = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
    const h = groups(head), t = groups(tail);
    const all = addr.includes('::') ? [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t] : h;
    bytes = Buffer.alloc(16);
    all.forEach((g, i) => bytes.writeUInt16BE(g, i * 2));
  } else {
    bytes = Buffer.from(addr.split('.').map(Number));
  }
  return { address: bytes, length: len === undefined ? bytes.length * 8 : Number(len) };
}

const EMPTY_MATCH: XdsMatch = {
  namespaces: [], notNamespaces: [], serviceAccounts: [], notServiceAccounts: [], principals: [], notPrincipals: [],
  sourceIps: [], notSourceIps: [], destinationIps: [], notDestinationIps: [], destinationPorts: [], notDestinationPorts: [],
  extensions: [],
};
const m = (fields: Partial<XdsMatch> = {}): XdsMatch => ({ ...EMPTY_MATCH, ...fields });

interface PolicySpec {
  ns?: string; name?: string;
  scope?: keyof typeof AuthorizationScope; action?: keyof typeof AuthorizationAction; dryRun?: boolean;
  /** rules → clauses → matches */
  rules: XdsMatch[][][];
}

function policy(s: PolicySpec): Policy {
  return policyFromXds({
    name: s.name ?? 'p', namespace: s.ns ?? 'app',
    scope: AuthorizationScope[s.scope ?? 'NAMESPACE'], action: AuthorizationAction[s.action ?? 'ALLOW'],
    dryRun: s.dryRun ?? false,
    rules: s.rules.map((clauses) => ({ clauses: clauses.map((matches) => ({ matches })) })),
    extensions: [],
  });
}
const allow = (rules: XdsMatch[][][], more: Partial<PolicySpec> = {}) => policy({ ...more, rules, action: 'ALLOW' });
const deny = (rules: XdsMatch[][][], more: Partial<PolicySpec> = {}) => policy({ ...more, rules, action: 'DENY' });
/** One rule, one clause, one Match. */
const allowIf = (fields: Partial<XdsMatch>, more: Partial<PolicySpec> = {}) => allow([[[m(fields)]]], more);
const denyIf = (fields: Partial<XdsMatch>, more: Partial<PolicySpec> = {}) => deny([[[m(fields)]]], more);

// ---- Connections ------------------------------------------------------------

const ALICE = 'spiffe://cluster.local/ns/a/sa/alice';
const BOB = 'spiffe://cluster.local/ns/b/sa/bob';
const CAROL = 'spiffe://cluster.local/ns/c/sa/carol';
/** Same namespace and service account as ALICE, another trust domain. */
const ALICE_ELSEWHERE = 'spiffe://other.td/ns/a/sa/alice';

function mtls(uri: string, more: Partial<AuthzRequest> = {}): AuthzRequest {
  return { source: parseSpiffe(uri), sourceIp: '10.0.1.5', destinationIp: '10.0.2.7', destinationPort: 8080, ...more };
}
function plaintext(more: Partial<AuthzRequest> = {}): AuthzRequest {
  return { sourceIp: '10.0.1.5', destinationIp: '10.0.2.7', destinationPort: 8080, ...more };
}

// ---- Verdicts ---------------------------------------------------------------

interface Want { allowed: boolean; reason?: string; policy?: string; dryRun: DryRunNote[] }
const ALLOW: Want = { allowed: true, dryRun: [] };
const NOT_ALLOWED: Want = { allowed: false, reason: NOT_ALLOWED_REASON, dryRun: [] };
const deniedBy = (key: string): Want => ({ allowed: false, reason: `explicitly denied by: ${key}`, policy: key, dryRun: [] });
const withNotes = (w: Want, ...dryRun: DryRunNote[]): Want => ({ ...w, dryRun });

function seen(v: AuthzVerdict): Want {
  const w: Want = { allowed: v.allowed, dryRun: [...v.dryRun] };
  if (!v.allowed) {
    w.reason = v.reason;
    if (v.policy !== undefined) w.policy = v.policy;
  }
  return w;
}

// ---- The table --------------------------------------------------------------

interface Row {
  /** The §7 sentence, quoted. */
  sentence: string;
  /** The policies that apply to the destination... */
  policies?: Policy[];
  /** ...or a store and the destination workload, to exercise selection. */
  store?: Policy[];
  workload?: { namespace: string; keys: string[]; missing?: string[] };
  cases: [label: string, req: AuthzRequest, want: Want][];
}

const ROWS: { section: string; rows: Row[] }[] = [
  {
    section: '§7 Which policies apply to a destination workload',
    rows: [
      {
        sentence: 'all `Scope=NAMESPACE` policies whose `namespace` == the workload namespace',
        store: [denyIf({ destinationPorts: [8080] }, { ns: 'app', name: 'deny-8080' })],
        workload: { namespace: 'app', keys: [] },
        cases: [['a workload in the policy\'s namespace is covered', plaintext(), deniedBy('app/deny-8080')]],
      },
      {
        sentence: 'all `Scope=NAMESPACE` policies whose `namespace` == the workload namespace (and no other namespace\'s)',
        store: [denyIf({ destinationPorts: [8080] }, { ns: 'app', name: 'deny-8080' })],
        workload: { namespace: 'other', keys: [] },
        cases: [['a workload in another namespace is not', plaintext(), ALLOW]],
      },
      {
        sentence: 'all `Scope=GLOBAL` policies (stored under namespace "")',
        store: [denyIf({ destinationPorts: [8080] }, { ns: 'istio-system', name: 'mesh-deny', scope: 'GLOBAL' })],
        workload: { namespace: 'app', keys: [] },
        cases: [['applies to a workload in any namespace, named by its own namespace', plaintext(), deniedBy('istio-system/mesh-deny')]],
      },
      {
        sentence: 'the `Workload.authorization_policies` keys (WORKLOAD_SELECTOR)',
        store: [denyIf({ destinationPorts: [8080] }, { ns: 'app', name: 'sel', scope: 'WORKLOAD_SELECTOR' })],
        workload: { namespace: 'app', keys: ['app/sel'] },
        cases: [['a workload listing the key is covered', plaintext(), deniedBy('app/sel')]],
      },
      {
        sentence: 'Root-namespace policy without a selector → GLOBAL; namespace policy without a selector → NAMESPACE; with a selector → WORKLOAD_SELECTOR',
        store: [denyIf({ destinationPorts: [8080] }, { ns: 'app', name: 'sel', scope: 'WORKLOAD_SELECTOR' })],
        workload: { namespace: 'app', keys: [] },
        cases: [['a selector policy covers only workloads that list it, not its whole namespace', plaintext(), ALLOW]],
      },
      {
        sentence: 'A referenced policy that is not known yet is skipped (warning).',
        store: [allowIf({ destinationPorts: [9090] }, { ns: 'app', name: 'known', scope: 'WORKLOAD_SELECTOR' })],
        workload: { namespace: 'app', keys: ['app/not-yet', 'app/known'], missing: ['app/not-yet'] },
        cases: [
          ['the known one still decides', plaintext({ destinationPort: 9090 }), ALLOW],
          ['the known one still decides (no match)', plaintext(), NOT_ALLOWED],
        ],
      },
      {
        sentence: 'Default with no policies: allow.',
        store: [],
        workload: { namespace: 'app', keys: [] },
        cases: [['plaintext', plaintext(), ALLOW], ['mTLS', mtls(ALICE), ALLOW]],
      },
      {
        sentence: '**Policies with `targetRefs` are not sent to ztunnel** (they are for waypoints).',
        policies: [],
        cases: [['nothing arrives, so nothing is enforced here', plaintext(), ALLOW]],
      },
    ],
  },
  {
    section: '§7 Evaluation order',
    rows: [
      {
        sentence: '1. Dry-run DENY matches are only logged.',
        policies: [
          denyIf({ destinationPorts: [8080] }, { name: 'would-deny', dryRun: true }),
          denyIf({ destinationPorts: [1] }, { name: 'would-not', dryRun: true }),
        ],
        cases: [['allowed, with every dry-run DENY noted', plaintext(),
          withNotes(ALLOW, { policy: 'app/would-deny', action: 'Deny', matched: true }, { policy: 'app/would-not', action: 'Deny', matched: false })]],
      },
      {
        sentence: '1. Dry-run DENY matches are only logged (even when an enforced DENY then decides).',
        policies: [denyIf({ destinationPorts: [8080] }, { name: 'real' }), denyIf({ destinationPorts: [8080] }, { name: 'dry', dryRun: true })],
        cases: [['the dry-run one listed later is still noted', plaintext(),
          withNotes(deniedBy('app/real'), { policy: 'app/dry', action: 'Deny', matched: true })]],
      },
      {
        sentence: '2. If **any DENY matches, deny** (`explicitly denied by: ns/name`).',
        policies: [
          allow([[]], { name: 'allow-all' }),
          denyIf({ destinationPorts: [1] }, { name: 'no-match' }),
          denyIf({ namespaces: [exact('b')] }, { ns: 'app', name: 'deny-b' }),
        ],
        cases: [
          ['a matching DENY wins over a matching ALLOW', mtls(BOB), deniedBy('app/deny-b')],
          ['no DENY matches: the ALLOW decides', mtls(ALICE), ALLOW],
        ],
      },
      {
        sentence: '3. Dry-run ALLOW matches are only logged.',
        policies: [
          allowIf({ destinationPorts: [1] }, { name: 'real' }),
          allowIf({ destinationPorts: [8080] }, { name: 'dry', dryRun: true }),
        ],
        cases: [['a matching dry-run ALLOW does not allow', plaintext(),
          withNotes(NOT_ALLOWED, { policy: 'app/dry', action: 'Allow', matched: true })]],
      },
      {
        sentence: '4. If there are **no (non-dry-run) ALLOW policies, allow**.',
        policies: [allowIf({ destinationPorts: [1] }, { name: 'dry', dryRun: true }), denyIf({ destinationPorts: [1] })],
        cases: [['only a dry-run ALLOW, not matching: allowed, and the note shows enforcing it would deny', plaintext(),
          withNotes(ALLOW, { policy: 'app/dry', action: 'Allow', matched: false })]],
      },
      {
        sentence: '5. If **any ALLOW matches, allow**; otherwise deny ("allow policies exist, but none allowed").',
        policies: [allowIf({ namespaces: [exact('a')] }, { name: 'from-a' }), allowIf({ namespaces: [exact('b')] }, { name: 'from-b' })],
        cases: [
          ['the second ALLOW matches', mtls(BOB), ALLOW],
          ['none matches', mtls(CAROL), NOT_ALLOWED],
        ],
      },
    ],
  },
  {
    section: '§7 Matching',
    rows: [
      {
        sentence: 'A policy with **zero rules never matches**.',
        policies: [allow([])],
        cases: [['an ALLOW with no rules allows nothing', mtls(ALICE), NOT_ALLOWED]],
      },
      {
        sentence: 'A policy with **zero rules never matches** (a DENY neither).',
        policies: [deny([])],
        cases: [['a DENY with no rules denies nothing', plaintext(), ALLOW]],
      },
      {
        sentence: '`rules` are OR\'ed.',
        policies: [allow([[[m({ namespaces: [exact('a')] })]], [[m({ namespaces: [exact('b')] })]]])],
        cases: [['first rule', mtls(ALICE), ALLOW], ['second rule', mtls(BOB), ALLOW], ['neither', mtls(CAROL), NOT_ALLOWED]],
      },
      {
        sentence: 'Within a rule, `clauses` are AND\'ed;',
        policies: [allow([[[m({ namespaces: [exact('a')] })], [m({ destinationPorts: [8080] })]]])],
        cases: [
          ['both clauses hold', mtls(ALICE), ALLOW],
          ['only the first', mtls(ALICE, { destinationPort: 9090 }), NOT_ALLOWED],
          ['only the second', mtls(BOB), NOT_ALLOWED],
        ],
      },
      {
        sentence: 'an empty clause list counts as true.',
        policies: [allow([[]])],
        cases: [['a rule with no clauses (istiod\'s `rules: [{}]`) allows everything', plaintext(), ALLOW]],
      },
      {
        sentence: 'an empty clause list counts as true (a clause with no matches, too).',
        policies: [allow([[[], [m({ destinationPorts: [8080] })]]])],
        cases: [['the empty clause holds', plaintext(), ALLOW], ['the other clause still must', plaintext({ destinationPort: 9090 }), NOT_ALLOWED]],
      },
      {
        sentence: 'Within a clause, `matches` are OR\'ed.',
        policies: [allow([[[m({ namespaces: [exact('a')] }), m({ destinationPorts: [9090] })]]])],
        cases: [['first match', mtls(ALICE), ALLOW], ['second match', mtls(BOB, { destinationPort: 9090 }), ALLOW], ['neither', mtls(BOB), NOT_ALLOWED]],
      },
      {
        sentence: 'A Match with **all fields empty is skipped** (never counts as a match), so a clause whose matches are all empty is false.',
        policies: [allow([[[m(), m()]]])],
        cases: [['a clause of empty Matches allows nothing', mtls(ALICE), NOT_ALLOWED]],
      },
      {
        sentence: 'A Match with **all fields empty is skipped** (not a wildcard beside others).',
        policies: [allow([[[m(), m({ namespaces: [exact('a')] })]]])],
        cases: [['the non-empty one decides', mtls(ALICE), ALLOW], ['the empty one does not match all', mtls(BOB), NOT_ALLOWED]],
      },
      {
        sentence: 'Within a Match, each field type is AND\'ed.',
        policies: [allowIf({ namespaces: [exact('a')], destinationPorts: [8080], sourceIps: [cidr('10.0.1.0/24')] })],
        cases: [
          ['all three hold', mtls(ALICE), ALLOW],
          ['wrong namespace', mtls(BOB), NOT_ALLOWED],
          ['wrong port', mtls(ALICE, { destinationPort: 9090 }), NOT_ALLOWED],
          ['wrong source', mtls(ALICE, { sourceIp: '10.0.3.5' }), NOT_ALLOWED],
        ],
      },
      {
        sentence: 'For a type: positive list empty → true, else any-of.',
        policies: [allowIf({ destinationPorts: [8080, 9090] })],
        cases: [
          ['empty namespaces list: any peer', mtls(CAROL, { destinationPort: 9090 }), ALLOW],
          ['any of the ports', plaintext({ destinationPort: 8080 }), ALLOW],
          ['none of them', plaintext({ destinationPort: 7070 }), NOT_ALLOWED],
        ],
      },
      {
        sentence: 'Negative list empty → true, else none-of.',
        policies: [allowIf({ destinationPorts: [8080, 9090], notDestinationPorts: [9090, 7070] })],
        cases: [
          ['in the positive list and not the negative', plaintext(), ALLOW],
          ['in both', plaintext({ destinationPort: 9090 }), NOT_ALLOWED],
          ['only in the negative', plaintext({ destinationPort: 7070 }), NOT_ALLOWED],
        ],
      },
      {
        sentence: 'Negative list empty → true, else none-of (alone).',
        policies: [allowIf({ notDestinationPorts: [9090] })],
        cases: [['not listed', plaintext({ destinationPort: 1234 }), ALLOW], ['listed', plaintext({ destinationPort: 9090 }), NOT_ALLOWED]],
      },
    ],
  },
  {
    section: '§7 Attributes',
    rows: [
      {
        sentence: '`namespaces`: the **namespace from the peer SPIFFE identity** ("" when there is no identity).',
        policies: [allowIf({ namespaces: [exact('a')] })],
        cases: [
          ['peer in a', mtls(ALICE), ALLOW],
          ['trust domain does not matter', mtls(ALICE_ELSEWHERE), ALLOW],
          ['peer in b', mtls(BOB), NOT_ALLOWED],
          ['no identity is namespace ""', plaintext(), NOT_ALLOWED],
        ],
      },
      {
        sentence: '`namespaces`: ... ("" when there is no identity) — so exact "" matches plaintext and a negative list passes it.',
        policies: [allowIf({ namespaces: [exact('')] }, { name: 'empty-ns' }), allowIf({ notNamespaces: [exact('a')], destinationPorts: [9090] }, { name: 'not-a' })],
        cases: [
          ['exact "" is the plaintext namespace', plaintext(), ALLOW],
          ['not-a passes plaintext', plaintext({ destinationPort: 9090 }), ALLOW],
          ['not-a stops a', mtls(ALICE, { destinationPort: 9090 }), NOT_ALLOWED],
        ],
      },
      {
        sentence: '`principals`: the peer identity with `spiffe://` **stripped** (e.g. `cluster.local/ns/a/sa/b`).',
        policies: [allowIf({ principals: [exact('cluster.local/ns/a/sa/alice')] }, { name: 'stripped' }), allowIf({ principals: [exact(ALICE)] }, { name: 'full-uri' })],
        cases: [
          ['the stripped form matches', mtls(ALICE), ALLOW],
          ['the full URI never does; the trust domain counts', mtls(ALICE_ELSEWHERE), NOT_ALLOWED],
        ],
      },
      {
        sentence: 'With no identity it never matches, so a negative list is satisfied.',
        policies: [allowIf({ principals: [presence], destinationPorts: [8080] }, { name: 'any-principal' }), allowIf({ notPrincipals: [prefix('')], destinationPorts: [9090] }, { name: 'not-anything' })],
        cases: [
          ['even presence does not match plaintext', plaintext(), NOT_ALLOWED],
          ['even a match-all prefix in a negative list lets plaintext through', plaintext({ destinationPort: 9090 }), ALLOW],
          ['while it stops every identity', mtls(ALICE, { destinationPort: 9090 }), NOT_ALLOWED],
        ],
      },
      {
        sentence: '`service_accounts`: exact ns + sa of the peer identity; false with no identity.',
        policies: [allowIf({ serviceAccounts: [{ namespace: 'a', serviceAccount: 'alice' }] }, { name: 'sa' }), allowIf({ notServiceAccounts: [{ namespace: 'a', serviceAccount: 'alice' }], destinationPorts: [9090] }, { name: 'not-sa' })],
        cases: [
          ['a/alice', mtls(ALICE), ALLOW],
          ['any trust domain', mtls(ALICE_ELSEWHERE), ALLOW],
          ['same name in another namespace', mtls('spiffe://cluster.local/ns/b/sa/alice'), NOT_ALLOWED],
          ['prefix is not enough', mtls('spiffe://cluster.local/ns/a/sa/alice2'), NOT_ALLOWED],
          ['no identity: false', plaintext(), NOT_ALLOWED],
          ['no identity: a negative list passes', plaintext({ destinationPort: 9090 }), ALLOW],
        ],
      },
      {
        sentence: '`source_ips`: CIDR contains the peer IP (for HBONE, the TCP peer, i.e. the client pod or waypoint IP).',
        policies: [allowIf({ sourceIps: [cidr('10.0.1.0/24'), cidr('fd00::/8')], notSourceIps: [cidr('10.0.1.99/32')] })],
        cases: [
          ['inside', mtls(ALICE), ALLOW],
          ['outside', mtls(ALICE, { sourceIp: '10.0.3.5' }), NOT_ALLOWED],
          ['excluded by the negative list', mtls(ALICE, { sourceIp: '10.0.1.99' }), NOT_ALLOWED],
          ['IPv6 peer', plaintext({ sourceIp: 'fd00::1234' }), ALLOW],
          ['IPv4-mapped IPv6 peer (dual-stack socket) matches the IPv4 CIDR', plaintext({ sourceIp: '::ffff:10.0.1.5' }), ALLOW],
          ['…and the negative one', plaintext({ sourceIp: '::ffff:10.0.1.99' }), NOT_ALLOWED],
        ],
      },
      {
        sentence: '`source_ips`: CIDR contains the peer IP (families do not mix: ::/0 is IPv6 only).',
        policies: [allowIf({ sourceIps: [cidr('::/0')] })],
        cases: [['an IPv4 peer', plaintext(), NOT_ALLOWED], ['an IPv6 peer', plaintext({ sourceIp: '2001:db8::1' }), ALLOW]],
      },
      {
        sentence: '`destination_ips`: CIDR contains the pod IP.',
        policies: [allowIf({ destinationIps: [cidr('10.0.2.7/32')] }, { name: 'to-pod' }), allowIf({ notDestinationIps: [cidr('10.0.0.0/8')] }, { name: 'not-10' })],
        cases: [
          ['the pod IP', plaintext(), ALLOW],
          ['IPv4-mapped pod IP', plaintext({ destinationIp: '::ffff:10.0.2.7' }), ALLOW],
          ['another IP in 10/8', plaintext({ destinationIp: '10.0.2.8' }), NOT_ALLOWED],
          ['outside 10/8', plaintext({ destinationIp: '192.168.0.1' }), ALLOW],
        ],
      },
      {
        sentence: '`destination_ports`: the target app port.',
        policies: [allowIf({ destinationPorts: [8080] })],
        cases: [['the app port', mtls(ALICE), ALLOW], ['not the HBONE port 15008 (§5.6)', mtls(ALICE, { destinationPort: 15008 }), NOT_ALLOWED]],
      },
    ],
  },
  {
    section: '§7 StringMatch',
    rows: [
      {
        sentence: 'StringMatch: exact / prefix / suffix / presence (non-empty). — exact',
        policies: [allowIf({ principals: [exact('cluster.local/ns/a/sa/alice')] })],
        cases: [['equal', mtls(ALICE), ALLOW], ['longer', mtls('spiffe://cluster.local/ns/a/sa/alice2'), NOT_ALLOWED]],
      },
      {
        sentence: 'StringMatch: exact / prefix / suffix / presence (non-empty). — prefix',
        policies: [allowIf({ principals: [prefix('cluster.local/ns/a/')] })],
        cases: [['starts with', mtls(ALICE), ALLOW], ['does not', mtls(BOB), NOT_ALLOWED]],
      },
      {
        sentence: 'StringMatch: exact / prefix / suffix / presence (non-empty). — suffix',
        policies: [allowIf({ principals: [suffix('/sa/alice')] })],
        cases: [['ends with', mtls(ALICE_ELSEWHERE), ALLOW], ['does not', mtls(BOB), NOT_ALLOWED]],
      },
      {
        sentence: 'StringMatch: exact / prefix / suffix / presence (non-empty). — presence',
        policies: [allowIf({ namespaces: [presence] })],
        cases: [['a namespace', mtls(CAROL), ALLOW], ['"" is not present', plaintext(), NOT_ALLOWED]],
      },
      {
        sentence: 'istiod maps `"*"` → presence, `"*x"` → suffix, `"x*"` → prefix',
        policies: [
          allowIf({ principals: ['*'].map(istiodString), destinationPorts: [1] }, { name: 'star' }),
          allowIf({ principals: ['*/sa/bob'].map(istiodString) }, { name: 'star-x' }),
          allowIf({ principals: ['cluster.local/ns/a/*'].map(istiodString) }, { name: 'x-star' }),
        ],
        cases: [
          ['"*" is any identity', mtls(CAROL, { destinationPort: 1 }), ALLOW],
          ['"*" is not plaintext', plaintext({ destinationPort: 1 }), NOT_ALLOWED],
          ['"*/sa/bob" is a suffix', mtls(BOB), ALLOW],
          ['"cluster.local/ns/a/*" is a prefix', mtls(ALICE), ALLOW],
          ['neither', mtls(CAROL), NOT_ALLOWED],
        ],
      },
      {
        sentence: 'A short `serviceAccounts: ["sa"]` entry gets the policy\'s namespace.',
        policies: [allowIf({ serviceAccounts: [istiodServiceAccount('alice', 'a')] }, { ns: 'a' })],
        cases: [['a/alice', mtls(ALICE), ALLOW], ['b/alice', mtls('spiffe://cluster.local/ns/b/sa/alice'), NOT_ALLOWED]],
      },
    ],
  },
  {
    section: '§7 istiod conversion of AuthorizationPolicy',
    rows: [
      {
        sentence: '`to.operation.ports/notPorts` → one clause.',
        // to: [{operation: {ports: ["8080"]}}, {operation: {ports: ["9090"]}}]
        policies: [allow([[[m({ destinationPorts: [8080] }), m({ destinationPorts: [9090] })]]])],
        cases: [['either `to` entry', plaintext({ destinationPort: 9090 }), ALLOW], ['neither', plaintext({ destinationPort: 7070 }), NOT_ALLOWED]],
      },
      {
        sentence: '`from.source.{ipBlocks, namespaces, principals, serviceAccounts, not*}` → one clause.',
        // to: [{ports: ["8080"]}], from: [{namespaces: ["a"]}, {ipBlocks: ["10.9.0.0/16"]}]
        policies: [allow([[[m({ destinationPorts: [8080] })], [m({ namespaces: [exact('a')] }), m({ sourceIps: [cidr('10.9.0.0/16')] })]]])],
        cases: [
          ['from a', mtls(ALICE), ALLOW],
          ['from the IP block', plaintext({ sourceIp: '10.9.1.1' }), ALLOW],
          ['from neither', mtls(BOB), NOT_ALLOWED],
          ['to another port: the `to` clause is AND\'ed', mtls(ALICE, { destinationPort: 9090 }), NOT_ALLOWED],
        ],
      },
      {
        sentence: 'Each `when` on `source.ip|source.namespace|source.principal|destination.ip|destination.port` → one clause.',
        // when: [{key: source.namespace, values: [a]}, {key: destination.port, notValues: ["9090"]}]
        policies: [allow([[[m({ namespaces: [exact('a')] })], [m({ notDestinationPorts: [9090] })]]])],
        cases: [['both conditions', mtls(ALICE), ALLOW], ['second fails', mtls(ALICE, { destinationPort: 9090 }), NOT_ALLOWED], ['first fails', mtls(BOB), NOT_ALLOWED]],
      },
      {
        sentence: 'An **ALLOW rule with HTTP attributes** (hosts, methods, paths, …) **gets no clauses**, so it never matches.',
        // rules: [{to: [{operation: {methods: ["GET"]}}]}]. istiod omits the rule
        // (handleRule → nil), so the policy arrives with zero rules; a rule that
        // did arrive with zero clauses would match everything (row above).
        policies: [allow([], { name: 'http-only' })],
        cases: [['no connection is allowed by it', mtls(ALICE), NOT_ALLOWED]],
      },
      {
        sentence: 'An **ALLOW rule with HTTP attributes** … never matches; the policy\'s other rules still do.',
        // rules: [{to: [{operation: {paths: ["/x"]}}]}, {from: [{source: {namespaces: ["b"]}}]}]
        policies: [allow([[[m({ namespaces: [exact('b')] })]]], { name: 'mixed' })],
        cases: [['the L4 rule', mtls(BOB), ALLOW], ['the omitted HTTP rule matches nobody', mtls(ALICE), NOT_ALLOWED]],
      },
      {
        sentence: 'A DENY rule keeps only its L4 parts.',
        // rules: [{to: [{operation: {ports: ["8080"], methods: ["POST"]}}]}]
        policies: [deny([[[m({ destinationPorts: [8080] })]]], { name: 'no-post-8080' })],
        cases: [['denied on the port whatever the method', mtls(ALICE), deniedBy('app/no-post-8080')], ['other ports', mtls(ALICE, { destinationPort: 9090 }), ALLOW]],
      },
      {
        sentence: 'A DENY rule keeps only its L4 parts — with none, an empty Match that is skipped (istio/istio#61166).',
        // rules: [{to: [{operation: {methods: ["POST"]}}]}]
        policies: [deny([[[m()]]], { name: 'no-post' })],
        cases: [['ztunnel enforces nothing from it', mtls(ALICE), ALLOW]],
      },
      {
        sentence: '`istio.io/dry-run` annotation → `dry_run`',
        policies: [deny([[]], { name: 'deny-all-dry', dryRun: true })],
        cases: [['a dry-run deny-all only reports', plaintext(), withNotes(ALLOW, { policy: 'app/deny-all-dry', action: 'Deny', matched: true })]],
      },
    ],
  },
  {
    section: '§7 PeerAuthentication',
    rows: [
      {
        sentence: 'PeerAuthentication STRICT → DENY policies with `not_principals:[presence]` (denies plaintext), including the static `istio-system/istio_converted_static_strict` WORKLOAD_SELECTOR policy',
        store: [denyIf({ notPrincipals: [presence] }, { ns: 'istio-system', name: 'istio_converted_static_strict', scope: 'WORKLOAD_SELECTOR' })],
        workload: { namespace: 'app', keys: ['istio-system/istio_converted_static_strict'] },
        cases: [
          ['plaintext is rejected', plaintext(), deniedBy('istio-system/istio_converted_static_strict')],
          ['mTLS is allowed', mtls(ALICE), ALLOW],
        ],
      },
      {
        sentence: '… and `converted_peer_authentication_*` ones (STRICT with a PERMISSIVE port: one rule, clauses AND\'ed)',
        store: [deny([[[m({ notPrincipals: [presence] })], [m({ notDestinationPorts: [9090] })]]], { ns: 'app', name: 'converted_peer_authentication_strict', scope: 'WORKLOAD_SELECTOR' })],
        workload: { namespace: 'app', keys: ['app/converted_peer_authentication_strict'] },
        cases: [
          ['plaintext to a STRICT port', plaintext(), deniedBy('app/converted_peer_authentication_strict')],
          ['plaintext to the PERMISSIVE port', plaintext({ destinationPort: 9090 }), ALLOW],
          ['mTLS anywhere', mtls(ALICE), ALLOW],
        ],
      },
      {
        sentence: '… and `converted_peer_authentication_*` ones (PERMISSIVE with a STRICT port: one rule per port)',
        store: [deny([[[m({ notPrincipals: [presence], destinationPorts: [8443] })]]], { ns: 'app', name: 'converted_peer_authentication_port', scope: 'WORKLOAD_SELECTOR' })],
        workload: { namespace: 'app', keys: ['app/converted_peer_authentication_port'] },
        cases: [
          ['plaintext to the STRICT port', plaintext({ destinationPort: 8443 }), deniedBy('app/converted_peer_authentication_port')],
          ['plaintext elsewhere', plaintext(), ALLOW],
          ['mTLS to the STRICT port', mtls(ALICE, { destinationPort: 8443 }), ALLOW],
        ],
      },
    ],
  },
];

for (const { section, rows } of ROWS) {
  describe(section, () => {
    for (const row of rows) {
      test(row.sentence, () => {
        let policies: Policy[];
        if (row.store !== undefined) {
          const store = new PolicyStore();
          for (const p of row.store) store.insert(policyKey(p), p);
          const w = row.workload ?? { namespace: 'app', keys: [] };
          const found = store.forWorkload(w.namespace, w.keys);
          assert.deepEqual(found.missing, w.missing ?? []);
          policies = found.policies;
        } else {
          policies = row.policies ?? [];
        }
        for (const [label, req, want] of row.cases) {
          const got = authorize(policies, req);
          assert.deepEqual(seen(got), want, label);
          // With a single enforced ALLOW policy, the verdict is `matches`.
          const [only] = policies;
          if (policies.length === 1 && only?.action === 'Allow' && !only.dryRun) assert.equal(matches(only, req), want.allowed, label);
        }
      });
    }
  });
}

describe('§7 conversion limits', () => {
  test('Actions other than ALLOW/DENY (e.g. CUSTOM, AUDIT) are not supported.', () => {
    assert.throws(
      () => policyFromXds({ name: 'ext-authz', namespace: 'app', scope: 1, action: 2, rules: [], extensions: [] }),
      (err: unknown) => err instanceof PolicyError && /unknown action 2/.test(err.message),
    );
  });
});

describe('authorize', () => {
  test('the deny reason and policy name the policy as ns/name', () => {
    const v = authorize([denyIf({ destinationPorts: [8080] }, { ns: 'shop', name: 'x' })], plaintext());
    assert.ok(!v.allowed);
    assert.equal(v.reason, `${EXPLICITLY_DENIED_PREFIX}shop/x`);
    assert.equal(v.policy, 'shop/x');
  });

  test('the common allowed verdict is one shared object (no allocation per connection)', () => {
    const p = [allowIf({ destinationPorts: [8080] })];
    assert.equal(authorize(p, plaintext()), authorize(p, mtls(ALICE)));
    assert.ok(Object.isFrozen(authorize([], plaintext())));
  });

  test('address parsing is cached per text, never stale across requests', () => {
    const p = [allowIf({ sourceIps: [cidr('10.0.1.0/24')] })];
    const seq = ['10.0.1.5', '10.0.1.5', '10.0.9.5', '10.0.9.5', '::ffff:10.0.1.7', 'garbage', '10.0.1.8'];
    assert.deepEqual(seq.map((ip) => authorize(p, plaintext({ sourceIp: ip })).allowed), [true, true, false, false, true, false, true]);
  });

  test('10k connections against 1k policies all get the right verdict', () => {
    // 1k policies for one workload (far more than real ones have): 500 DENY,
    // 499 ALLOW that miss, and one ALLOW that matches last, so every
    // connection evaluates all 1000. Speed belongs in a benchmark, not here.
    const policies: Policy[] = [];
    for (let i = 0; i < 500; i++) {
      policies.push(denyIf({ namespaces: [exact(`ns-${i}`)], sourceIps: [cidr(`10.${i % 250}.0.0/16`)], destinationPorts: [8080] }, { name: `d${i}` }));
    }
    for (let i = 0; i < 499; i++) {
      policies.push(allowIf({ principals: [exact(`cluster.local/ns/x/sa/sa-${i}`)], notDestinationIps: [cidr('fd00::/8')] }, { name: `a${i}` }));
    }
    policies.push(allowIf({ principals: [suffix('/sa/alice'), suffix('/sa/bob')] }, { name: 'last' }));
    const reqs = [mtls(ALICE), mtls(BOB, { sourceIp: '10.7.1.1' }), mtls(CAROL, { sourceIp: '::ffff:10.3.3.3' })];
    let allowed = 0;
    for (let i = 0; i < 10_000; i++) {
      const req = reqs[i % 3];
      if (req !== undefined && authorize(policies, req).allowed) allowed++;
    }
    assert.equal(allowed, 6_667);
  });
});
