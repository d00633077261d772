// SPDX-License-Identifier: Apache-2.0
// Authorization policies as Skein holds them: the domain type, the one fallible
// conversion from the xDS `istio.security.Authorization`, the CIDR form that
// the authz decision matches against without parsing, and the /config_dump
// shape ztunnel prints.
//
// Sources read (istio/ztunnel, istio/istio):
// - ztunnel `src/rbac.rs`: `Authorization { name, namespace, scope, action,
//   rules: Vec<Vec<Vec<RbacMatch>>>, dry_run }` with serde camelCase;
//   `RbacMatch` fields are skipped when empty; `StringMatch` is an externally
//   tagged enum `Prefix(s) | Suffix(s) | Exact(s) | Presence()`; CIDRs are
//   `ipnet::IpNet`, printed "addr/len" with the address as sent (not masked);
//   `RbacScope` Global|Namespace|WorkloadSelector, `RbacAction` Allow|Deny.
// - istio `istioctl/pkg/writer/ztunnel/configdump/api.go`: `ZtunnelPolicy`
//   and `PolicyMatch` parse the same names (`sourceIps` as strings,
//   `Exact`/`Prefix`/`Suffix`/`Presence` keys).
// - ztunnel `src/state/policy.rs`: `to_key()` is "namespace/name"; Global
//   policies are indexed under namespace "".
import type {
  Authorization as XdsAuthorization,
  IpPrefix as XdsIpPrefix,
  Match as XdsMatch,
  ServiceAccountMatch as XdsServiceAccountMatch,
  StringMatch as XdsStringMatch,
} from '../xds/proto.ts';
import { AuthorizationAction, AuthorizationScope } from '../xds/proto.ts';

// ---- Domain types -----------------------------------------------------------

export type StringMatch = { kind: 'exact' | 'prefix' | 'suffix'; value: string } | { kind: 'presence' };

/**
 * An IP prefix. `address`, `prefix` and `family` are what was sent (the
 * address in Rust's text form, as ztunnel prints it). The rest is the
 * matching form, computed once here so that a request never parses a CIDR:
 * the masked network and the mask as four big-endian 32-bit words (int32),
 * and `matchFamily`, the family a canonical address must have. IPv4 uses only
 * word 3. An IPv4-mapped IPv6 prefix (::ffff:a.b.c.d/96 or longer) matches as
 * the IPv4 prefix it denotes, because request addresses are canonicalized
 * (::ffff:a.b.c.d is IPv4); any other IPv6 prefix, ::/0 included, never
 * matches an IPv4 address, as `IpNet::contains` never does across families.
 * Build with `cidrFromBytes` or `parseCidr`.
 */
export interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 4 | 6;
  readonly matchFamily: 4 | 6;
  readonly net0: number; readonly net1: number; readonly net2: number; readonly net3: number;
  readonly mask0: number; readonly mask1: number; readonly mask2: number; readonly mask3: number;
}

export interface ServiceAccountMatcher { namespace: string; serviceAccount: string }

/**
 * One Match. The lists are read-only: policies are shared by the store and
 * every connection, and the conversion gives all empty lists one frozen array
 * (most of the twelve are empty; sharing keeps a policy small and the
 * per-connection walk in cache).
 */
export interface PolicyMatch {
  namespaces: readonly StringMatch[]; notNamespaces: readonly StringMatch[];
  principals: readonly StringMatch[]; notPrincipals: readonly StringMatch[];
  serviceAccounts: readonly ServiceAccountMatcher[]; notServiceAccounts: readonly ServiceAccountMatcher[];
  sourceIps: readonly Cidr[]; notSourceIps: readonly Cidr[]; destinationIps: readonly Cidr[]; notDestinationIps: readonly Cidr[];
  destinationPorts: readonly number[]; notDestinationPorts: readonly number[];
}

export type PolicyScope = 'Global' | 'Namespace' | 'WorkloadSelector';
export type PolicyAction = 'Allow' | 'Deny';

