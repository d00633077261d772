// SPDX-License-Identifier: Apache-2.0
// A test double of istiod as a ztunnel sees it: Delta ADS for WDS addresses
// and authorization policies, and the CA's CreateCertificate, over real gRPC
// and real TLS on 127.0.0.1 with its own test CA. It checks what istiod
// checks (bearer token, clusterid, node id, impersonation rights) and keeps
// everything a test may want to look at. A fixture, never the product.
import { Server, ServerCredentials, status } from '@grpc/grpc-js';
import type { Metadata, sendUnaryData, ServerDuplexStream, ServerUnaryCall } from '@grpc/grpc-js';
import {
  ADDRESS_TYPE_URL, aggregatedDiscoveryService, fromStruct, istioCertificateService, packResource, unpackResource,
} from '@skein/ztunnel-compat/xds/proto';
import type {
  AnyMessage, DeltaDiscoveryRequest, DeltaDiscoveryResponse, IstioCertificateRequest, IstioCertificateResponse,
  MessageInit, Node, ResourceTypes, ResourceTypeUrl, Service, Workload,
} from '@skein/ztunnel-compat/xds/proto';
import { CsrError, parseCsr, TestCa } from './test-ca.ts';
import type { KeyAndCert } from './test-ca.ts';

/** Who a bearer token belongs to (istiod learns this from a TokenReview). */
export interface CallerIdentity { namespace: string; serviceAccount: string; podName: string; nodeName: string }

export interface IstiodDoubleOptions {
  /** Accepted bearer tokens and their owners. */
  tokens: Record<string, CallerIdentity>;
  /** The `clusterid` header every call must carry. Default "Kubernetes". */
  clusterId?: string;
  /** "namespace/serviceAccount" callers allowed to impersonate. Default ["istio-system/ztunnel"]. */
  trustedNodeAccounts?: string[];
  /** Trust domain of callers' own identities. Default "cluster.local". */
  trustDomain?: string;
  /** Share a CA between doubles; a new one is made otherwise. */
  ca?: TestCa;
}

/** One thing that happened on an ADS stream. */
export interface XdsEvent {
  kind: 'connect' | 'subscribe' | 'ack' | 'nack' | 'disconnect';
  /** Numbered from 1 in the order streams were opened. */
  stream: number;
  typeUrl?: string;
  nonce?: string;
  /** A NACK's error_detail.message. */
  message?: string;
}

/** One response the double sent. */
export interface SentResponse { stream: number; typeUrl: string; nonce: string; names: string[]; removed: string[] }

export interface IssuedCert { identity: string; caller: CallerIdentity; impersonated: boolean; certChain: string[] }

interface StoredResource { version: string; any: AnyMessage }

interface AdsStream {
  id: number;
  call: ServerDuplexStream<DeltaDiscoveryRequest, MessageInit<DeltaDiscoveryResponse>>;
  node?: Node;
  /** Per type URL: wildcard, or the names asked for. */
  subs: Map<string, '*' | Set<string>>;
  done: boolean;
}

interface Waiter { match: (e: XdsEvent) => boolean; resolve: (e: XdsEvent) => void }

type EventMatch = Partial<Pick<XdsEvent, 'kind' | 'stream' | 'typeUrl' | 'nonce'>>;

const statusName = (code: status): string => status[code];

