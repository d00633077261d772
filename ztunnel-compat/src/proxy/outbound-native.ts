// SPDX-License-Identifier: Apache-2.0
// Outbound HBONE on the native engine (SKEIN_HBONE_ENGINE=native): the
// decision proxy/outbound.ts made, acted on by the engine. The pod socket
// goes to the engine, which makes the pooled connection in the pod's netns
// with its mark; metrics and the access log are written from the two events
// the engine sends back (opened or failed, then ended), as the JavaScript
// path writes them.
import type { OutboundDecision } from '../decide/outbound.ts';
import type { Identity } from '../identity/spiffe.ts';
import type { PodContext } from '../inpod/listeners.ts';
import { logComplete, logFailed, type AccessFields } from './access-log.ts';
import { IdentityError } from '../identity/error.ts';
import { HboneError, HboneErrorCode } from './hbone/error.ts';
import type { NativeHboneClient, NativeTunnel } from './hbone/native-client.ts';
import type { ProxyInputs } from './inputs.ts';
import type { PodConnection } from './pod-connection.ts';
import type { ResponseFlag, tcpLabels } from './metrics.ts';

export interface NativeOutbound {
  identity: Identity;
  decision: Extract<OutboundDecision, { kind: 'hbone' }>;
  headers: Readonly<Record<string, string>>;
  fields: AccessFields;
  labels: (flag: ResponseFlag) => ReturnType<typeof tcpLabels>;
  started: number;
}

export async function viaNativeHbone(p: ProxyInputs, client: NativeHboneClient, conn: PodConnection, pod: PodContext, o: NativeOutbound): Promise<void> {
  const d = o.decision;
  let tunnel: NativeTunnel;
  try {
    const cert = await p.secrets.fetch(o.identity);
    tunnel = await conn.carry(client, {
      cert,
      expected: d.expectedIdentities,
      upstream: d.upstream,
      authority: d.authority,
      poolKey: d.poolKey,
      headers: o.headers,
      netnsFd: pod.netnsFd,
      ...(p.mark === undefined ? {} : { mark: p.mark }),
      ...(p.keepalive === undefined ? {} : { keepalive: p.keepalive }),
    });
  } catch (err) {
    // No valid certificate of our own: refused, never presented expired (as outbound.ts).
    if (err instanceof IdentityError) p.certificates?.refused('outbound', 'unavailable');
    else if (err instanceof HboneError && err.code === HboneErrorCode.CERT_EXPIRED) p.certificates?.refused('outbound', 'expired');
    p.metrics.failed(o.labels(err instanceof HboneError ? err.flag : 'CONNECT'));
    logFailed(p.access, o.fields, (err as Error).message);
    conn.destroy();
    return;
  }
  const l = o.labels('-');
  p.metrics.opened(l);
  const end = await tunnel.done;
  p.metrics.closed(l, end.sent, end.recv, end.error);
  logComplete(p.access, o.fields, { bytesSent: end.sent, bytesRecv: end.recv, durationMs: Date.now() - o.started, error: end.error });
}
