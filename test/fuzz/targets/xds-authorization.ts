// SPDX-License-Identifier: Apache-2.0
// Authorization resources through the updater's authorization handler:
// protobuf decoding (xds/proto.ts) and conversion (state/policy.ts). See
// xds-common.ts for the checks.
import { AUTHORIZATION_TYPE_URL } from '@skein/ztunnel-compat/xds/proto';
import type { FuzzTarget } from '../target.ts';
import { feed, policySeeds } from './xds-common.ts';

export const target: FuzzTarget = {
  name: 'xds-authorization',
  parser: `xds/proto.ts + state/updater.ts authorizationHandler (${AUTHORIZATION_TYPE_URL})`,
  maxLen: 4096,
  declared: [],
  seeds: policySeeds,
  run(data) {
    feed((u) => u.authorizationHandler, 'default/allow', data);
  },
};
