// SPDX-License-Identifier: Apache-2.0
// One pod's proxy, as the ZDS manager starts it: its HBONE server on 15008,
// and the capture listeners dispatching to outbound (15001), inbound
// plaintext (15006) and HBONE (15008). Starting never waits on the CA (an
// absent CA must not hold the ZDS ack past istio-cni's deadline): the server
// takes the pod's certificate from the SecretManager at each connection,
// fetched on demand with the manager's backoff, and follows its rotations.
// With the native engine active (SKEIN_HBONE_ENGINE), 15008 is its server,
// the same handler deciding each CONNECT.
import type { Config } from '../config.ts';
import type { PodProxy, ProxyFactory } from '../inpod/manager.ts';
import { hostPort } from '../decide/outbound.ts';
import type { DnsProxy } from '../dns/proxy.ts';
import { listenerFactory, type EngineListeners, type PodContext } from '../inpod/listeners.ts';
import { forwardedHost } from './hbone/headers.ts';
import { NativeHboneServer } from './hbone/native-server.ts';
import { HboneServer } from './hbone/server.ts';
import type { HboneServerOptions } from './hbone/server.ts';
import { inboundHboneHandler } from './inbound-hbone.ts';
import { handleInboundPlaintext } from './inbound-plaintext.ts';
import { accessFields, logComplete, logFailed } from './access-log.ts';
import { guessInboundService, tcpLabels } from './metrics.ts';
import { handleOutbound, type OutboundDeps } from './outbound.ts';
import { AcceptedSocket, ParkedConnection } from './pod-connection.ts';
import { adoptPooled } from './pooled-reads.ts';
import { findSourceWorkload } from './source-workload.ts';

