// SPDX-License-Identifier: Apache-2.0
// What a benchmark is made of. A scenario builds a lab, names a client and a
// server pod and lists paths; a path is one way for the client's traffic to
// reach the server (directly, through haproxy, through Skein, ...). Every
// path of a scenario is measured in the same run with the same load, so the
// reference paths are the yardstick for the others.
import type { Lab, LabPod, LabSpec } from '../lab/index.ts';
import type { ProxyProcess } from './measure/proc.ts';

export type { ProxyProcess } from './measure/proc.ts';

export interface Endpoint {
  host: string;
  port: number;
}

/** Where the load generators in the client pod dial for a path. */
export interface Targets {
  /** An HTTP/1.1 server answering small GETs on `/` (wrk). */
  http: Endpoint;
  /** An iperf3 server (one TCP stream; control and data on this port). */
  bulk: Endpoint;
}

/** The lab as a path finds it: the client pod, and the servers running in the server pod. */
export interface BenchEnv {
  lab: Lab;
  client: LabPod;
  server: { pod: LabPod } & Targets;
  /** Extra Node.js flags for the Skein daemons (`--node-arg`). */
  nodeArgs: readonly string[];
}

/** A path once set up: what to dial, and whose CPU and memory to report. */
export interface ActivePath {
  targets: Targets;
  /** Processes the path adds (none for no-mesh); sampled during the load. */
  proxies: ProxyProcess[];
  teardown: () => Promise<void>;
}

export interface BenchPath {
  /** The `path` key in the JSON report; stable across runs. */
  readonly name: string;
  readonly description: string;
  setup(env: BenchEnv): Promise<ActivePath>;
}

export interface Scenario {
  /** The CLI word (`npm run bench -- <name>`) and the `scenario` key of the report. */
  readonly name: string;
  readonly description: string;
  readonly lab: LabSpec;
  roles(lab: Lab): { client: LabPod; server: LabPod };
  /**
   * Scenario-wide set-up before any path (a control-plane double, a daemon per
   * node); returns its teardown.
   */
  prepare?(env: BenchEnv): Promise<() => Promise<void>>;
  readonly paths: readonly BenchPath[];
}

/** Pod `pod` of node `node`, or a clear error if the scenario's lab has none. */
export function podAt(lab: Lab, node: number, pod: number): LabPod {
  const p = lab.nodes[node]?.pods[pod];
  if (p === undefined) throw new Error(`the lab has no pod ${pod} on node ${node}`);
  return p;
}

/** `host:port` in URL form (IPv6 in brackets). */
export function hostPort(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}
