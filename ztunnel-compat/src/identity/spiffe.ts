// SPDX-License-Identifier: Apache-2.0
// SPIFFE workload identities as Istio uses them: spiffe://<td>/ns/<ns>/sa/<sa>.
// The parsed form is what certificates, authorization and metrics speak; the
// URI is its one text form (ztunnel `src/identity/manager.rs`, `Identity`).

/** A workload identity. Treat as immutable: stores share these objects. */
export interface Identity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

/** The identity subsystem's error. `code` is stable; messages are for people. */
export class IdentityError extends Error {
  override name = 'IdentityError';
  readonly code: string;
  constructor(message: string, code = 'SKEIN_BAD_SPIFFE') {
    super(message);
    this.code = code;
  }
}

const PREFIX = 'spiffe://';

/**
 * Parses exactly `spiffe://<td>/ns/<ns>/sa/<sa>`.
 *
 * ztunnel's `FromStr for Identity` takes the same shape but lets a part be
 * empty. An empty trust domain is accepted too: ztunnel's static config
 * leaves a workload's trust domain empty when the file names none, and such
 * a workload's certificate says spiffe:///ns/... . Empty namespaces and
 * service accounts are refused, since no istiod-issued identity has one and
 * an empty namespace would alias the "no identity" namespace "" in
 * authorization.
 */
export function parseSpiffe(uri: string): Identity {
  if (!uri.startsWith(PREFIX)) throw bad(uri, 'does not start with spiffe://');
  const parts = uri.slice(PREFIX.length).split('/');
  if (parts.length !== 5) throw bad(uri, 'want spiffe://<trust domain>/ns/<namespace>/sa/<service account>');
  const [trustDomain = '', ns, namespace = '', sa, serviceAccount = ''] = parts;
  if (ns !== 'ns' || sa !== 'sa') throw bad(uri, 'want spiffe://<trust domain>/ns/<namespace>/sa/<service account>');
  if (namespace === '') throw bad(uri, 'empty namespace');
  if (serviceAccount === '') throw bad(uri, 'empty service account');
  return { trustDomain, namespace, serviceAccount };
}

function bad(uri: string, why: string): IdentityError {
  return new IdentityError(`bad SPIFFE identity ${JSON.stringify(uri)}: ${why}`);
}

export function spiffeUri(id: Identity): string {
  return `${PREFIX}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** A Map/Set key for an identity: the URI itself, so logs and keys agree. */
export function identityKey(id: Identity): string {
  return spiffeUri(id);
}

export function sameIdentity(a: Identity, b: Identity): boolean {
  return a === b
    || (a.serviceAccount === b.serviceAccount && a.namespace === b.namespace && a.trustDomain === b.trustDomain);
}
