// SPDX-License-Identifier: Apache-2.0
// The L4 authorization decision for one inbound connection (reference §7),
// pure and synchronous: the userspace proxy and the kernel fast path obey the
// same verdict. Follows ztunnel `src/state.rs` `assert_rbac` (evaluation
// order, with dry-run as added by istio/ztunnel#1659) and `src/rbac.rs`
// `Authorization::matches` (matching), both read for this file:
//
// - A policy with no rules never matches.
// - Rules are OR'ed; a rule's clauses are AND'ed and a rule with no clauses
//   matches (its clause loop never runs); a clause with no matches counts as
//   true (`clause.is_empty()`); within a clause, matches are OR'ed, skipping a
//   Match with every list empty, so a clause of only empty Matches is false.
// - Reference §7 also says "an ALLOW rule with HTTP attributes gets no
//   clauses, so it never matches". That is not a rule with zero clauses (it
//   would match everything): istiod's `handleRule` returns nil for such a rule
//   and `convertAuthorizationPolicy` then omits the rule entirely
//   (istio `pilot/pkg/serviceregistry/kube/controller/ambient/authorization.go`;
//   istio/istio#54334: "the actual behavior is to fully omit the rule"). If no
//   rule is left, the policy has zero rules and never matches.
// - A DENY rule with only HTTP attributes keeps an empty Match per `to`/`from`
//   entry, which ztunnel skips, so such a DENY never matches (istio/istio#61166).
//
// Cost: this runs per connection. CIDRs are pre-parsed in the policy
// (`Cidr`); the request's two address strings are parsed at most once per
// call, only if some Match has IP lists, into reused scratch words with a
// one-entry cache each (the destination is usually the same pod IP).
import type { Identity } from '../identity/spiffe.ts';
import type { Cidr, IpWords, Policy, PolicyAction, PolicyMatch, ServiceAccountMatcher, StringMatch } from '../state/policy.ts';
import { cidrContains, newIpWords, parseIpInto, policyKey } from '../state/policy.ts';

export interface AuthzRequest {
  /** Peer identity from mTLS; undefined for plaintext. */
  source?: Identity;
  /** The TCP peer: the client pod, or the waypoint for traffic through one. */
  sourceIp: string;
  /** The destination pod IP. */
  destinationIp: string;
  /** the target (app) port, never 15008 */
  destinationPort: number;
}

export interface DryRunNote { policy: string; action: PolicyAction; matched: boolean }

/**
 * `dryRun` lists every dry-run policy evaluated, in order, whether or not it
 * matched: all dry-run DENY policies, then (unless a DENY decided) all
 * dry-run ALLOW policies. With dry-run ALLOW notes present, no real ALLOW
 * policy and none matched, enforcing them would deny (istio/ztunnel#1745).
 * A verdict may be shared between calls: do not mutate it.
 */
export type AuthzVerdict =
  | { allowed: true; dryRun: readonly DryRunNote[] }
  | { allowed: false; reason: string; policy?: string; dryRun: readonly DryRunNote[] };

/** ztunnel's `AuthorizationRejectionError::NotAllowed` text. */
export const NOT_ALLOWED_REASON = 'allow policies exist, but none allowed';
/** ztunnel's `ExplicitlyDenied` text, followed by "ns/name". */
export const EXPLICITLY_DENIED_PREFIX = 'explicitly denied by: ';

const NO_NOTES: readonly DryRunNote[] = Object.freeze([]);
const ALLOWED: AuthzVerdict = Object.freeze({ allowed: true, dryRun: NO_NOTES });

/** Decides one connection against the policies that apply to its destination (`PolicyStore.forWorkload`). */
export function authorize(policies: readonly Policy[], req: AuthzRequest): AuthzVerdict {
  const f = begin(req);
  let notes: DryRunNote[] | undefined;

  // 1–2. Dry-run DENY policies are all evaluated and only noted; the first
  // matching enforced DENY decides.
  let denied: Policy | undefined;
  for (let i = 0; i < policies.length; i++) {
    const p = policies[i];
    if (p === undefined || p.action !== 'Deny') continue;
    if (p.dryRun) notes = note(notes, p, policyMatches(p, f));
    else if (denied === undefined && policyMatches(p, f)) denied = p;
  }
  if (denied !== undefined) return deniedVerdict(denied, notes);

  // 3–5. Dry-run ALLOW policies are all evaluated and only noted; no enforced
  // ALLOW policy → allow; else any matching one allows.
  let haveAllow = false;
  let allowed = false;
  for (let i = 0; i < policies.length; i++) {
    const p = policies[i];
    if (p === undefined || p.action !== 'Allow') continue;
    if (p.dryRun) {
      notes = note(notes, p, policyMatches(p, f));
    } else {
      haveAllow = true;
      if (!allowed && policyMatches(p, f)) allowed = true;
    }
  }
  if (!haveAllow || allowed) return notes === undefined ? ALLOWED : allowedVerdict(notes);
  return notAllowedVerdict(notes);
}

