// SPDX-License-Identifier: Apache-2.0
// A sidecar stand-in for interop tests: a pod outside ambient whose own proxy
// speaks HBONE, as an Istio sidecar labelled `networking.istio.io/tunnel=http`
// does (istiod marks it `native_tunnel` in WDS). Built on Skein's HBONE
// library: a server on the pod's own :15008 that forwards each CONNECT to the
// app on the pod's loopback, and a client that tunnels straight to a
// destination's :15008 with the sidecar's certificate. Test fixture only.
import type net from 'node:net';
import { connectTcp, listenTcp } from '@skein/bpf';
import type { WorkloadCertificate } from '@skein/ztunnel-compat/identity/certificate';
import { spiffeUri, type Identity } from '@skein/ztunnel-compat/identity/spiffe';
import { HboneClient } from '@skein/ztunnel-compat/proxy/hbone/client';
import { HboneServer } from '@skein/ztunnel-compat/proxy/hbone/server';
import type { LabPod } from '../../lab/index.ts';

export interface SidecarCall {
  /** SPIFFE URI of the HBONE client, from its verified certificate. */
  peer: string;
  authority: string;
}

export class HboneSidecar {
  readonly pod: LabPod;
  /** Every CONNECT the sidecar's inbound accepted, in order. */
  readonly calls: SidecarCall[] = [];
  readonly #server: HboneServer;
  readonly #client = new HboneClient({ idleTimeoutMs: 1000 });
  #listener: net.Server | undefined;

  private constructor(pod: LabPod, cert: WorkloadCertificate) {
    this.pod = pod;
    // A sidecar's inbound sends each tunnel to its app on localhost.
    this.#server = new HboneServer(cert, {
      handler: async (req) => {
        const app = connectTcp({ address: '127.0.0.1', port: req.authority.port, netns: pod.netnsPath, allowHalfOpen: true });
        const err = await new Promise<Error | undefined>((resolve) => {
          app.once('connect', () => { resolve(undefined); });
          app.once('error', resolve);
        });
        if (err !== undefined) return { status: 503, reason: `app on port ${req.authority.port}: ${err.message}` };
        this.calls.push({ peer: spiffeUri(req.peer), authority: `${req.authority.host}:${req.authority.port}` });
        return { status: 200, upstream: app };
      },
    });
  }

  /** Listens on the pod's own address, port 15008, inside its netns. */
  static async start(pod: LabPod, cert: WorkloadCertificate): Promise<HboneSidecar> {
    const s = new HboneSidecar(pod, cert);
    // SO_REUSEPORT: a restarted sidecar binds again while old connections linger.
    s.#listener = await listenTcp({ address: pod.ip4, port: 15008, netns: pod.netnsPath, reusePort: true }, (socket) => { s.#server.accept(socket); });
    return s;
  }

  /**
   * The sidecar's outbound to an ambient pod: HBONE straight to the
   * destination's :15008 (no node proxy on this side), expecting its identity.
   * Resolves with what the destination app answered to one line.
   */
  async call(cert: WorkloadCertificate, to: { ip: string; port: number; identity: Identity }, line: string): Promise<string> {
    const tunnel = await this.#client.connect({
      cert, expected: [to.identity], upstream: { ip: to.ip, port: 15008 }, authority: `${to.ip}:${to.port}`,
      createSocket: () => connectTcp({ address: to.ip, port: 15008, netns: this.pod.netnsPath }),
    });
    return new Promise((resolve, reject) => {
      let got = '';
      tunnel.on('data', (d: Buffer) => { got += d.toString(); });
      tunnel.once('end', () => { resolve(got); });
      tunnel.once('error', reject);
      tunnel.end(line);
    });
  }

  async stop(): Promise<void> {
    this.#listener?.close();
    this.#client.destroy();
    await this.#server.close(0);
  }
}