export interface Policy {
  name: string;
  /** As sent. A Global policy keeps its own (root) namespace here; only the store's index files it under "". */
  namespace: string;
  scope: PolicyScope;
  action: PolicyAction;
  dryRun: boolean;
  /** rules (OR) → clauses (AND) → matches (OR) */
  rules: PolicyMatch[][][];
}

/** The policy subsystem's error; `code` is stable. */
export class PolicyError extends Error {
  override name = 'PolicyError';
  readonly code = 'SKEIN_BAD_POLICY';
}

/**
 * "namespace/name", ztunnel's `Authorization::to_key()`, for every scope: a
 * Global policy is keyed by its own namespace (the root namespace istiod sends,
 * e.g. "istio-system/allow-all"), not by "". This is the form of
 * `Workload.authorization_policies` entries, of istiod's xDS resource names,
 * and of the "explicitly denied by: ns/name" reason.
 */
export function policyKey(p: { namespace: string; name: string }): string {
  return `${p.namespace}/${p.name}`;
}

// ---- IP addresses -------------------------------------------------------------

/**
 * An address in matching form. `family` 0 means "not an address" (matches no
 * CIDR). IPv4-mapped IPv6 addresses are canonicalized to IPv4. Words are
 * big-endian 32-bit int32 values; IPv4 is in `w3`.
 */
export interface IpWords { family: 0 | 4 | 6; w0: number; w1: number; w2: number; w3: number }

export function newIpWords(): IpWords {
  return { family: 0, w0: 0, w1: 0, w2: 0, w3: 0 };
}

/** Parses `text` into `out` (no allocation for IPv4); returns false and sets family 0 if it is not an address. */
export function parseIpInto(text: string, out: IpWords): boolean {
  out.w0 = 0; out.w1 = 0; out.w2 = 0; out.w3 = 0;
  const v4 = parseIpv4(text, 0, text.length);
  if (v4 !== -1) {
    out.family = 4; out.w3 = v4 | 0;
    return true;
  }
  if (!parseIpv6(text, out)) {
    out.family = 0;
    return false;
  }
  if (out.w0 === 0 && out.w1 === 0 && out.w2 === 0xffff) out.family = 4;
  else out.family = 6;
  return true;
}

/** Dotted quad in text[start, end) as uint32, or -1. No leading zeros, like Rust and Go. */
function parseIpv4(text: string, start: number, end: number): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) return -1; // leading zero
      octet = octet * 10 + (c - 48);
      if (octet > 255) return -1;
      digits++;
    } else if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + octet;
      octet = 0; digits = 0; dots++;
    } else {
      return -1;
    }
  }
  if (digits === 0 || dots !== 3) return -1;
  return value * 256 + octet;
}

/** RFC 4291 text (with "::", an optional trailing dotted quad and an optional %zone) into out.w0..w3. */
function parseIpv6(text: string, out: IpWords): boolean {
  let end = text.indexOf('%');
  if (end === -1) end = text.length;
  if (end < 2) return false;
  const groups = new Array<number>(8).fill(0);
  let n = 0; // groups written before "::", then after
  let gap = -1; // index in `groups` where "::" stands
  let i = 0;
  if (text.charCodeAt(0) === 58) { // leading "::"
    if (text.charCodeAt(1) !== 58) return false;
    gap = 0; i = 2;
    if (i === end) return finish(groups, n, gap, out);
  }
  for (;;) {
    // One group: hex digits, or a dotted quad that ends the address.
    let value = 0;
    let digits = 0;
    const start = i;
    while (i < end) {
      const c = text.charCodeAt(i);
      let d: number;
      if (c >= 48 && c <= 57) d = c - 48;
      else if (c >= 97 && c <= 102) d = c - 87;
      else if (c >= 65 && c <= 70) d = c - 55;
      else break;
      value = value * 16 + d;
      digits++; i++;
    }
    if (i < end && text.charCodeAt(i) === 46) { // embedded IPv4
      const v4 = parseIpv4(text, start, end);
      if (v4 === -1 || n > 6) return false;
      groups[n++] = Math.floor(v4 / 65536);
      groups[n++] = v4 % 65536;
      return finish(groups, n, gap, out);
    }
    if (digits === 0 || digits > 4 || n === 8) return false;
    groups[n++] = value;
    if (i === end) return finish(groups, n, gap, out);
    if (text.charCodeAt(i) !== 58) return false;
    i++;
    if (i < end && text.charCodeAt(i) === 58) { // "::"
      if (gap !== -1) return false;
      gap = n; i++;
      if (i === end) return finish(groups, n, gap, out);
    } else if (i === end) {
      return false; // trailing single ':'
    }
  }
}

