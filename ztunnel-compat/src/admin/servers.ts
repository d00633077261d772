// SPDX-License-Identifier: Apache-2.0
// The three operational HTTP servers ztunnel has (reference §8.2-8.3):
//   admin      127.0.0.1:15000  /config_dump, /logging, /quitquitquit, /
//   stats      [::]:15020       /metrics, /stats/prometheus (gzip when asked)
//   readiness  [::]:15021       /healthz/ready
import http from 'node:http';
import type net from 'node:net';
import zlib from 'node:zlib';
import { changeLevels, describeLevels, knownScopes, type Logger } from '../log.ts';
import { parseLevelDirectives } from './log-levels.ts';
import type { Metrics } from '../metrics.ts';
import type { Readiness } from './readiness.ts';

export interface AdminDeps {
  log: Logger;
  metrics: Metrics;
  readiness: Readiness;
  configDump: () => unknown;
  /** Called on POST /quitquitquit. */
  shutdown: () => void;
}

export interface AdminAddresses {
  admin: { host: string; port: number };
  stats: { host: string; port: number };
  readiness: { host: string; port: number };
}

function send(res: http.ServerResponse, code: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function adminHandler(d: AdminDeps): http.RequestListener {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    switch (url.pathname) {
      case '/config_dump':
        send(res, 200, `${JSON.stringify(d.configDump(), null, 2)}\n`, 'application/json');
        return;
      case '/logging': {
        if (req.method !== 'POST' && req.method !== 'GET') { send(res, 405, 'method not allowed\n'); return; }
        let change;
        try {
          change = parseLevelDirectives(url.searchParams.get('level') ?? '');
        } catch (err) {
          send(res, 400, `${(err as Error).message}\n`);
          return;
        }
        const known = knownScopes(d.log);
        const unknown = [...change.scopes.keys()].find((s) => !known.has(s));
        if (unknown !== undefined) {
          send(res, 400, `unknown target '${unknown}' (known: ${[...known].sort().join(', ')})\n`);
          return;
        }
        // As ztunnel's set_level: added to the levels in force; `reset` starts again from RUST_LOG's.
        const reset = url.searchParams.has('reset');
        if (reset || change.global !== undefined || change.scopes.size > 0) {
          changeLevels(d.log, { ...(change.global === undefined ? {} : { global: change.global }), scopes: change.scopes, reset });
          d.log.info({ scope: 'admin', level: url.searchParams.get('level'), reset }, 'log level changed');
        }
        send(res, 200, `current log level is ${describeLevels(d.log)}\n`);
        return;
      }
      case '/quitquitquit':
        if (req.method !== 'POST') { send(res, 405, 'use POST\n'); return; }
        send(res, 200, 'shutting down\n');
        setImmediate(d.shutdown);
        return;
      case '/':
        send(res, 200, '<html><body><h1>skein admin</h1><ul><li><a href="/config_dump">/config_dump</a></li><li>/logging?level=debug</li><li>POST /quitquitquit</li></ul></body></html>\n', 'text/html');
        return;
      default:
        send(res, 404, 'not found\n');
    }
  };
}

function statsHandler(d: AdminDeps): http.RequestListener {
  return (req, res) => {
    const path = new URL(req.url ?? '/', 'http://stats').pathname;
    if (path !== '/metrics' && path !== '/stats/prometheus') { send(res, 404, 'not found\n'); return; }
    d.metrics.registry.metrics().then((text) => {
      const type = d.metrics.registry.contentType;
      if (/\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) {
        const body = zlib.gzipSync(text);
        res.writeHead(200, { 'content-type': type, 'content-encoding': 'gzip', 'content-length': body.length });
        res.end(body);
      } else {
        send(res, 200, text, type);
      }
    }, (err: unknown) => { send(res, 500, `metrics failed: ${(err as Error).message}\n`); });
  };
}

function readinessHandler(d: AdminDeps): http.RequestListener {
  return (req, res) => {
    if (new URL(req.url ?? '/', 'http://ready').pathname !== '/healthz/ready') { send(res, 404, 'not found\n'); return; }
    if (d.readiness.ready) send(res, 200, 'ready\n');
    else send(res, 500, `not ready, pending: ${d.readiness.pending.join(', ')}\n`);
  };
}

function listen(server: http.Server, host: string, port: number): Promise<http.Server> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => { server.off('error', reject); resolve(server); });
  });
}

export interface AdminServers {
  ports: { admin: number; stats: number; readiness: number };
  close(): Promise<void>;
}

export async function startAdminServers(d: AdminDeps, a: AdminAddresses): Promise<AdminServers> {
  const servers = await Promise.all([
    listen(http.createServer(adminHandler(d)), a.admin.host, a.admin.port),
    listen(http.createServer(statsHandler(d)), a.stats.host, a.stats.port),
    listen(http.createServer(readinessHandler(d)), a.readiness.host, a.readiness.port),
  ]);
  const port = (s: http.Server): number => (s.address() as net.AddressInfo).port;
  const [admin, stats, readiness] = servers;
  return {
    ports: { admin: port(admin), stats: port(stats), readiness: port(readiness) },
    close: async () => {
      await Promise.all(servers.map((s) => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => { r(); }); })));
    },
  };
}
