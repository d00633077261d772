// SPDX-License-Identifier: Apache-2.0
// WDS Address resources (workloads and services) through the updater's
// address handler: protobuf decoding (xds/proto.ts) and conversion
// (state/workload.ts, state/service.ts). See xds-common.ts for the checks.
import { ADDRESS_TYPE_URL } from '@skein/ztunnel-compat/xds/proto';
import type { FuzzTarget } from '../target.ts';
import { addressSeeds, feed } from './xds-common.ts';

export const target: FuzzTarget = {
  name: 'xds-address',
  parser: `xds/proto.ts + state/updater.ts addressHandler (${ADDRESS_TYPE_URL})`,
  maxLen: 4096,
  // A handler declares no error: a bad resource is a NACK, not a throw.
  declared: [],
  seeds: addressSeeds,
  run(data) {
    feed((u) => u.addressHandler, 'cluster1//Pod/default/local', data);
  },
};