function finish(groups: number[], n: number, gap: number, out: IpWords): boolean {
  let g = groups;
  if (gap === -1) {
    if (n !== 8) return false;
  } else {
    if (n > 7) return false; // "::" stands for at least one zero group
    // The groups after the gap go to the end; zeros fill the gap.
    g = new Array<number>(8).fill(0);
    for (let k = 0; k < gap; k++) g[k] = groups[k] ?? 0;
    const tail = n - gap;
    for (let k = 0; k < tail; k++) g[8 - tail + k] = groups[gap + k] ?? 0;
  }
  out.w0 = (((g[0] ?? 0) << 16) | (g[1] ?? 0)) | 0;
  out.w1 = (((g[2] ?? 0) << 16) | (g[3] ?? 0)) | 0;
  out.w2 = (((g[4] ?? 0) << 16) | (g[5] ?? 0)) | 0;
  out.w3 = (((g[6] ?? 0) << 16) | (g[7] ?? 0)) | 0;
  return true;
}

/**
 * An address as Rust's `Display` prints it (what ztunnel's config_dump shows):
 * dotted quad; IPv6 in lowercase hex with the first longest run of two or more
 * zero groups as "::", and IPv4-mapped addresses as ::ffff:a.b.c.d.
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0] ?? 0}.${bytes[1] ?? 0}.${bytes[2] ?? 0}.${bytes[3] ?? 0}`;
  const g: number[] = [];
  for (let k = 0; k < 16; k += 2) g.push(((bytes[k] ?? 0) << 8) | (bytes[k + 1] ?? 0));
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${formatIp(bytes.subarray(12, 16))}`;
  }
  let bestAt = -1, bestLen = 0;
  for (let k = 0; k < 8;) {
    if (g[k] !== 0) { k++; continue; }
    let e = k;
    while (e < 8 && g[e] === 0) e++;
    if (e - k > bestLen) { bestAt = k; bestLen = e - k; }
    k = e;
  }
  const hex = (from: number, to: number): string => g.slice(from, to).map((x) => x.toString(16)).join(':');
  if (bestLen < 2) return hex(0, 8);
  return `${hex(0, bestAt)}::${hex(bestAt + bestLen, 8)}`;
}

function maskWord(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return -1;
  return (-1 << (32 - bits)) | 0;
}

/** A CIDR from the xDS form: 4 or 16 address bytes and a prefix length. Throws PolicyError. */
export function cidrFromBytes(bytes: Uint8Array, prefix: number): Cidr {
  let family: 4 | 6;
  if (bytes.length === 4) family = 4;
  else if (bytes.length === 16) family = 6;
  else throw new PolicyError(`address has ${bytes.length} bytes, want 4 (IPv4) or 16 (IPv6)`);
  const max = family === 4 ? 32 : 128;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) {
    throw new PolicyError(`prefix length ${prefix} is out of range for IPv${family} (0-${max})`);
  }
  const word = (k: number): number =>
    (((bytes[k] ?? 0) << 24) | ((bytes[k + 1] ?? 0) << 16) | ((bytes[k + 2] ?? 0) << 8) | (bytes[k + 3] ?? 0)) | 0;
  const address = formatIp(bytes);
  if (family === 4) return v4Cidr(address, prefix, 4, word(0), prefix);
  const w0 = word(0), w1 = word(4), w2 = word(8), w3 = word(12);
  if (prefix >= 96 && w0 === 0 && w1 === 0 && w2 === 0xffff) return v4Cidr(address, prefix, 6, w3, prefix - 96);
  const m0 = maskWord(prefix), m1 = maskWord(prefix - 32), m2 = maskWord(prefix - 64), m3 = maskWord(prefix - 96);
  return {
    address, prefix, family, matchFamily: 6,
    net0: w0 & m0, net1: w1 & m1, net2: w2 & m2, net3: w3 & m3,
    mask0: m0, mask1: m1, mask2: m2, mask3: m3,
  };
}

