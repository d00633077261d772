// SPDX-License-Identifier: Apache-2.0
// The delta ADS client (reference §1.2): one stream, both resource types
// subscribed as wildcards, an ACK (or partial NACK) after every response,
// reconnects with backoff and `initial_resource_versions`, and readiness once
// every type has been received and acknowledged.
import { EventEmitter } from 'node:events';
import { status, type Client, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { controlClient, type ControlChannelOptions } from './channel.ts';
import {
  deltaAggregatedResources as ads,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type MessageInit,
  type Node,
  type AnyMessage,
} from './proto.ts';

export interface XdsResource { name: string; version: string; resource: AnyMessage }
export interface Rejected { name: string; reason: string }

/** Applies one response of its type; returns the resources it rejected. */
export interface XdsHandler {
  readonly typeUrl: string;
  handle(resources: readonly XdsResource[], removed: readonly string[]): Rejected[];
}

export type TerminationReason = 'ConnectionError' | 'Error' | 'Reconnect' | 'Complete';

export interface XdsMetrics {
  message(typeUrl: string, bytes: number): void;
  termination(reason: TerminationReason): void;
}

export interface AdsClientOptions {
  channel: ControlChannelOptions;
  node: MessageInit<Node>;
  /** In subscription order (ztunnel: Address, then Authorization). */
  handlers: readonly XdsHandler[];
  metrics?: XdsMetrics;
  backoff?: { initialMs: number; maxMs: number };
  /** Largest response accepted (ztunnel: 200 MiB). */
  maxMessageBytes?: number;
}

type Stream = ClientDuplexStream<MessageInit<DeltaDiscoveryRequest>, DeltaDiscoveryResponse>;

/** gRPC ends that mean "the server went away politely": reconnect at once. */
function graceful(err: ServiceError): boolean {
  if (err.code === status.CANCELLED || err.code === status.DEADLINE_EXCEEDED || err.code === status.UNKNOWN) return true;
  return err.code === status.UNAVAILABLE && /transport is closing|received prior goaway|GOAWAY|Connection dropped/i.test(err.details);
}

export function nackMessage(rejected: readonly Rejected[]): string {
  return rejected.map((r) => `${r.name}: ${r.reason}`).join('; ');
}

/**
 * Events: 'ready' (all types acked once), 'ack' (typeUrl, nonce),
 * 'nack' (typeUrl, nonce, message), 'connected', 'disconnected' (error).
 */
export class AdsClient extends EventEmitter {
  readonly #o: AdsClientOptions;
  readonly #handlers: Map<string, XdsHandler>;
  /** Accepted versions per type, sent as initial_resource_versions on reconnect. */
  readonly #versions = new Map<string, Map<string, string>>();
  readonly #acked = new Set<string>();
  #client: Client | undefined;
  #stream: Stream | undefined;
  #timer: NodeJS.Timeout | undefined;
  #delayMs: number;
  #stopped = true;
  #ready = false;
  /** Why the client is not ready (for /healthz/ready). */
  lastError: string | undefined;

  constructor(o: AdsClientOptions) {
    super();
    this.#o = o;
    this.#handlers = new Map(o.handlers.map((h) => [h.typeUrl, h]));
    for (const h of o.handlers) this.#versions.set(h.typeUrl, new Map());
    this.#delayMs = o.backoff?.initialMs ?? 10;
  }

  get ready(): boolean {
    return this.#ready;
  }

  /** Types still waiting for their first acknowledged response. */
  get pendingTypes(): string[] {
    return this.#o.handlers.map((h) => h.typeUrl).filter((t) => !this.#acked.has(t));
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#client = controlClient(this.#o.channel, { 'grpc.max_receive_message_length': this.#o.maxMessageBytes ?? 200 * 1024 * 1024 });
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const s = this.#stream;
    this.#stream = undefined;
    s?.cancel();
    this.#client?.close();
    this.#client = undefined;
  }

  /** Resolves once every type was received and acknowledged once. */
  whenReady(): Promise<void> {
    if (this.#ready) return Promise.resolve();
    return new Promise((resolve) => this.once('ready', resolve));
  }

  #connect(): void {
    if (this.#stopped || this.#client === undefined) return;
    let stream: Stream;
    try {
      stream = this.#client.makeBidiStreamRequest(ads.path, ads.requestSerialize, ads.responseDeserialize);
    } catch (err) {
      this.#scheduleReconnect('ConnectionError', err as Error);
      return;
    }
    this.#stream = stream;
    let gotResponse = false;
    stream.on('data', (r: DeltaDiscoveryResponse) => {
      if (!gotResponse) {
        gotResponse = true;
        // A stream that delivered something resets the backoff.
        this.#delayMs = this.#o.backoff?.initialMs ?? 10;
        this.emit('connected');
      }
      this.#onResponse(stream, r);
    });
    stream.on('error', (err: ServiceError) => {
      if (this.#stream !== stream) return;
      this.#stream = undefined;
      const reason: TerminationReason = gotResponse ? 'Error' : 'ConnectionError';
      this.lastError = `xDS stream: ${status[err.code]}: ${err.details}`;
      if (graceful(err)) this.#delayMs = this.#o.backoff?.initialMs ?? 10;
      this.#scheduleReconnect(graceful(err) ? 'Reconnect' : reason, err);
    });
    stream.on('end', () => {
      if (this.#stream !== stream) return;
      this.#stream = undefined;
      stream.cancel();
      this.#scheduleReconnect('Complete', new Error('stream ended by server'));
    });
    for (const h of this.#o.handlers) {
      stream.write({
        node: this.#o.node,
        typeUrl: h.typeUrl,
        initialResourceVersions: Object.fromEntries(this.#versions.get(h.typeUrl) ?? []),
      });
    }
  }

  #scheduleReconnect(reason: TerminationReason, err: Error): void {
    this.#o.metrics?.termination(reason);
    this.emit('disconnected', err);
    if (this.#stopped) return;
    const delay = this.#delayMs;
    this.#delayMs = Math.min(this.#delayMs * 2, this.#o.backoff?.maxMs ?? 15_000);
    this.#timer = setTimeout(() => { this.#connect(); }, delay);
  }

  #onResponse(stream: Stream, r: DeltaDiscoveryResponse): void {
    const typeUrl = r.typeUrl ?? '';
    const nonce = r.nonce ?? '';
    const handler = this.#handlers.get(typeUrl);
    let rejected: Rejected[];
    const versions = this.#versions.get(typeUrl);
    if (handler === undefined || versions === undefined) {
      rejected = [{ name: typeUrl, reason: 'unsubscribed type' }];
    } else {
      const resources: XdsResource[] = [];
      rejected = [];
      let bytes = 0;
      for (const res of r.resources) {
        const name = res.name ?? '';
        if (res.resource === undefined) {
          rejected.push({ name, reason: 'resource has no body' });
          continue;
        }
        bytes += res.resource.value.length;
        resources.push({ name, version: res.version ?? '', resource: res.resource });
      }
      this.#o.metrics?.message(typeUrl, bytes);
      try {
        rejected.push(...handler.handle(resources, r.removedResources));
      } catch (err) {
        // A handler bug must not take the daemon down: NACK everything.
        rejected = resources.map((x) => ({ name: x.name, reason: `internal error: ${(err as Error).message}` }));
      }
      const bad = new Set(rejected.map((x) => x.name));
      for (const x of resources) {
        // Rejected names are left out of initial_resource_versions so that
        // istiod sends them again after a reconnect.
        if (bad.has(x.name)) versions.delete(x.name);
        else versions.set(x.name, x.version);
      }
      for (const name of r.removedResources) versions.delete(name);
    }
    if (this.#stream !== stream) return;
    if (rejected.length === 0) {
      stream.write({ typeUrl, responseNonce: nonce });
      this.emit('ack', typeUrl, nonce);
    } else {
      const message = nackMessage(rejected);
      stream.write({ typeUrl, responseNonce: nonce, errorDetail: { code: 0, message } });
      this.emit('nack', typeUrl, nonce, message);
    }
    // ztunnel counts a type as received after its first handled response,
    // NACKed or not: a partially bad snapshot must not block readiness.
    if (handler !== undefined && !this.#acked.has(typeUrl)) {
      this.#acked.add(typeUrl);
      if (!this.#ready && this.pendingTypes.length === 0) {
        this.#ready = true;
        this.lastError = undefined;
        this.emit('ready');
      }
    }
  }
}