// The rarer outcomes are built out of line: an object literal that the
// optimizer has not yet seen executed would deoptimize `authorize` each time
// one first runs.
function note(notes: DryRunNote[] | undefined, p: Policy, matched: boolean): DryRunNote[] {
  const n: DryRunNote = { policy: policyKey(p), action: p.action, matched };
  if (notes === undefined) return [n];
  notes.push(n);
  return notes;
}

function deniedVerdict(p: Policy, notes: DryRunNote[] | undefined): AuthzVerdict {
  const key = policyKey(p);
  return { allowed: false, reason: EXPLICITLY_DENIED_PREFIX + key, policy: key, dryRun: notes ?? NO_NOTES };
}

function allowedVerdict(notes: DryRunNote[]): AuthzVerdict {
  return { allowed: true, dryRun: notes };
}

function notAllowedVerdict(notes: DryRunNote[] | undefined): AuthzVerdict {
  return { allowed: false, reason: NOT_ALLOWED_REASON, dryRun: notes ?? NO_NOTES };
}

/** Whether one policy matches the connection (its action and dry-run flag aside). */
export function matches(p: Policy, req: AuthzRequest): boolean {
  return policyMatches(p, begin(req));
}

// ---- Connection facts -------------------------------------------------------

/**
 * The attributes of the connection being decided, derived lazily. One module
 * instance is reused: the decision is synchronous, so calls never interleave.
 */
class Facts {
  req: AuthzRequest = { sourceIp: '', destinationIp: '', destinationPort: 0 };
  /** identity URI without "spiffe://"; undefined without an identity; null until computed */
  #principal: string | undefined | null = null;
  #srcText = '';
  readonly #src: IpWords = newIpWords();
  #dstText = '';
  readonly #dst: IpWords = newIpWords();

  reset(req: AuthzRequest): void {
    this.req = req;
    this.#principal = null;
  }

  /** Namespace of the peer identity; "" without one (ztunnel `unwrap_or_default`). */
  namespace(): string {
    return this.req.source?.namespace ?? '';
  }

  /** Principal as Istio writes it (`cluster.local/ns/a/sa/b`); undefined without an identity. */
  principal(): string | undefined {
    if (this.#principal === null) {
      const id = this.req.source;
      this.#principal = id === undefined ? undefined : `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
    }
    return this.#principal;
  }

  src(): IpWords {
    const text = this.req.sourceIp;
    if (text !== this.#srcText) {
      parseIpInto(text, this.#src);
      this.#srcText = text;
    }
    return this.#src;
  }

  dst(): IpWords {
    const text = this.req.destinationIp;
    if (text !== this.#dstText) {
      parseIpInto(text, this.#dst);
      this.#dstText = text;
    }
    return this.#dst;
  }
}

const facts = new Facts();

function begin(req: AuthzRequest): Facts {
  facts.reset(req);
  return facts;
}

// ---- Matching ---------------------------------------------------------------

function policyMatches(p: Policy, f: Facts): boolean {
  // Zero rules never match; rules are OR'ed.
  const rules = p.rules;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i];
    if (rule !== undefined && ruleMatches(rule, f)) return true;
  }
  return false;
}

/** Clauses AND'ed: every non-empty clause needs one matching non-empty Match. */
function ruleMatches(rule: readonly (readonly PolicyMatch[])[], f: Facts): boolean {
  for (let i = 0; i < rule.length; i++) {
    const clause = rule[i];
    if (clause === undefined || clause.length === 0) continue; // an empty clause counts as true
    let clauseMatch = false;
    for (let j = 0; j < clause.length; j++) {
      const m = clause[j];
      if (m !== undefined && !isEmptyMatch(m) && matchMatches(m, f)) {
        clauseMatch = true;
        break;
      }
    }
    if (!clauseMatch) return false;
  }
  return true;
}

