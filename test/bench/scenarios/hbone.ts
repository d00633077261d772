// SPDX-License-Identifier: Apache-2.0
// `npm run bench -- hbone`: cross-node pod → pod through two Skein node
// proxies over HBONE, beside both reference paths from the same run.
import { haproxyTls } from '../paths/haproxy-tls.ts';
import { noMesh } from '../paths/no-mesh.ts';
import { skeinHbone, skeinNative } from '../paths/skein-hbone.ts';
import { podAt, type Scenario } from '../scenario.ts';

export const hbone: Scenario = {
  name: 'hbone',
  description: 'Skein HBONE across two nodes, with the reference paths',
  lab: { nodes: 2, podsPerNode: 1 },
  roles: (lab) => ({ client: podAt(lab, 0, 0), server: podAt(lab, 1, 0) }),
  paths: [noMesh, haproxyTls, skeinHbone, skeinNative],
};