export function podProxyFactory(p: OutboundDeps, config: Config, dns?: DnsProxy): ProxyFactory {
  const servers = new Map<string, HboneServer | NativeHboneServer>();
  let starts = 0;
  const native = p.nativeHbone;
  // On the native engine 15001 is the engine's listener: a pod connection
  // waits there, parked, for this decision, and most go into a tunnel
  // without Node making a socket for them (pod-connection.ts).
  const engine: EngineListeners | undefined = native === undefined ? undefined : {
    kinds: ['outbound'],
    listen: (_kind, fd, pod, hold) => native.listen(fd, (accepted) => {
      const conn = new ParkedConnection(native, accepted, pod);
      hold(conn);
      p.metrics.socketOpened('source', conn);
      handleOutbound(p, conn, pod);
    }),
  };
  const listeners = listenerFactory({
    mark: p.mark,
    keepalive: p.keepalive,
    reusePort: config.inpodPortReuse,
    ipv6: config.ipv6Enabled,
    ...(dns === undefined ? {} : {
      dns: {
        port: config.dnsProxyPort,
        handlerFor: (pod: PodContext) => dns.handlerFor({ namespace: pod.info.namespace, netnsFd: pod.netnsFd, source: () => findSourceWorkload(p.state, p.nodeName, pod.info) }),
      },
    }),
    ...(engine === undefined ? {} : { engine }),
    // Plaintext pod sockets read into pooled buffers; 15008's go to TLS as they are.
    adopt: (kind, socket) => (kind === 'hbone' ? socket : adoptPooled(socket)),
    onConnection: (kind, socket, pod) => {
      p.metrics.socketOpened(kind === 'outbound' ? 'source' : 'destination', socket);
      switch (kind) {
        case 'outbound':
          handleOutbound(p, new AcceptedSocket(socket), pod);
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
      // The pod's proxy holds its identity while its listeners live (its own
      // key, so a stale start's stop never releases a newer one's): an
      // inbound or outbound fetch after the workload left xDS is then never
      // a certificate nobody forgets.
      const holder = `zds/${uid}/${++starts}`;
      p.secrets.trackWorkload(holder, identity);
      const opts: HboneServerOptions = {
        tls12: config.tls12Enabled,
        pqc: config.pqc,
        ...(p.revocation === undefined ? {} : { revocation: p.revocation }),
        handler: inboundHboneHandler(p, pod, (req, { destination, service, authz, upstream, headerBytes }) => {
          // A pod IP dialled names no service; label it with the pod's, as ztunnel does.
          const destinationService = service ?? guessInboundService(p.state.services.forWorkload(destination), destination, authz.destinationPort, forwardedHost(req.headers));
          const labels = tcpLabels({ reporter: 'destination', source: p.state.workloads.byAddress(p.network, req.peerAddress.ip), sourceIdentity: req.peer, destination, destinationService, mtls: true, flag: '-' });
          p.metrics.opened(labels);
          // On the native engine the tunnel's bytes are the engine's count (the PROXY header was written before it).
          if (req.carrier !== undefined || upstream === undefined) {
            req.carrier?.onEnd((end) => { p.metrics.closed(labels, end.bytesIn, end.bytesOut, end.error); });
            return;
          }
          // The app socket's own counters are the tunnel's bytes: what it
          // wrote came from the client (after our PROXY header), what it read went back.
          upstream.once('close', (hadError: boolean) => {
            p.metrics.closed(labels, upstream.bytesWritten - headerBytes, upstream.bytesRead, hadError ? 'error' : undefined);
          });
        }),
        onTunnelEnd: (end) => {
          const r = end.request;
          const fields = accessFields({
            direction: 'inbound', srcAddr: hostPort(r.peerAddress.ip, r.peerAddress.port), source: p.state.workloads.byAddress(p.network, r.peerAddress.ip),
            srcIdentity: r.peer, dstAddr: hostPort(r.localAddress.ip, r.localAddress.port), hboneAddr: hostPort(r.authority.host, r.authority.port),
            destination: findSourceWorkload(p.state, p.nodeName, info), service: undefined,
          });
          logComplete(p.access, fields, { bytesSent: end.bytesOut, bytesRecv: end.bytesIn, durationMs: end.durationMs, error: end.reason === 'closed' ? undefined : end.reason });
        },
        onStreamError: (err, r) => {
          p.guard.fail('hbone', () => ({ 'src.addr': hostPort(r.peerAddress.ip, r.peerAddress.port), 'dst.addr': hostPort(r.localAddress.ip, r.localAddress.port), direction: 'inbound' }), () => [], err);
        },
        onCertificateRefused: (r) => {
          p.certificates?.refused('inbound', r.reason);
          p.log.warn({ scope: 'inbound', pod: `${info.namespace}/${info.name}`, src: hostPort(r.peerAddress.ip, r.peerAddress.port), reason: r.reason, err: r.error.message },
            'refused an HBONE connection: no valid certificate to serve it with');
        },
        onReject: (r) => {
          const fields = accessFields({
            direction: 'inbound', srcAddr: hostPort(r.peerAddress.ip, r.peerAddress.port), source: p.state.workloads.byAddress(p.network, r.peerAddress.ip),
            srcIdentity: r.peer, dstAddr: hostPort(r.localAddress.ip, r.localAddress.port), hboneAddr: r.authority,
            destination: findSourceWorkload(p.state, p.nodeName, info), service: undefined,
          });
          logFailed(p.access, { ...fields, status: r.status }, r.reason);
        },
      };
      const source = p.secrets.sourceFor(identity);
      const server = p.nativeHbone === undefined ? new HboneServer(source, opts) : new NativeHboneServer(p.nativeHbone, source, opts);
      servers.set(uid, server);
      let proxy: PodProxy;
      try {
        proxy = await listeners.start(uid, info, netnsFd);
      } catch (err) {
        if (servers.get(uid) === server) servers.delete(uid);
        await server.close(0);
        p.secrets.untrackWorkload(holder);
        throw err;
      }
      return {
        stop: async (drainMs = 0) => {
          // A pod re-added under the same uid while this one stopped has its own server.
          if (servers.get(uid) === server) servers.delete(uid);
          // GOAWAY first, so clients open new streams elsewhere; tunnels in flight finish within the drain.
          const hbone = server.close(Math.max(drainMs, 1000));
          try {
            await proxy.stop(drainMs);
            await hbone;
          } finally {
            p.secrets.untrackWorkload(holder);
          }
        },
      };
    },
  };
}