function v4Cidr(address: string, prefix: number, family: 4 | 6, w: number, bits: number): Cidr {
  const m = maskWord(bits);
  return {
    address, prefix, family, matchFamily: 4,
    net0: 0, net1: 0, net2: 0, net3: w & m,
    mask0: 0, mask1: 0, mask2: 0, mask3: m,
  };
}

/** "10.0.0.0/8", "fd00::/8", or a bare address (a host prefix). Throws PolicyError. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addr = slash === -1 ? text : text.slice(0, slash);
  const ip = newIpWords();
  // Parse without canonicalizing so that ::ffff:a.b.c.d stays a 16-byte prefix.
  const v4 = parseIpv4(addr, 0, addr.length);
  let bytes: Uint8Array;
  if (v4 !== -1) {
    bytes = new Uint8Array([v4 >>> 24, (v4 >>> 16) & 255, (v4 >>> 8) & 255, v4 & 255]);
  } else if (!addr.includes('%') && parseIpv6(addr, ip)) {
    bytes = new Uint8Array(16);
    const view = new DataView(bytes.buffer);
    view.setInt32(0, ip.w0); view.setInt32(4, ip.w1); view.setInt32(8, ip.w2); view.setInt32(12, ip.w3);
  } else {
    throw new PolicyError(`not an IP address or CIDR: ${JSON.stringify(text)}`);
  }
  let prefix = bytes.length * 8;
  if (slash !== -1) {
    const p = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) throw new PolicyError(`not an IP address or CIDR: ${JSON.stringify(text)}`);
    prefix = Number(p);
  }
  return cidrFromBytes(bytes, prefix);
}

/** Whether the CIDR contains the (canonical) address. */
export function cidrContains(c: Cidr, ip: IpWords): boolean {
  if (ip.family !== c.matchFamily) return false;
  if ((ip.w3 & c.mask3) !== c.net3) return false;
  if (c.matchFamily === 4) return true;
  return (ip.w0 & c.mask0) === c.net0 && (ip.w1 & c.mask1) === c.net1 && (ip.w2 & c.mask2) === c.net2;
}

