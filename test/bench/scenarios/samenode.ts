// SPDX-License-Identifier: Apache-2.0
// `npm run bench -- samenode`: same-node pod → service, where the service's
// endpoint uses no tunnel: Skein's kernel fast path, the same through
// Skein's userspace, and no mesh (the client dials the pod directly), in one
// run. The HBONE same-node fast path is not built; see docs/kernel.md.
import { noMesh } from '../paths/no-mesh.ts';
import { skeinFastpath, skeinUserspace } from '../paths/skein-connect-lb.ts';
import { podAt, type Scenario } from '../scenario.ts';

export const samenode: Scenario = {
  name: 'samenode',
  description: 'same-node pod → no-tunnel service: Skein kernel fast path vs Skein userspace vs no mesh',
  lab: { nodes: 1, podsPerNode: 2 },
  roles: (lab) => ({ client: podAt(lab, 0, 0), server: podAt(lab, 0, 1) }),
  paths: [noMesh, skeinFastpath, skeinUserspace],
};