function rpcError(code: status, details: string): Error {
  return Object.assign(new Error(details), { code, details });
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** A workload's identity with ztunnel's defaults for empty fields. */
export function workloadIdentity(w: Workload): string {
  return spiffeId(w.trustDomain || 'cluster.local', w.namespace ?? '', w.serviceAccount || 'default');
}

/** istiod expects "ztunnel~<ip>~<pod>.<ns>~<ns>.svc.<domain>"; returns why not, or undefined. */
function nodeIdProblem(id: string | undefined): string | undefined {
  if (!id) return 'first request has no node id';
  if (!id.startsWith('ztunnel~')) return `node id ${JSON.stringify(id)} does not start with "ztunnel~"`;
  const parts = id.split('~');
  if (parts.length !== 4 || parts.some((p) => p === '')) return `node id ${JSON.stringify(id)} is not ztunnel~ip~pod.ns~ns.svc.domain`;
  return undefined;
}

export class IstiodDouble {
  readonly ca: TestCa;
  readonly clusterId: string;
  readonly trustedNodeAccounts: readonly string[];
  readonly trustDomain: string;
  /** Every ADS happening, in order. */
  readonly events: XdsEvent[] = [];
  readonly sent: SentResponse[] = [];
  readonly issued: IssuedCert[] = [];
  /** Rejected calls and streams, one line each. */
  readonly log: string[] = [];
  /** The Node of the last stream that passed the node id check. */
  lastNode: Node | undefined;
  /**
   * CA faults for tests: `silent` accepts CreateCertificate and never
   * answers (until the caller gives up); `wrong-identity` signs the CSR's
   * key for `identity` instead of the caller's; `refuse` answers every call
   * with `code` (an overloaded or misconfigured CA: UNAVAILABLE,
   * PERMISSION_DENIED) while xDS goes on serving.
   */
  caFault: { kind: 'silent' } | { kind: 'wrong-identity'; identity: string } | { kind: 'refuse'; code: status } | undefined;

  readonly #tokens: Map<string, CallerIdentity>;
  readonly #serving: KeyAndCert;
  readonly #resources = new Map<string, Map<string, StoredResource>>();
  readonly #streams = new Set<AdsStream>();
  readonly #waiters = new Set<Waiter>();
  #server: Server | undefined;
  #port = 0;
  #streamIds = 0;
  #nonces = 0;
  #versions = 0;

  private constructor(opts: IstiodDoubleOptions, ca: TestCa, serving: KeyAndCert) {
    this.#tokens = new Map(Object.entries(opts.tokens));
    this.clusterId = opts.clusterId ?? 'Kubernetes';
    this.trustedNodeAccounts = opts.trustedNodeAccounts ?? ['istio-system/ztunnel'];
    this.trustDomain = opts.trustDomain ?? 'cluster.local';
    this.ca = ca;
    this.#serving = serving;
  }

  static async start(opts: IstiodDoubleOptions): Promise<IstiodDouble> {
    const ca = opts.ca ?? await TestCa.create();
    const double = new IstiodDouble(opts, ca, await ca.issueServerCert());
    await double.#listen(0);
    return double;
  }

  get port(): number { return this.#port; }
  /** "127.0.0.1:<port>"; the certificate also names istiod.istio-system.svc and localhost. */
  get address(): string { return `127.0.0.1:${this.#port}`; }
  get rootPem(): string { return this.ca.rootPem; }
  /** Open ADS streams. */
  get connections(): number { return this.#streams.size; }
  get acks(): XdsEvent[] { return this.events.filter((e) => e.kind === 'ack'); }
  get nacks(): XdsEvent[] { return this.events.filter((e) => e.kind === 'nack'); }

  // ---- Test-facing state changes ----------------------------------------

  /** Stores a resource under a new version and sends it to every subscribed stream. Returns the nonces sent. */
  push<U extends ResourceTypeUrl>(typeUrl: U, name: string, message: MessageInit<ResourceTypes[U]>): string[] {
    return this.#store(typeUrl, name, packResource(typeUrl, message));
  }

  pushWorkload(workload: MessageInit<Workload>): string[] {
    if (!workload.uid) throw new Error('pushWorkload: a workload needs a uid, its xDS name');
    return this.push(ADDRESS_TYPE_URL, workload.uid, { workload });
  }

  pushService(service: MessageInit<Service>): string[] {
    return this.push(ADDRESS_TYPE_URL, `${service.namespace ?? ''}/${service.hostname ?? ''}`, { service });
  }

  /**
   * Sends bytes as they are, to provoke NACKs: each value goes out in an Any
   * whose type_url is `typeUrl` unless the entry says otherwise. They are
   * stored too, so a reconnecting client is sent them again, as istiod would.
   */
  pushRaw(typeUrl: string, resources: { name: string; value: Uint8Array; typeUrl?: string }[]): string[] {
    const changed = resources.map((r) => {
      this.#set(typeUrl, r.name, { type_url: r.typeUrl ?? typeUrl, value: Buffer.from(r.value) });
      return r.name;
    });
    return this.#broadcast(typeUrl, changed, []);
  }

  /** Deletes a resource and tells every subscribed stream. Returns the nonces sent. */
  remove(typeUrl: string, name: string): string[] {
    if (!this.#resources.get(typeUrl)?.delete(name)) return [];
    return this.#broadcast(typeUrl, [], [name]);
  }

  /** Current name -> version for a type, as a client would list them on reconnect. */
  versions(typeUrl: string): Record<string, string> {
    return Object.fromEntries([...(this.#resources.get(typeUrl) ?? [])].map(([n, r]) => [n, r.version]));
  }

  /** Ends every ADS stream with UNAVAILABLE, as a restarting istiod does. */
  killStreams(): void {
    for (const s of this.#streams) this.#end(s, status.UNAVAILABLE, 'istiod double: stream killed by the test');
  }

  /** Ends streams and closes the listener; state is kept for restart(). */
  stop(): Promise<void> {
    this.killStreams();
    const server = this.#server;
    this.#server = undefined;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => {
      // Resolves once the listener is closed, so restart() can bind the port again.
      server.tryShutdown(() => { resolve(); });
      // One turn for the UNAVAILABLE statuses to go out, then drop the
      // connections clients keep open (tryShutdown alone would wait for them).
      setImmediate(() => { server.forceShutdown(); });
    });
  }

  /** stop(), then listen again on the same port with the same state. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#listen(this.#port);
  }

  /**
   * Resolves with the first event matching `match` at index `since` or later.
   * `since` defaults to 0 when matching a nonce (nonces are unique) and to
   * "from now on" otherwise.
   */
  waitForEvent(match: EventMatch, opts: { since?: number; timeoutMs?: number } = {}): Promise<XdsEvent> {
    const matches = (e: XdsEvent): boolean => Object.entries(match).every(([k, v]) => e[k as keyof XdsEvent] === v);
    const past = this.events.slice(opts.since ?? (match.nonce === undefined ? this.events.length : 0)).find(matches);
    if (past) return Promise.resolve(past);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`istiod double: no event ${JSON.stringify(match)} within ${opts.timeoutMs ?? 5000} ms; last events ${JSON.stringify(this.events.slice(-5))}`));
      }, opts.timeoutMs ?? 5000);
      const waiter: Waiter = { match: matches, resolve: (e) => { clearTimeout(timer); resolve(e); } };
      this.#waiters.add(waiter);
    });
  }

  waitForAck(match: Omit<EventMatch, 'kind'> = {}, opts?: { since?: number; timeoutMs?: number }): Promise<XdsEvent> {
    return this.waitForEvent({ ...match, kind: 'ack' }, opts);
  }

  waitForNack(match: Omit<EventMatch, 'kind'> = {}, opts?: { since?: number; timeoutMs?: number }): Promise<XdsEvent> {
    return this.waitForEvent({ ...match, kind: 'nack' }, opts);
  }

  // ---- Server ------------------------------------------------------------

  async #listen(port: number): Promise<void> {
    const server = new Server();
    server.addService(aggregatedDiscoveryService, {
      DeltaAggregatedResources: (call: AdsStream['call']) => { this.#onStream(call); },
    });
    server.addService(istioCertificateService, {
      CreateCertificate: (
        call: ServerUnaryCall<IstioCertificateRequest, MessageInit<IstioCertificateResponse>>,
        done: sendUnaryData<MessageInit<IstioCertificateResponse>>,
      ) => {
        this.#onCreateCertificate(call).then((res) => { done(null, res); }, (err: unknown) => {
          done(err instanceof Error && 'code' in err ? err : rpcError(status.INTERNAL, String(err)));
        });
      },
    });
    const creds = ServerCredentials.createSsl(null, [{
      private_key: Buffer.from(this.#serving.keyPem), cert_chain: Buffer.from(this.#serving.certPem),
    }], false);
    this.#port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`127.0.0.1:${port}`, creds, (err, bound) => { if (err) reject(err); else resolve(bound); });
    });
    this.#server = server;
  }

  /** The caller behind the call's headers, or why the call is refused. */
  #authenticate(md: Metadata): CallerIdentity | string {
    const auth = md.get('authorization')[0];
    if (typeof auth !== 'string' || !auth.startsWith('Bearer ')) return 'no "authorization: Bearer" header';
    const caller = this.#tokens.get(auth.slice('Bearer '.length));
    if (!caller) return 'unknown bearer token';
    const cluster = md.get('clusterid')[0];
    if (cluster !== this.clusterId) {
      return `clusterid ${cluster === undefined ? 'header missing' : JSON.stringify(String(cluster))}, expected ${JSON.stringify(this.clusterId)}`;
    }
    return caller;
  }

  #record(e: XdsEvent): void {
    this.events.push(e);
    for (const w of this.#waiters) {
      if (w.match(e)) { this.#waiters.delete(w); w.resolve(e); }
    }
  }

  // ---- ADS ---------------------------------------------------------------

  #onStream(call: AdsStream['call']): void {
    const s: AdsStream = { id: ++this.#streamIds, call, subs: new Map(), done: false };
    const caller = this.#authenticate(call.metadata);
    if (typeof caller === 'string') {
      this.#end(s, status.UNAUTHENTICATED, caller);
      return;
    }
    this.#streams.add(s);
    call.on('data', (req: DeltaDiscoveryRequest) => { this.#onRequest(s, req); });
    call.on('end', () => { this.#end(s, status.OK, 'OK'); });
    call.on('cancelled', () => { this.#forget(s); });
    call.on('close', () => { this.#forget(s); });
  }

  #onRequest(s: AdsStream, req: DeltaDiscoveryRequest): void {
    if (s.done) return;
    if (!s.node) {
      const problem = nodeIdProblem(req.node?.id);
      if (problem !== undefined) {
        this.#end(s, status.INVALID_ARGUMENT, problem);
        return;
      }
      s.node = req.node;
      this.lastNode = req.node;
      this.#record({ kind: 'connect', stream: s.id });
    }
    const nonce = req.responseNonce;
    const typeUrl = req.typeUrl || this.sent.find((r) => r.nonce === nonce)?.typeUrl || '';
    if (nonce) {
      // error_detail present (even empty) makes it a NACK.
      if (req.errorDetail) this.#record({ kind: 'nack', stream: s.id, typeUrl, nonce, message: req.errorDetail.message ?? '' });
      else this.#record({ kind: 'ack', stream: s.id, typeUrl, nonce });
    }
    const sub = req.resourceNamesSubscribe;
    const unsub = req.resourceNamesUnsubscribe;
    const current = s.subs.get(typeUrl);
    if (current === undefined && !nonce) {
      this.#record({ kind: 'subscribe', stream: s.id, typeUrl });
      // Empty, or "*" without unsubscribing "*" (on-demand's "nothing"), is a wildcard.
      const wildcard = sub.length === 0 || (sub.includes('*') && !unsub.includes('*'));
      s.subs.set(typeUrl, wildcard ? '*' : new Set(sub.filter((n) => n !== '*' && !unsub.includes(n))));
      this.#sendInitial(s, typeUrl, req.initialResourceVersions);
    } else if (current instanceof Set) {
      for (const n of unsub) current.delete(n);
      const added = sub.filter((n) => n !== '*');
      for (const n of added) current.add(n);
      // Asked-for names are always answered: the resource, or its removal.
      if (added.length > 0) this.#sendNames(s, typeUrl, added);
    }
  }

  /** First response for a type: everything the client lacks, and removals for what it holds but istiod no longer has. */
  #sendInitial(s: AdsStream, typeUrl: string, known: Record<string, string>): void {
    const store = this.#resources.get(typeUrl) ?? new Map<string, StoredResource>();
    const subs = s.subs.get(typeUrl);
    const wanted = subs === '*' ? [...store.keys()] : [...(subs ?? [])];
    const names = wanted.filter((n) => store.has(n) && store.get(n)?.version !== known[n]);
    const removed = subs === '*'
      ? Object.keys(known).filter((n) => !store.has(n))
      : wanted.filter((n) => !store.has(n));
    this.#send(s, typeUrl, names, removed);
  }

  #sendNames(s: AdsStream, typeUrl: string, names: string[]): void {
    const store = this.#resources.get(typeUrl);
    this.#send(s, typeUrl, names.filter((n) => store?.has(n)), names.filter((n) => !store?.has(n)));
  }

  #send(s: AdsStream, typeUrl: string, names: string[], removed: string[]): string {
    const nonce = `nonce-${++this.#nonces}`;
    const store = this.#resources.get(typeUrl);
    const resources = names.flatMap((name) => {
      const r = store?.get(name);
      return r ? [{ name, version: r.version, resource: r.any }] : [];
    });
    this.sent.push({ stream: s.id, typeUrl, nonce, names, removed });
    s.call.write({ typeUrl, nonce, systemVersionInfo: String(this.#versions), resources, removedResources: removed });
    return nonce;
  }

  #set(typeUrl: string, name: string, any: AnyMessage): void {
    let store = this.#resources.get(typeUrl);
    if (!store) this.#resources.set(typeUrl, (store = new Map<string, StoredResource>()));
    store.set(name, { version: String(++this.#versions), any });
  }

  #store(typeUrl: string, name: string, any: AnyMessage): string[] {
    this.#set(typeUrl, name, any);
    return this.#broadcast(typeUrl, [name], []);
  }

  /** Incremental push to each stream subscribed to any of the names. */
  #broadcast(typeUrl: string, changed: string[], removed: string[]): string[] {
    const nonces: string[] = [];
    for (const s of this.#streams) {
      const subs = s.subs.get(typeUrl);
      if (s.done || subs === undefined) continue;
      const wants = (n: string): boolean => subs === '*' || subs.has(n);
      const names = changed.filter(wants);
      const gone = removed.filter(wants);
      if (names.length + gone.length > 0) nonces.push(this.#send(s, typeUrl, names, gone));
    }
    return nonces;
  }

  #end(s: AdsStream, code: status, details: string): void {
    if (s.done) return;
    if (code !== status.OK) this.log.push(`DeltaAggregatedResources stream ${s.id}: ${statusName(code)}: ${details}`);
    this.#forget(s);
    // grpc-js turns an 'error' event on a server stream into the call's status.
    if (code === status.OK) s.call.end();
    else s.call.emit('error', rpcError(code, details));
  }

  #forget(s: AdsStream): void {
    if (s.done) return;
    s.done = true;
    if (this.#streams.delete(s)) this.#record({ kind: 'disconnect', stream: s.id });
  }

  // ---- CA ----------------------------------------------------------------

  async #onCreateCertificate(
    call: ServerUnaryCall<IstioCertificateRequest, MessageInit<IstioCertificateResponse>>,
  ): Promise<MessageInit<IstioCertificateResponse>> {
    const fail = (code: status, details: string): Error => {
      this.log.push(`CreateCertificate: ${statusName(code)}: ${details}`);
      return rpcError(code, details);
    };
    const caller = this.#authenticate(call.metadata);
    if (typeof caller === 'string') throw fail(status.UNAUTHENTICATED, caller);
    if (this.caFault?.kind === 'refuse') throw fail(this.caFault.code, 'istiod double: the CA is refusing (test fault)');

    const req = call.request;
    let csr: Awaited<ReturnType<typeof parseCsr>>;
    try {
      csr = await parseCsr(req.csr ?? '');
    } catch (err) {
      if (err instanceof CsrError) throw fail(status.INVALID_ARGUMENT, err.message);
      throw err;
    }
    if (csr.curve !== 'P-256') throw fail(status.INVALID_ARGUMENT, `CSR key must be ECDSA P-256, got ${csr.curve}`);
    const [uri, ...more] = csr.uris;
    if (uri === undefined || more.length > 0) throw fail(status.INVALID_ARGUMENT, `CSR must carry exactly one URI SAN, got ${csr.uris.length}`);

    const requested = fromStruct(req.metadata).ImpersonatedIdentity;
    const impersonated = typeof requested === 'string' && requested !== '';
    if (impersonated && !this.#mayImpersonate(caller, requested)) {
      throw fail(status.UNAUTHENTICATED, 'request impersonation authentication failure');
    }
    const identity = impersonated ? requested : spiffeId(this.trustDomain, caller.namespace, caller.serviceAccount);
    // Stricter than istiod, which ignores the CSR's SAN: a mismatch here is a client bug.
    if (uri !== identity) throw fail(status.INVALID_ARGUMENT, `CSR SAN ${uri} is not the identity ${identity}`);

    const validity = req.validityDuration !== undefined && req.validityDuration > 0 ? req.validityDuration : 86_400;
    const fault = this.caFault;
    if (fault?.kind === 'silent') {
      this.log.push(`CreateCertificate: silent for ${identity}`);
      return new Promise((_, reject) => { call.once('cancelled', () => { reject(rpcError(status.CANCELLED, 'the caller gave up')); }); });
    }
    const certChain = [await this.ca.issueLeaf(csr, fault?.kind === 'wrong-identity' ? fault.identity : identity, validity), this.ca.rootPem];
    this.issued.push({ identity, caller, impersonated, certChain });
    return { certChain };
  }

  /** istiod's rule: a trusted node account, and a workload with that identity on the caller's node. */
  #mayImpersonate(caller: CallerIdentity, identity: string): boolean {
    if (!this.trustedNodeAccounts.includes(`${caller.namespace}/${caller.serviceAccount}`)) return false;
    for (const { any } of this.#resources.get(ADDRESS_TYPE_URL)?.values() ?? []) {
      let workload: Workload | undefined;
      try {
        workload = unpackResource(ADDRESS_TYPE_URL, any).workload;
      } catch {
        continue; // bytes from pushRaw
      }
      if (workload?.node === caller.nodeName && workloadIdentity(workload) === identity) return true;
    }
    return false;
  }
}
