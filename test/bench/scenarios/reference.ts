// SPDX-License-Identifier: Apache-2.0
// The default scenario: the two reference paths alone, client pod on node0,
// server pod on node1, so every cross-node path measured later has a
// no-mesh floor and a classic-proxy yardstick from the same machine.
import { haproxyTls } from '../paths/haproxy-tls.ts';
import { noMesh } from '../paths/no-mesh.ts';
import { podAt, type Scenario } from '../scenario.ts';

export const reference: Scenario = {
  name: 'reference',
  description: 'the reference paths, across two nodes',
  lab: { nodes: 2, podsPerNode: 1 },
  roles: (lab) => ({ client: podAt(lab, 0, 0), server: podAt(lab, 1, 0) }),
  paths: [noMesh, haproxyTls],
};
