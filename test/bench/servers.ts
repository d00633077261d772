// SPDX-License-Identifier: Apache-2.0
// The far end of every path, in the server pod: nginx answering small GETs
// (a real, low-overhead C server, so the proxies dominate what is measured)
// and an iperf3 server for bulk throughput. Both bind the pod address only.
import fs from 'node:fs';
import path from 'node:path';
import type { LabPod } from '../lab/index.ts';
import { startDaemon } from './daemon.ts';
import type { Targets } from './scenario.ts';

export const HTTP_PORT = 8080;
export const BULK_PORT = 5201;

export interface Servers {
  targets: Targets;
  stop: () => Promise<void>;
}

/** The nginx configuration: one process, no logging, keep-alive without limits. */
export function nginxConfig(dir: string, address: string, port: number): string {
  const host = address.includes(':') ? `[${address}]` : address;
  return `# nginx for the benchmark server pod; written by test/bench/servers.ts.
daemon off;
# One process, so its PID is the server and nothing forks behind our back.
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  # Temp paths in the run directory, not the system's /var/lib/nginx.
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # wrk keeps each connection for the whole run; nginx's default of 1000
  # requests per connection would add reconnects (and TLS handshakes on the
  # proxied paths) to what is meant to be per-request cost.
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  server {
    listen ${host}:${port};
    location / {
      default_type text/plain;
      return 200 "ok\\n";
    }
  }
}
`;
}

export async function startServers(pod: LabPod, runDir: string): Promise<Servers> {
  const dir = path.join(runDir, `server-${pod.name}`);
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, nginxConfig(dir, pod.ip4, HTTP_PORT));
  const nginx = await startDaemon(pod, { cmd: 'nginx', args: ['-p', dir, '-e', 'stderr', '-c', conf], ports: [HTTP_PORT] });
  try {
    // Serves one test after another until the lab kills it.
    const iperf = await startDaemon(pod, { cmd: 'iperf3', args: ['-s', '-B', pod.ip4, '-p', String(BULK_PORT)], ports: [BULK_PORT] });
    return {
      targets: { http: { host: pod.ip4, port: HTTP_PORT }, bulk: { host: pod.ip4, port: BULK_PORT } },
      stop: async () => { await Promise.all([nginx.stop(), iperf.stop()]); },
    };
  } catch (e) {
    await nginx.stop();
    throw e;
  }
}
