// SPDX-License-Identifier: Apache-2.0
// istiod for the resilience fleet: the istiod double (delta ADS and the CA,
// gRPC over TLS) in this process on 127.0.0.1, reached by each daemon at
// 127.0.0.1:15012 of its own network namespace through a loopback relay this
// process listens with inside that netns (no route leaves the lab, and the
// daemons' netns have none to ours). Killing istiod cuts every relayed
// connection with a reset and closes the relays, so a daemon sees what a dead
// istiod pod gives it: its streams cut, new connections refused.
import net from 'node:net';
import type { status } from '@grpc/grpc-js';
import { listenTcp } from '@skein/bpf';
import { ADDRESS_TYPE_URL, TunnelProtocol } from '@skein/ztunnel-compat/xds/proto';
import type { MessageInit, Service } from '@skein/ztunnel-compat/xds/proto';
import { IstiodDouble } from '../../doubles/istiod/istiod-double.ts';
import type { LabNode, LabPod } from '../../lab/index.ts';

/** Where a daemon dials istiod, inside its own netns (istiod's port, as in ztunnel's default XDS_ADDRESS). */
export const ISTIOD_PORT = 15012;

const tokenOf = (node: string): string => `ztunnel-${node}-token`;

/** 10.244.1.5 -> its 4 bytes, as WDS carries addresses. */
export const ipBytes = (ip: string): Buffer => Buffer.from(ip.split('.').map(Number));

export class IstiodLink {
  readonly istiod: IstiodDouble;
  /** What istiod serves now: workload uid -> its address, and the services' xDS names. */
  readonly served = { workloads: new Map<string, string>(), services: new Set<string>() };
  /** netns paths with a relay (kept across a kill, to listen again on restore). */
  readonly #netns = new Set<string>();
  readonly #relays = new Map<string, net.Server>();
  readonly #sockets = new Set<net.Socket>();
  #down = false;

  private constructor(istiod: IstiodDouble) {
    this.istiod = istiod;
  }

  static async start(nodes: readonly LabNode[]): Promise<IstiodLink> {
    const tokens = Object.fromEntries(nodes.map((n) => [tokenOf(n.name), { namespace: 'istio-system', serviceAccount: 'ztunnel', podName: `ztunnel-${n.name}`, nodeName: n.name }]));
    return new IstiodLink(await IstiodDouble.start({ tokens }));
  }

  /** The daemon environment that points a node's daemon at istiod (xDS and CA), as the Helm chart does. */
  env(node: LabNode): Record<string, string> {
    const addr = `https://127.0.0.1:${ISTIOD_PORT}`;
    return {
      XDS_ADDRESS: addr, CA_ADDRESS: addr, XDS_ROOT_CA: this.istiod.rootPem, CA_ROOT_CA: this.istiod.rootPem,
      AUTH_TOKEN: tokenOf(node.name), POD_NAME: `ztunnel-${node.name}`, POD_NAMESPACE: 'istio-system', INSTANCE_IP: node.ip4,
    };
  }

  /** A pod's workload, as istiod would send it. */
  publish(p: Pick<LabPod, 'namespace' | 'name' | 'serviceAccount' | 'ip4'> & { node: { name: string } }, services: Record<string, { servicePort: number; targetPort: number }[]> = {}): void {
    const uid = `Kubernetes//Pod/${p.namespace}/${p.name}`;
    this.istiod.pushWorkload({
      uid, name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount,
      trustDomain: 'cluster.local', node: p.node.name, addresses: [ipBytes(p.ip4)], tunnelProtocol: TunnelProtocol.HBONE,
      services: Object.fromEntries(Object.entries(services).map(([k, ports]) => [k, { ports }])),
    });
    this.served.workloads.set(uid, p.ip4);
  }

  /** A workload istiod no longer has. */
  unpublish(uid: string): void {
    this.istiod.remove(ADDRESS_TYPE_URL, uid);
    this.served.workloads.delete(uid);
  }

  publishService(s: MessageInit<Service>): void {
    this.istiod.pushService(s);
    this.served.services.add(`${s.namespace ?? ''}/${s.hostname ?? ''}`);
  }

  /** Makes istiod reachable at 127.0.0.1:15012 inside `netnsPath` (before a daemon starts there). */
  async expose(netnsPath: string): Promise<void> {
    this.#netns.add(netnsPath);
    if (!this.#down) await this.#listen(netnsPath);
  }

  async #listen(netnsPath: string): Promise<void> {
    const relay = await listenTcp({ address: '127.0.0.1', port: ISTIOD_PORT, netns: netnsPath }, (a) => {
      const b = net.connect({ host: '127.0.0.1', port: this.istiod.port });
      for (const s of [a, b]) {
        this.#sockets.add(s);
        s.once('close', () => { this.#sockets.delete(s); });
      }
      // Either side failing resets the other: nothing half-done survives.
      a.on('error', () => { b.resetAndDestroy(); });
      b.on('error', () => { a.resetAndDestroy(); });
      a.pipe(b);
      b.pipe(a);
    });
    this.#relays.set(netnsPath, relay);
  }

  /** istiod dies: every connection to it reset, new ones refused, its streams gone. State (resources, CA) is kept. */
  async kill(): Promise<void> {
    this.#down = true;
    for (const r of this.#relays.values()) r.close();
    this.#relays.clear();
    for (const s of this.#sockets) s.resetAndDestroy();
    await this.istiod.stop();
  }

  /** istiod back, with the state it had (and whatever changed meanwhile). */
  async restore(): Promise<void> {
    await this.istiod.restart();
    this.#down = false;
    for (const p of this.#netns) await this.#listen(p);
  }

  /** The CA answers every request with `code` (undefined: it signs again); xDS is untouched. */
  refuseCa(code: status | undefined): void {
    this.istiod.caFault = code === undefined ? undefined : { kind: 'refuse', code };
  }

  /** Stops relaying into a netns that is going away. */
  forget(netnsPath: string): void {
    this.#netns.delete(netnsPath);
    this.#relays.get(netnsPath)?.close();
    this.#relays.delete(netnsPath);
  }

  async close(): Promise<void> {
    for (const r of this.#relays.values()) r.close();
    this.#relays.clear();
    for (const s of this.#sockets) s.destroy();
    await this.istiod.stop();
  }
}
