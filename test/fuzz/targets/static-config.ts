// SPDX-License-Identifier: Apache-2.0
// Static config (LOCAL_XDS / LOCAL_XDS_PATH): xds/local.ts readLocalConfig
// with inline YAML, then applyLocalConfig through fresh handlers, as app.ts
// loads it. Declared error: LocalConfigError (bad YAML, bad fields, and
// resources the handlers reject). Anything else is a finding, including a
// config_dump (state and staticConfig) that cannot be printed afterwards.
import { stringify } from 'yaml';
import { staticConfigSection } from '@skein/ztunnel-compat/admin/config-dump';
import { ProxyState } from '@skein/ztunnel-compat/state/store';
import { ProxyStateUpdater } from '@skein/ztunnel-compat/state/updater';
import { STATIC_WORKLOAD_DEFAULTS } from '@skein/ztunnel-compat/state/workload';
import { applyLocalConfig, LocalConfigError, readLocalConfig } from '@skein/ztunnel-compat/xds/local';
import type { FuzzTarget } from '../target.ts';
import { SAMPLE } from './xds-common.ts';

// As test/integration/control-plane.test.ts writes LOCAL_XDS_PATH.
const FLOW_STYLE = `workloads:
- uid: cluster1//Pod/default/local
  name: local
  namespace: default
  trustDomain: cluster.local
  workloadIps: ["10.244.0.10"]
  protocol: HBONE
  node: node0
  services: {}
services:
- {name: echo, namespace: default, hostname: echo.default.svc.cluster.local, vips: ["/10.96.0.10"], ports: {80: 8080}}
policies:
- {name: deny-all, namespace: default, scope: Namespace, action: Deny, rules: [[[{notPrincipals: [{Presence: null}]}]]]}
`;

export const target: FuzzTarget = {
  name: 'static-config',
  parser: 'xds/local.ts readLocalConfig + applyLocalConfig (inline YAML)',
  maxLen: 4096,
  declared: [LocalConfigError],
  dictionary: ['workloads:', 'services:', 'policies:', 'workloadIps:', 'vips:', 'rules:', 'waypoint:', '{', '}', '[', ']', ': ', '\n- ', '&a', '*a', '!!binary', '/', '::1', '10.0.0.1', 'null', '65536'],
  seeds: () => [Buffer.from(FLOW_STYLE), Buffer.from(stringify(SAMPLE)), Buffer.from('{}'), Buffer.from('workloads:\n- {name: x, namespace: default, workloadIps: ["10.0.0.1"], protocl: TCP, services: {}}\n')],
  run(data) {
    const cfg = readLocalConfig({ inline: data.toString('utf8') });
    const state = new ProxyState();
    const updater = new ProxyStateUpdater(state, { workloadDefaults: STATIC_WORKLOAD_DEFAULTS });
    applyLocalConfig(cfg, { address: updater.addressHandler, authorization: updater.authorizationHandler });
    JSON.stringify({ ...state.configDump(), staticConfig: staticConfigSection(cfg.document) });
  },
};
