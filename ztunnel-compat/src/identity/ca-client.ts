// SPDX-License-Identifier: Apache-2.0
// The istiod CA client (ztunnel src/identity/caclient.rs, auth.rs,
// tls/control.rs): CreateCertificate over gRPC on TLS 1.3 with ALPN h2 and
// no client certificate. Every call carries `authorization: Bearer <token>`
// (the token file is read again for each call, since kubelet rotates it),
// `clusterid`, and the CA_HEADER_* extras. In shared mode the request asks
// to impersonate the workload identity, and the issued leaf must name it.
import { readFile } from 'node:fs/promises';
import { createSecureContext, getCACertificates } from 'node:tls';
import type { RootCaSource, TokenSource } from '../config.ts';
import { RECONNECT_BACKOFF, serverIdentityCheck } from '../xds/channel.ts';
import { Client, connectivityState, credentials, Metadata, status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { createCertificate, toStruct } from '../xds/proto.ts';
import type { IstioCertificateResponse } from '../xds/proto.ts';
import { WorkloadCertificate } from './certificate.ts';
import type { CertificateProvider, FetchOptions } from './certificate.ts';
import { createCsr } from './csr.ts';
import { keyExchangeOptions } from './key-exchange.ts';
import { identityError, IdentityErrorCode } from './error.ts';
import { silentLogger } from './log.ts';
import type { IdentityLogger } from './log.ts';
import { spiffeUri } from './spiffe.ts';
import type { Identity } from './spiffe.ts';

export type { RootCaSource, TokenSource } from '../config.ts';

export interface CaClientOptions {
  /** CA_ADDRESS: an https URI or host:port (https is assumed). */
  address: string;
  rootCa: RootCaSource;
  token: TokenSource;
  /** ALT_CA_HOSTNAME: a second name the server certificate may carry. */
  altHostname?: string;
  /** The `clusterid` header. Default "Kubernetes". */
  clusterId?: string;
  /** CA_HEADER_* metadata, names lower-case. */
  headers?: Record<string, string>;
  /** Shared mode: send ImpersonatedIdentity. Default false. */
  impersonate?: boolean;
  /** SECRET_TTL in seconds, sent as validity_duration. Default 86400. */
  ttlSeconds?: number;
  /** TLS12_ENABLED: accept TLS 1.2 too. Default false (1.3 only). */
  tls12?: boolean;
  /** COMPLIANCE_POLICY=pqc: the X25519MLKEM768 key exchange only. */
  pqc?: boolean;
  /** Default 5000, as ztunnel's control-plane connect timeout. */
  connectTimeoutMs?: number;
  /** Deadline of one CreateCertificate call. Default 60000. */
  requestTimeoutMs?: number;
  logger?: IdentityLogger;
}

export interface CaTarget {
  /** host:port for grpc-js (IPv6 in brackets). */
  target: string;
  /** The server name the certificate must carry (no brackets). */
  host: string;
  port: number;
}

/** Parses CA_ADDRESS; a value without a scheme gets "https://" first, as ztunnel does. */
export function parseCaAddress(address: string): CaTarget {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `https://${address}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw identityError(IdentityErrorCode.CONFIG, `CA address ${JSON.stringify(address)} is not a URI or host:port`);
  }
  if (url.protocol !== 'https:') throw identityError(IdentityErrorCode.CONFIG, `CA address ${address}: only https is supported, got ${url.protocol}`);
  if (url.hostname === '') throw identityError(IdentityErrorCode.CONFIG, `CA address ${address} has no host`);
  const port = url.port === '' ? 443 : Number(url.port);
  return { target: `${url.hostname}:${port}`, host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port };
}

async function readToken(source: TokenSource): Promise<string> {
  if (source.kind === 'literal') return source.token;
  let text: string;
  try {
    text = await readFile(source.path, 'utf8');
  } catch (err) {
    throw identityError(IdentityErrorCode.TOKEN, `cannot read the token file ${source.path}: ${(err as Error).message}`, err);
  }
  // A trailing newline from `echo > file` would make an invalid header value.
  const token = text.trim();
  if (token === '') throw identityError(IdentityErrorCode.TOKEN, `the token file ${source.path} exists, but is empty`);
  return token;
}

/** The gRPC status behind a CA_RPC error (its `cause` is the grpc-js ServiceError). */
export function grpcStatus(err: unknown): { code: number; details: string } | undefined {
  const cause = err instanceof Error ? err.cause : undefined;
  if (typeof cause !== 'object' || cause === null || !('code' in cause) || typeof cause.code !== 'number') return undefined;
  return { code: cause.code, details: 'details' in cause && typeof cause.details === 'string' ? cause.details : '' };
}

export { serverIdentityCheck };

interface Channel {
  client: Client;
  /** The roots the channel was built with; a change rebuilds it. */
  roots: string;
}

export class CaClient implements CertificateProvider {
  readonly target: CaTarget;
  readonly #opts: CaClientOptions;
  readonly #headers: Metadata;
  readonly #logger: IdentityLogger;
  #channel: Channel | undefined;
  #closed = false;

  constructor(opts: CaClientOptions) {
    this.#opts = opts;
    this.target = parseCaAddress(opts.address);
    this.#logger = opts.logger ?? silentLogger;
    const ttl = opts.ttlSeconds ?? 86_400;
    if (!(Number.isInteger(ttl) && ttl > 0)) throw identityError(IdentityErrorCode.CONFIG, `secret TTL ${ttl} s must be a positive whole number`);
    // Built once so a bad header name fails at start, not at the first fetch.
    this.#headers = new Metadata();
    try {
      for (const [k, v] of Object.entries(opts.headers ?? {})) this.#headers.set(k.toLowerCase(), v);
    } catch (err) {
      throw identityError(IdentityErrorCode.CONFIG, `bad CA header: ${(err as Error).message}`, err);
    }
  }

  async fetch(identity: Identity, opts: FetchOptions = {}): Promise<WorkloadCertificate> {
    if (this.#closed) throw identityError(IdentityErrorCode.CLOSED, 'the CA client is closed');
    const uri = spiffeUri(identity);
    const impersonate = opts.impersonate ?? this.#opts.impersonate ?? false;
    const [client, token, { csrPem, keyPem }] = await Promise.all([this.#client(), readToken(this.#opts.token), createCsr(identity)]);

    const md = this.#headers.clone();
    md.set('authorization', `Bearer ${token}`);
    md.set('clusterid', this.#opts.clusterId ?? 'Kubernetes');
    const res = await this.#call(client, md, {
      csr: csrPem,
      validityDuration: this.#opts.ttlSeconds ?? 86_400,
      ...(impersonate ? { metadata: toStruct({ ImpersonatedIdentity: uri }) } : {}),
    }, uri);
    const cert = WorkloadCertificate.fromCertChain(identity, res.certChain, keyPem, { logger: this.#logger });
    this.#logger.debug({ identity: uri, serial: cert.serial, notAfter: cert.notAfter.toISOString() }, 'received a certificate from the CA');
    return cert;
  }

  close(): void {
    this.#closed = true;
    this.#channel?.client.close();
    this.#channel = undefined;
  }

  /** The current channel, rebuilt when the root CA file changed since it was made. */
  async #client(): Promise<Client> {
    const roots = await this.#roots();
    if (this.#channel?.roots === roots) return this.#channel.client;
    if (this.#channel) this.#logger.info({ address: this.#opts.address }, 'CA root certificates changed; reconnecting');
    this.#channel?.client.close();
    let client: Client;
    try {
      const context = createSecureContext({ ca: roots, minVersion: this.#opts.tls12 === true ? 'TLSv1.2' : 'TLSv1.3', ...keyExchangeOptions(this.#opts.pqc) });
      const names = [this.target.host, ...(this.#opts.altHostname ? [this.#opts.altHostname] : [])];
      client = new Client(this.target.target, credentials.createFromSecureContext(context, {
        checkServerIdentity: serverIdentityCheck(names),
      }), {
        // ztunnel's control-plane HTTP/2 keepalive: ping every 30 s, 10 s timeout.
        'grpc.keepalive_time_ms': 30_000,
        'grpc.keepalive_timeout_ms': 10_000,
        ...RECONNECT_BACKOFF,
      });
    } catch (err) {
      throw identityError(IdentityErrorCode.CONFIG, `cannot set up TLS to the CA at ${this.#opts.address}: ${(err as Error).message}`, err);
    }
    this.#channel = { client, roots };
    return client;
  }

  async #roots(): Promise<string> {
    const src = this.#opts.rootCa;
    if (src.kind === 'system') return getCACertificates('system').join('\n');
    if (src.kind === 'pem') return src.pem;
    try {
      return await readFile(src.path, 'utf8');
    } catch (err) {
      throw identityError(IdentityErrorCode.CONFIG, `cannot read the CA root certificate ${src.path}: ${(err as Error).message}`, err);
    }
  }

  /**
   * One CreateCertificate. Fails fast (with grpc-js's reason) when the
   * connection fails, and with CA_CONNECT when it is not up within the
   * connect timeout, so a black-holed istiod does not hold a fetch slot.
   */
  #call(client: Client, md: Metadata, req: Parameters<typeof createCertificate.requestSerialize>[0], uri: string): Promise<IstioCertificateResponse> {
    const connectMs = this.#opts.connectTimeoutMs ?? 5_000;
    const m = createCertificate;
    return new Promise((resolve, reject) => {
      let done = false;
      const settle = (fn: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(watchdog);
        fn();
      };
      const call = client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, req, md,
        { deadline: Date.now() + (this.#opts.requestTimeoutMs ?? 60_000) },
        (err: ServiceError | null, res?: IstioCertificateResponse) => {
          settle(() => {
            if (err) {
              const name = (status[err.code] as string | undefined) ?? String(err.code);
              reject(identityError(IdentityErrorCode.CA_RPC, `CreateCertificate for ${uri} failed: ${name}: ${err.details}`, err));
            } else if (res) {
              resolve(res);
            } else {
              reject(identityError(IdentityErrorCode.EMPTY_RESPONSE, `CreateCertificate for ${uri} returned no message`));
            }
          });
        });
      const watchdog = setTimeout(() => {
        if (client.getChannel().getConnectivityState(false) === connectivityState.READY) return;
        settle(() => {
          call.cancel();
          reject(identityError(IdentityErrorCode.CA_CONNECT, `no connection to the CA at ${this.#opts.address} within ${connectMs} ms`));
        });
      }, connectMs);
    });
  }
}