export function cidrText(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

// ---- xDS → domain ------------------------------------------------------------

const PRESENCE: StringMatch = Object.freeze({ kind: 'presence' });

/**
 * Converts one xDS Authorization. Throws PolicyError naming the problem:
 * no name; a scope or action outside the enum (ztunnel's `TryFrom` rejects
 * those too: only ALLOW and DENY exist); a StringMatch with no variant; an
 * address that is not 4 or 16 bytes or a prefix length out of range; a port
 * above 65535.
 *
 * Deliberately stricter than ztunnel, which silently drops an empty
 * StringMatch or a bad address (`filter_map`) and truncates ports (`as u16`):
 * dropping the only entry of a positive list empties it, and an empty list
 * matches everything, so a malformed ALLOW would widen access. Rejecting the
 * resource (a NACK) keeps the previous version in force instead.
 */
export function policyFromXds(x: XdsAuthorization): Policy {
  const name = x.name ?? '';
  const namespace = x.namespace ?? '';
  if (name === '') {
    throw new PolicyError(`authorization policy ${namespace === '' ? 'with no namespace' : `in namespace ${JSON.stringify(namespace)}`} has no name`);
  }
  const where = `authorization policy ${JSON.stringify(`${namespace}/${name}`)}`;
  const scope = scopeFromXds(x.scope ?? AuthorizationScope.GLOBAL, where);
  const action = actionFromXds(x.action ?? AuthorizationAction.ALLOW, where);
  const rules: PolicyMatch[][][] = [];
  for (let i = 0; i < x.rules.length; i++) {
    const clauses = x.rules[i]?.clauses ?? [];
    const rule: PolicyMatch[][] = [];
    for (let j = 0; j < clauses.length; j++) {
      const xm = clauses[j]?.matches ?? [];
      const clause: PolicyMatch[] = [];
      for (let k = 0; k < xm.length; k++) {
        const m = xm[k];
        if (m === undefined) continue;
        try {
          clause.push(matchFromXds(m));
        } catch (err) {
          if (err instanceof PolicyError) throw new PolicyError(`${where}: rules[${i}].clauses[${j}].matches[${k}].${err.message}`);
          throw err;
        }
      }
      rule.push(clause);
    }
    rules.push(rule);
  }
  return { name, namespace, scope, action, dryRun: x.dryRun ?? false, rules };
}

function scopeFromXds(v: number, where: string): PolicyScope {
  switch (v) {
    case AuthorizationScope.GLOBAL: return 'Global';
    case AuthorizationScope.NAMESPACE: return 'Namespace';
    case AuthorizationScope.WORKLOAD_SELECTOR: return 'WorkloadSelector';
    default: throw new PolicyError(`${where}: unknown scope ${v} (want GLOBAL=0, NAMESPACE=1 or WORKLOAD_SELECTOR=2)`);
  }
}

function actionFromXds(v: number, where: string): PolicyAction {
  switch (v) {
    case AuthorizationAction.ALLOW: return 'Allow';
    case AuthorizationAction.DENY: return 'Deny';
    default: throw new PolicyError(`${where}: unknown action ${v} (only ALLOW=0 and DENY=1 are supported)`);
  }
}

/** Throws PolicyError whose message starts with the field path inside the Match. */
function matchFromXds(m: XdsMatch): PolicyMatch {
  return {
    namespaces: list(m.namespaces, 'namespaces', stringMatchFromXds),
    notNamespaces: list(m.notNamespaces, 'notNamespaces', stringMatchFromXds),
    principals: list(m.principals, 'principals', stringMatchFromXds),
    notPrincipals: list(m.notPrincipals, 'notPrincipals', stringMatchFromXds),
    serviceAccounts: list(m.serviceAccounts, 'serviceAccounts', serviceAccountFromXds),
    notServiceAccounts: list(m.notServiceAccounts, 'notServiceAccounts', serviceAccountFromXds),
    sourceIps: list(m.sourceIps, 'sourceIps', cidrFromXds),
    notSourceIps: list(m.notSourceIps, 'notSourceIps', cidrFromXds),
    destinationIps: list(m.destinationIps, 'destinationIps', cidrFromXds),
    notDestinationIps: list(m.notDestinationIps, 'notDestinationIps', cidrFromXds),
    destinationPorts: list(m.destinationPorts, 'destinationPorts', portFromXds),
    notDestinationPorts: list(m.notDestinationPorts, 'notDestinationPorts', portFromXds),
  };
}

const EMPTY: readonly never[] = Object.freeze([]);

function list<X, T>(xs: readonly X[], field: string, convert: (x: X) => T): readonly T[] {
  if (xs.length === 0) return EMPTY;
  const out: T[] = [];
  for (let n = 0; n < xs.length; n++) {
    const x = xs[n];
    if (x === undefined) continue;
    try {
      out.push(convert(x));
    } catch (err) {
      if (err instanceof PolicyError) throw new PolicyError(`${field}[${n}]: ${err.message}`);
      throw err;
    }
  }
  return out;
}

function stringMatchFromXds(s: XdsStringMatch): StringMatch {
  if (s.exact !== undefined) return { kind: 'exact', value: s.exact };
  if (s.prefix !== undefined) return { kind: 'prefix', value: s.prefix };
  if (s.suffix !== undefined) return { kind: 'suffix', value: s.suffix };
  if (s.presence !== undefined) return PRESENCE;
  throw new PolicyError('StringMatch has none of exact, prefix, suffix, presence set');
}

function serviceAccountFromXds(s: XdsServiceAccountMatch): ServiceAccountMatcher {
  return { namespace: s.namespace ?? '', serviceAccount: s.serviceAccount ?? '' };
}

function cidrFromXds(a: XdsIpPrefix): Cidr {
  return cidrFromBytes(a.address ?? new Uint8Array(0), a.length ?? 0);
}

function portFromXds(p: number): number {
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new PolicyError(`port ${p} is out of range (0-65535)`);
  return p;
}

// ---- /config_dump -----------------------------------------------------------

/** serde's externally tagged `StringMatch`; `Presence()` is an empty tuple variant, so `[]`. */
export type StringMatchDump = { Exact: string } | { Prefix: string } | { Suffix: string } | { Presence: [] };

/** `RbacMatch` with serde's `skip_serializing_if = "Vec::is_empty"`: empty lists are absent. */
export interface PolicyMatchDump {
  namespaces?: StringMatchDump[]; notNamespaces?: StringMatchDump[];
  serviceAccounts?: ServiceAccountMatcher[]; notServiceAccounts?: ServiceAccountMatcher[];
  principals?: StringMatchDump[]; notPrincipals?: StringMatchDump[];
  sourceIps?: string[]; notSourceIps?: string[];
  destinationIps?: string[]; notDestinationIps?: string[];
  destinationPorts?: number[]; notDestinationPorts?: number[];
}

export interface PolicyDump {
  name: string; namespace: string; scope: PolicyScope; action: PolicyAction;
  rules: PolicyMatchDump[][][]; dryRun: boolean;
}

/**
 * One entry of /config_dump `policies`, byte-for-byte what ztunnel's serde
 * prints once JSON-encoded: keys in the Rust struct's field order, empty match
 * lists left out (an all-empty match is `{}`), string matches as
 * `{"Exact": "x"}` / `{"Prefix": "x"}` / `{"Suffix": "x"}` / `{"Presence": []}`
 * (checked against serde_json 1.x: a zero-field tuple variant is an empty
 * array; istioctl's `Presence any` accepts it), CIDRs as "addr/len".
 */
export function policyToConfigDump(p: Policy): PolicyDump {
  return {
    name: p.name,
    namespace: p.namespace,
    scope: p.scope,
    action: p.action,
    rules: p.rules.map((rule) => rule.map((clause) => clause.map(matchToDump))),
    dryRun: p.dryRun,
  };
}

function matchToDump(m: PolicyMatch): PolicyMatchDump {
  const d: PolicyMatchDump = {};
  if (m.namespaces.length > 0) d.namespaces = m.namespaces.map(stringMatchToDump);
  if (m.notNamespaces.length > 0) d.notNamespaces = m.notNamespaces.map(stringMatchToDump);
  if (m.serviceAccounts.length > 0) d.serviceAccounts = m.serviceAccounts.map(saToDump);
  if (m.notServiceAccounts.length > 0) d.notServiceAccounts = m.notServiceAccounts.map(saToDump);
  if (m.principals.length > 0) d.principals = m.principals.map(stringMatchToDump);
  if (m.notPrincipals.length > 0) d.notPrincipals = m.notPrincipals.map(stringMatchToDump);
  if (m.sourceIps.length > 0) d.sourceIps = m.sourceIps.map(cidrText);
  if (m.notSourceIps.length > 0) d.notSourceIps = m.notSourceIps.map(cidrText);
  if (m.destinationIps.length > 0) d.destinationIps = m.destinationIps.map(cidrText);
  if (m.notDestinationIps.length > 0) d.notDestinationIps = m.notDestinationIps.map(cidrText);
  if (m.destinationPorts.length > 0) d.destinationPorts = [...m.destinationPorts];
  if (m.notDestinationPorts.length > 0) d.notDestinationPorts = [...m.notDestinationPorts];
  return d;
}

function stringMatchToDump(s: StringMatch): StringMatchDump {
  switch (s.kind) {
    case 'exact': return { Exact: s.value };
    case 'prefix': return { Prefix: s.value };
    case 'suffix': return { Suffix: s.value };
    case 'presence': return { Presence: [] };
  }
}

function saToDump(s: ServiceAccountMatcher): ServiceAccountMatcher {
  return { namespace: s.namespace, serviceAccount: s.serviceAccount };
}
