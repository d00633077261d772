// SPDX-License-Identifier: Apache-2.0
// The gRPC channel to istiod, shared by xDS and the CA (reference §2): TLS 1.3
// (1.2 only when allowed), the configured root, the URI's host or an alternate
// name accepted, and on every call `authorization: Bearer <token>` (the token
// re-read each time: projected tokens rotate) plus `clusterid`.
import fs from 'node:fs';
import tls from 'node:tls';
import { ChannelCredentials, Client, credentials, Metadata, type ChannelOptions } from '@grpc/grpc-js';
import type { RootCaSource, TokenSource } from '../config.ts';
import { keyExchangeOptions } from '../identity/key-exchange.ts';

export interface ControlChannelOptions {
  /** https://host:port */
  address: string;
  root: RootCaSource;
  altHostname?: string | undefined;
  token: TokenSource;
  clusterId: string;
  headers?: Record<string, string>;
  tls12?: boolean;
  /** COMPLIANCE_POLICY=pqc: the X25519MLKEM768 key exchange only. */
  pqc?: boolean;
}

export class ControlChannelError extends Error {
  override name = 'ControlChannelError';
  readonly code = 'SKEIN_CONTROL_CHANNEL';
}

export function readRoot(root: RootCaSource): Buffer | undefined {
  if (root.kind === 'system') return undefined;
  if (root.kind === 'pem') return Buffer.from(root.pem);
  try {
    return fs.readFileSync(root.path);
  } catch (err) {
    throw new ControlChannelError(`cannot read root certificate ${root.path}: ${(err as Error).message}`);
  }
}

export function readToken(token: TokenSource): string {
  if (token.kind === 'literal') return token.token;
  try {
    return fs.readFileSync(token.path, 'utf8').trim();
  } catch (err) {
    throw new ControlChannelError(`cannot read token ${token.path}: ${(err as Error).message}`);
  }
}

/** host:port for grpc-js from an https:// URI. */
export function grpcTarget(address: string): { target: string; host: string } {
  const u = new URL(address);
  return { target: `${u.hostname}:${u.port || '443'}`, host: u.hostname.replace(/^\[(.*)\]$/, '$1') };
}

/** Accepts a server certificate that names any of `names` (the address host, then the ALT_*_HOSTNAME). */
export function serverIdentityCheck(names: readonly string[]): (host: string, cert: tls.PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const errors = names.map((n) => tls.checkServerIdentity(n, cert));
    return errors.some((e) => e === undefined) ? undefined : errors[0];
  };
}

export function channelCredentials(o: ControlChannelOptions): ChannelCredentials {
  const { host } = grpcTarget(o.address);
  const ca = readRoot(o.root);
  const context = tls.createSecureContext({ ...(ca === undefined ? {} : { ca }), minVersion: o.tls12 === true ? 'TLSv1.2' : 'TLSv1.3', ...keyExchangeOptions(o.pqc) });
  const names = [host, ...(o.altHostname === undefined ? [] : [o.altHostname])];
  const secure = credentials.createFromSecureContext(context, { checkServerIdentity: serverIdentityCheck(names) });
  const perCall = credentials.createFromMetadataGenerator((_params, callback) => {
    try {
      const md = new Metadata();
      md.set('authorization', `Bearer ${readToken(o.token)}`);
      md.set('clusterid', o.clusterId);
      for (const [k, v] of Object.entries(o.headers ?? {})) md.set(k, v);
      callback(null, md);
    } catch (err) {
      callback(err as Error);
    }
  });
  return credentials.combineChannelCredentials(secure, perCall);
}

/**
 * grpc-js backs a refused connection off on its own (1 s, x1.6, up to 120 s)
 * and fails every call at once meanwhile, under the callers' own backoff (xDS
 * 10 ms doubling to 15 s, certificates 1 s doubling to 150 s, both
 * ztunnel's). After an istiod outage that kept calls failing for as long
 * again once istiod was back, and certificates expired meanwhile. Capped at
 * 1 s, the channel is back within a second of istiod, and the callers'
 * backoffs (the ones ztunnel has) decide the rest.
 */
export const RECONNECT_BACKOFF = { 'grpc.initial_reconnect_backoff_ms': 500, 'grpc.max_reconnect_backoff_ms': 1000 } as const;

export function controlClient(o: ControlChannelOptions, options: ChannelOptions = {}): Client {
  return new Client(grpcTarget(o.address).target, channelCredentials(o), {
    // ztunnel: HTTP/2 keepalive ping every 30 s with a 10 s timeout.
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    ...RECONNECT_BACKOFF,
    ...options,
  });
}
