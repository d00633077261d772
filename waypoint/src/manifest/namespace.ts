// SPDX-License-Identifier: Apache-2.0
// `--enroll-namespace`: a server-side apply patch of the Namespace carrying
// only the label, so Skein owns that one field and nothing else.
import { LABEL_USE_WAYPOINT } from './constants.ts';
import type { KubeObject } from './types.ts';

export function enrollNamespacePatch(namespace: string, waypoint: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: namespace, labels: { [LABEL_USE_WAYPOINT]: waypoint } },
  };
}
