// SPDX-License-Identifier: Apache-2.0
// One pod's proxy, as the ZDS manager starts it: the pod's certificate, its
// HBONE server on 15008, and the capture listeners dispatching to outbound
// (15001), inbound plaintext (15006) and HBONE (15008).
import type { Config } from '../config.ts';
import type { PodProxy, ProxyFactory } from '../inpod/manager.ts';
import { listenerFactory, type PodContext } from '../inpod/listeners.ts';
import { Priority } from '../identity/manager.ts';
import { HboneServer } from './hbone/server.ts';
import { inboundHboneHandler } from './inbound-hbone.ts';
import { handleInboundPlaintext } from './inbound-plaintext.ts';
import { tcpLabels } from './metrics.ts';
import { handleOutbound, type OutboundDeps } from './outbound.ts';
import { findSourceWorkload } from './source-workload.ts';

export function podProxyFactory(p: OutboundDeps, config: Config): ProxyFactory {
  const servers = new Map<string, HboneServer>();
  const listeners = listenerFactory({
    mark: p.mark,
    reusePort: config.inpodPortReuse,
    ipv6: config.ipv6Enabled,
    onConnection: (kind, socket, pod) => {
      switch (kind) {
        case 'outbound':
          handleOutbound(p, socket, pod);
          return;
        case 'inbound':
          socket.on('error', () => undefined);
          handleInboundPlaintext(p, socket, pod);
          return;
        case 'hbone': {
          const server = servers.get(pod.uid);
          if (server === undefined) socket.destroy();
          else server.accept(socket);
          return;
        }
      }
    },
  });
  return {
    async start(uid, info, netnsFd): Promise<PodProxy> {
      const pod: PodContext = { uid, info, netnsFd };
      const workload = findSourceWorkload(p.state, p.nodeName, info);
      const identity = { trustDomain: workload?.trustDomain ?? config.trustDomain, namespace: info.namespace, serviceAccount: info.serviceAccount };
      const cert = await p.secrets.fetch(identity, Priority.RealTime);
      const server = new HboneServer(cert, {
        tls12: config.tls12Enabled,
        handler: inboundHboneHandler(p, pod, (req, destination, authz, upstream) => {
          const labels = tcpLabels({ reporter: 'destination', source: p.state.workloads.byAddress(p.network, req.peerAddress.ip), sourceIdentity: req.peer, destination, destinationService: undefined, mtls: true, flag: '-' });
          p.metrics.opened(labels);
          const untrack = p.connections.register({ destinationUid: destination.uid, request: authz, close: () => { upstream.destroy(); } });
          // The app socket's own counters are the tunnel's bytes: what it
          // wrote came from the client, what it read went back.
          upstream.once('close', () => {
            untrack();
            p.metrics.closed(labels, upstream.bytesWritten, upstream.bytesRead);
          });
        }),
        onTunnelEnd: (end) => {
          p.access.info({ 'src.identity': `spiffe://${end.peer.trustDomain}/ns/${end.peer.namespace}/sa/${end.peer.serviceAccount}`, 'dst.addr': `${end.authority.host}:${end.authority.port}`, direction: 'inbound', bytes_sent: end.bytesOut, bytes_recv: end.bytesIn, ...(end.reason === 'closed' ? {} : { error: end.reason }) }, 'connection complete');
        },
        onReject: (status, reason, authority) => {
          p.access.warn({ direction: 'inbound', 'dst.addr': authority, status, error: reason }, 'connection failed');
        },
      });
      servers.set(uid, server);
      let proxy: PodProxy;
      try {
        proxy = await listeners.start(uid, info, netnsFd);
      } catch (err) {
        servers.delete(uid);
        await server.close(0);
        throw err;
      }
      return {
        stop: async () => {
          servers.delete(uid);
          await proxy.stop();
          await server.close(1000);
        },
      };
    },
  };
}