function isEmptyMatch(m: PolicyMatch): boolean {
  return m.destinationPorts.length === 0 && m.notDestinationPorts.length === 0
    && m.namespaces.length === 0 && m.notNamespaces.length === 0
    && m.principals.length === 0 && m.notPrincipals.length === 0
    && m.serviceAccounts.length === 0 && m.notServiceAccounts.length === 0
    && m.sourceIps.length === 0 && m.notSourceIps.length === 0
    && m.destinationIps.length === 0 && m.notDestinationIps.length === 0;
}

/**
 * Every field type AND'ed; per type, an empty positive list is true, else
 * any-of; an empty negative list is true, else none-of. Cheapest types first
 * (the result is the same in any order: each type is a pure predicate).
 */
function matchMatches(m: PolicyMatch, f: Facts): boolean {
  const port = f.req.destinationPort;
  if (m.destinationPorts.length > 0 && !hasPort(m.destinationPorts, port)) return false;
  if (m.notDestinationPorts.length > 0 && hasPort(m.notDestinationPorts, port)) return false;

  if (m.namespaces.length > 0 || m.notNamespaces.length > 0) {
    if (!stringsOk(m.namespaces, m.notNamespaces, f.namespace())) return false;
  }
  if (m.serviceAccounts.length > 0 || m.notServiceAccounts.length > 0) {
    const id = f.req.source;
    if (m.serviceAccounts.length > 0 && !anyServiceAccount(m.serviceAccounts, id)) return false;
    if (m.notServiceAccounts.length > 0 && anyServiceAccount(m.notServiceAccounts, id)) return false;
  }
  if (m.principals.length > 0 || m.notPrincipals.length > 0) {
    if (!stringsOk(m.principals, m.notPrincipals, f.principal())) return false;
  }
  if (m.sourceIps.length > 0 || m.notSourceIps.length > 0) {
    if (!cidrsOk(m.sourceIps, m.notSourceIps, f.src())) return false;
  }
  if (m.destinationIps.length > 0 || m.notDestinationIps.length > 0) {
    if (!cidrsOk(m.destinationIps, m.notDestinationIps, f.dst())) return false;
  }
  return true;
}

/** `value` undefined (a principal without identity) matches no StringMatch. */
function stringsOk(pos: readonly StringMatch[], neg: readonly StringMatch[], value: string | undefined): boolean {
  if (pos.length > 0 && !anyString(pos, value)) return false;
  return neg.length === 0 || !anyString(neg, value);
}

function hasPort(list: readonly number[], port: number): boolean {
  for (let i = 0; i < list.length; i++) {
    if (list[i] === port) return true;
  }
  return false;
}

function anyString(list: readonly StringMatch[], value: string | undefined): boolean {
  if (value === undefined) return false;
  for (let i = 0; i < list.length; i++) {
    const s = list[i];
    if (s !== undefined && stringMatches(s, value)) return true;
  }
  return false;
}

/** ztunnel `StringMatch::matches`: presence means non-empty. */
export function stringMatches(s: StringMatch, value: string): boolean {
  switch (s.kind) {
    case 'exact': return value === s.value;
    case 'prefix': return value.startsWith(s.value);
    case 'suffix': return value.endsWith(s.value);
    case 'presence': return value !== '';
  }
}

/** Exact namespace + service account of the peer; false with no identity. */
function anyServiceAccount(list: readonly ServiceAccountMatcher[], id: Identity | undefined): boolean {
  if (id === undefined) return false;
  for (let i = 0; i < list.length; i++) {
    const sa = list[i];
    if (sa !== undefined && sa.serviceAccount === id.serviceAccount && sa.namespace === id.namespace) return true;
  }
  return false;
}

function cidrsOk(pos: readonly Cidr[], neg: readonly Cidr[], ip: IpWords): boolean {
  if (pos.length > 0 && !anyCidr(pos, ip)) return false;
  return neg.length === 0 || !anyCidr(neg, ip);
}

function anyCidr(list: readonly Cidr[], ip: IpWords): boolean {
  for (let i = 0; i < list.length; i++) {
    const c = list[i];
    if (c !== undefined && cidrContains(c, ip)) return true;
  }
  return false;
}
