// SPDX-License-Identifier: Apache-2.0
// istio-cni's node agent for one lab node: enrolling a pod installs the
// in-pod rules first, then sends Add over ZDS and waits for the ack; a failed
// ack fails the enrollment (istio cni/pkg/nodeagent/net_linux.go AddPodToMesh).
import path from 'node:path';
import type { LabNode, LabPod } from '../lab/index.ts';
import { installInpodRules, removeInpodRules, type InpodOptions } from './inpod-rules.ts';
import { ZdsServer, type ZdsServerOptions } from './zds-server.ts';

export class EnrollError extends Error {
  override name = 'EnrollError';
}

export class CniDouble {
  readonly node: LabNode;
  readonly zds: ZdsServer;
  readonly enrolled = new Set<string>();

  /** Serves ZDS at `<lab dir>/<node>/ztunnel.sock` unless a path is given. */
  constructor(node: LabNode, socketPath: string, options: ZdsServerOptions = {}) {
    this.node = node;
    this.zds = new ZdsServer(socketPath, options);
  }

  static socketPathFor(labDir: string, node: LabNode): string {
    return path.join(labDir, `${node.name}.ztunnel.sock`);
  }

  async enroll(pod: LabPod, options: InpodOptions = {}): Promise<void> {
    if (pod.node !== this.node) throw new EnrollError(`pod ${pod.name} runs on ${pod.node.name}, not ${this.node.name}`);
    installInpodRules(pod.netns, options);
    this.enrolled.add(pod.uid);
    const errors = await this.zds.addPod({
      uid: pod.uid,
      info: { name: pod.name, namespace: pod.namespace, serviceAccount: pod.serviceAccount },
      netnsPath: pod.netnsPath,
    });
    const failed = errors.filter((e) => e !== '');
    if (failed.length > 0) throw new EnrollError(`node proxy refused ${pod.namespace}/${pod.name}: ${failed.join('; ')}`);
  }

  async unenroll(pod: LabPod): Promise<void> {
    this.enrolled.delete(pod.uid);
    await this.zds.removePod(pod.uid);
    removeInpodRules(pod.netns);
  }

  close(): void {
    this.zds.close();
  }
}
