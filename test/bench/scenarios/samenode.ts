// SPDX-License-Identifier: Apache-2.0
// `npm run bench -- samenode`: same-node pod → service whose endpoint is an
// enrolled pod on the same node: Skein's kernel fast path, Skein's userspace
// HBONE path, and no mesh (the client dials the pod directly), in one run.
import { noMesh } from '../paths/no-mesh.ts';
import { skeinFastpath, skeinUserspace } from '../paths/skein-connect-lb.ts';
import { podAt, type Scenario } from '../scenario.ts';

export const samenode: Scenario = {
  name: 'samenode',
  description: 'same-node pod → service (enrolled endpoint): Skein kernel fast path vs Skein userspace HBONE vs no mesh',
  lab: { nodes: 1, podsPerNode: 2 },
  roles: (lab) => ({ client: podAt(lab, 0, 0), server: podAt(lab, 0, 1) }),
  paths: [noMesh, skeinFastpath, skeinUserspace],
};
