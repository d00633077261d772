// SPDX-License-Identifier: Apache-2.0
// `npm run bench -- connectlb`: pod → service whose endpoint uses no tunnel
// (a pod outside ambient): Skein's connect-time kernel path vs Skein's
// userspace relay vs no mesh, in one run.
import { noMesh } from '../paths/no-mesh.ts';
import { skeinConnectLb, skeinConnectLbUserspace } from '../paths/skein-connect-lb.ts';
import { podAt, type Scenario } from '../scenario.ts';

export const connectlb: Scenario = {
  name: 'connectlb',
  description: 'pod → no-tunnel service: Skein kernel connect-time load balancing vs Skein userspace vs no mesh',
  lab: { nodes: 1, podsPerNode: 2 },
  roles: (lab) => ({ client: podAt(lab, 0, 0), server: podAt(lab, 0, 1) }),
  paths: [noMesh, skeinConnectLb, skeinConnectLbUserspace],
};
