// SPDX-License-Identifier: Apache-2.0
// The istiod double for the xds benchmark, in its own process so that the
// server's encoding work is not charged to the client under test.
// argv: workloads services policies. Prints one JSON line {port, rootPem, token}
// when loaded, then reads commands from stdin: "update <i> <gen>", "quit".
import readline from 'node:readline';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '@skein/ztunnel-compat/xds/proto';
import { IstiodDouble } from '../../doubles/istiod/istiod-double.ts';
import { policy, service, workload, type MeshSize } from './fixture.ts';

const [w = '0', s = '1', p = '0'] = process.argv.slice(2);
const size: MeshSize = { workloads: Number(w), services: Math.max(1, Number(s)), policies: Number(p) };
const token = 'bench-token';
const istiod = await IstiodDouble.start({
  tokens: { [token]: { namespace: 'istio-system', serviceAccount: 'ztunnel', podName: 'ztunnel-bench', nodeName: 'node0' } },
});
for (let j = 0; j < size.services; j++) istiod.pushService(service(j));
for (let i = 0; i < size.workloads; i++) istiod.pushWorkload(workload(i, size));
for (let k = 0; k < size.policies; k++) istiod.push(AUTHORIZATION_TYPE_URL, `ns${k % 50}/allow-${k}`, policy(k));
process.stdout.write(`${JSON.stringify({ port: istiod.port, rootPem: istiod.rootPem, token })}\n`);

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [cmd, a, b] = line.split(' ');
  if (cmd === 'update') istiod.pushWorkload(workload(Number(a), size, Number(b)));
  else if (cmd === 'remove') istiod.remove(ADDRESS_TYPE_URL, workload(Number(a), size).uid ?? '');
  else if (cmd === 'quit') void istiod.stop().then(() => process.exit(0));
});
rl.on('close', () => { void istiod.stop().then(() => process.exit(0)); });
