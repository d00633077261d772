// SPDX-License-Identifier: Apache-2.0
// `npm run demo`: the README's main job. Until the lab and the data path land
// it shows what exists: the daemon's CLI on Node 24, and the addon putting a
// pod-side listener into a fresh network namespace and reaching it there.
import { execFileSync } from 'node:child_process';
import { connectTcp, libbpfVersion, listenTcp, netnsCookie, originalDst } from '@skein/bpf';
import { version } from '@skein/ztunnel-compat';

interface Step { step: string; ok: boolean; detail: string }

const json = process.argv.includes('--json');
const steps: Step[] = [];

async function namespaceRoundTrip(): Promise<Step> {
  if (process.getuid?.() !== 0) return { step: 'pod-netns-capture', ok: false, detail: 'skipped: needs root to create a network namespace' };
  const name = `skein-demo-${process.pid}`;
  execFileSync('ip', ['netns', 'add', name]);
  const cleanup = (): void => { try { execFileSync('ip', ['netns', 'del', name]); } catch { /* already gone */ } };
  process.once('SIGINT', () => { cleanup(); process.exit(130); });
  try {
    const ns = `/run/netns/${name}`;
    const run = (...args: string[]): void => { execFileSync('ip', ['netns', 'exec', name, ...args]); };
    run('ip', 'link', 'set', 'lo', 'up');
    // istio-cni sends a pod's outbound TCP to 15001; a one-rule version of that.
    run('iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '8080', '-j', 'REDIRECT', '--to-ports', '15001');
    const seen = Promise.withResolvers<string>();
    const server = await listenTcp({ address: '127.0.0.1', port: 15001, netns: ns, mark: 0x539 }, (s) => {
      const dst = originalDst(s);
      seen.resolve(`${dst.address}:${dst.port}`);
      s.end();
    });
    const client = connectTcp({ address: '127.0.0.1', port: 8080, netns: ns });
    client.resume();
    const dst = await seen.promise;
    const inNs = netnsCookie(server);
    client.destroy();
    await new Promise((r) => server.close(r));
    return { step: 'pod-netns-capture', ok: dst === '127.0.0.1:8080', detail: `listener on :15001 in netns cookie ${inNs} caught a connect to ${dst}` };
  } finally {
    cleanup();
  }
}

steps.push({ step: 'daemon-cli', ok: true, detail: `skein ${version} on node ${process.versions.node}` });
steps.push({ step: 'native-addon', ok: true, detail: `libbpf ${libbpfVersion()} linked` });
steps.push(await namespaceRoundTrip());

const exists = ['foundation (issue 2)'];
const pending = ['lab and doubles (3)', 'control plane (4)', 'HBONE data path (5)', 'waypoints (6)', 'eBPF fast paths (7)', 'install + full demo (8)'];
if (json) {
  process.stdout.write(`${JSON.stringify({ paths: [], steps, landed: exists, pending })}\n`);
} else {
  process.stdout.write('Skein demo — what exists so far\n\n');
  for (const s of steps) process.stdout.write(`  ${s.ok ? 'ok  ' : 'FAIL'} ${s.step.padEnd(18)} ${s.detail}\n`);
  process.stdout.write(`\nLanded: ${exists.join(', ')}\nComing: ${pending.join(', ')}\n`);
}
process.exitCode = steps.every((s) => s.ok || s.detail.startsWith('skipped')) ? 0 : 1;
