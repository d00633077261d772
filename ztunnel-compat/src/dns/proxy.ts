// SPDX-License-Identifier: Apache-2.0
// The DNS proxy as the daemon runs it (ztunnel's dns/server.rs in brief):
// per pod, answer what WDS knows (service hostnames with VIPs, ServiceEntry
// hosts included), send the rest upstream from the pod's netns, SERVFAIL
// when upstream does not answer, and count it all.
import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from '../log.ts';
import { bestService } from '../state/service-index.ts';
import { visibleTo, type Service } from '../state/service.ts';
import type { ProxyState } from '../state/store.ts';
import type { Workload } from '../state/workload.ts';
import { respond, servfail, type Addresses } from './answer.ts';
import { forward } from './forwarder.ts';
import { DnsMetrics } from './metrics.ts';
import { candidateHosts, wildcardsOf } from './names.ts';
import { nameservers } from './resolv-conf.ts';
import type { DnsHandler } from './server.ts';

export interface DnsProxyDeps {
  state: ProxyState;
  metrics: DnsMetrics;
  log: Logger;
  clusterDomain: string;
  ipv6: boolean;
  mark: number | undefined;
  resolvConf: string;
  /** PREFERED_SERVICE_NAMESPACE: among services of one hostname, the next choice after the client's own namespace. */
  preferredNamespace?: string | undefined;
}

/** How long each nameserver gets to answer a forwarded query. */
const UPSTREAM_TIMEOUT_MS = 2000;

/** resolv.conf is re-read at most this often (it changes with the node proxy's pod, rarely). */
const RESOLV_CONF_TTL_MS = 5000;

export class DnsProxy {
  readonly #d: DnsProxyDeps;
  #servers: { at: number; list: string[] } = { at: -Infinity, list: [] };

  constructor(d: DnsProxyDeps) {
    this.#d = d;
  }

  #nameservers(): string[] {
    const now = performance.now();
    if (now - this.#servers.at < RESOLV_CONF_TTL_MS) return this.#servers.list;
    let list: string[] = [];
    try {
      list = nameservers(fs.readFileSync(this.#d.resolvConf, 'utf8'));
    } catch (err) {
      this.#d.log.warn({ scope: 'dns', path: this.#d.resolvConf, err: (err as Error).message }, 'cannot read the upstream nameservers');
    }
    this.#servers = { at: now, list };
    return list;
  }

  /** The VIPs of the service `qname` names for a client in `namespace`; undefined: not ours. */
  find(qname: string, namespace: string): Addresses | undefined {
    for (const host of candidateHosts(qname, namespace, this.#d.clusterDomain)) {
      // The name itself, then the wildcard hosts that cover it (as ztunnel).
      for (const h of [host, ...wildcardsOf(host)]) {
        const svc = this.#visible(h, namespace);
        if (svc === undefined) continue;
        const ips = svc.vips.map((v) => v.ip);
        return { v4: ips.filter((ip) => net.isIPv4(ip)), v6: this.#d.ipv6 ? ips.filter((ip) => net.isIPv6(ip)) : [] };
      }
    }
    return undefined;
  }

  /**
   * The service a client in `namespace` means by `hostname`: only ones it may
   * see (a namespace-local ServiceEntry stays in its namespace) and that have
   * a VIP (for a headless one the upstream knows better), then ztunnel's
   * usual preference.
   */
  #visible(hostname: string, namespace: string): Service | undefined {
    const candidates = this.#d.state.services.byHostname(hostname).filter((s) => s.vips.length > 0 && visibleTo(s, namespace));
    // ztunnel's DNS order: the client's namespace, then PREFERED_SERVICE_NAMESPACE, then its usual choice.
    return bestService(candidates, namespace, this.#d.preferredNamespace);
  }

  /** The handler for one pod's listeners; `source` finds the pod's workload (for the metrics' labels). */
  handlerFor(pod: { namespace: string; netnsFd: number; source: () => Workload | undefined }): DnsHandler {
    return async (query, protocol) => {
      const source = pod.source();
      const namespace = source?.namespace ?? pod.namespace;
      const v = respond(query, (qname) => this.find(qname, namespace));
      const labels = DnsMetrics.labels(v.type, protocol, source);
      this.#d.metrics.request(labels);
      if (v.kind !== 'forward') return v.response;
      const t0 = performance.now();
      try {
        const answer = await forward(query, protocol, pod.netnsFd, { servers: this.#nameservers(), mark: this.#d.mark, timeoutMs: UPSTREAM_TIMEOUT_MS });
        this.#d.metrics.upstream(labels, (performance.now() - t0) / 1000, true);
        return answer;
      } catch (err) {
        this.#d.metrics.upstream(labels, (performance.now() - t0) / 1000, false);
        this.#d.log.debug({ scope: 'dns', namespace, err: (err as Error).message }, 'upstream DNS failed');
        return servfail(query);
      }
    };
  }
}
