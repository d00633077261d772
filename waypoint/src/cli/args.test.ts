// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWaypointArgs, WaypointUsageError } from './args.ts';

function refuses(argv: string[], message: RegExp): void {
  assert.throws(() => parseWaypointArgs(argv), (e: Error) => e instanceof WaypointUsageError && message.test(e.message));
}

test('generate defaults to a service waypoint named "waypoint" with the namespace left to the kubeconfig', () => {
  assert.deepEqual(parseWaypointArgs(['generate']), {
    kind: 'waypoint', action: 'generate',
    options: { name: 'waypoint', namespace: undefined, trafficType: 'service', sandwich: false, enrollNamespace: false, revision: undefined },
  });
});

test('apply takes every generation flag, in both --flag value and --flag=value forms, and short aliases', () => {
  assert.deepEqual(parseWaypointArgs(['apply', '--name=wp', '-n', 'shop', '--for', 'all', '--sandwich', '--enroll-namespace', '-r', 'canary', '--dry-run']), {
    kind: 'waypoint', action: 'apply', dryRun: true,
    options: { name: 'wp', namespace: 'shop', trafficType: 'all', sandwich: true, enrollNamespace: true, revision: 'canary' },
  });
});

test('list, status and delete take only their own flags', () => {
  assert.deepEqual(parseWaypointArgs(['list', '-A']), { kind: 'waypoint', action: 'list', namespace: undefined, allNamespaces: true });
  assert.deepEqual(parseWaypointArgs(['status', '--name', 'wp', '--namespace', 'ns']), { kind: 'waypoint', action: 'status', name: 'wp', namespace: 'ns' });
  assert.deepEqual(parseWaypointArgs(['delete', '--dry-run']), { kind: 'waypoint', action: 'delete', name: 'waypoint', namespace: undefined, sandwich: false, dryRun: true });
  refuses(['list', '--for', 'all'], /^waypoint list: flag '--for' does not apply here$/);
  refuses(['status', '--dry-run'], /^waypoint status: flag '--dry-run' does not apply here$/);
  refuses(['generate', '--dry-run'], /^waypoint generate: flag '--dry-run' does not apply here$/);
  refuses(['list', '-A', '-n', 'x'], /exclude each other/);
});

test('unknown flags, actions, stray arguments and bad values are refused with a usage error', () => {
  refuses(['apply', '--force'], /^waypoint apply: unknown flag '--force'$/);
  refuses(['apply', 'extra'], /^waypoint apply: unexpected argument 'extra'$/);
  refuses(['frob'], /^waypoint: unknown action 'frob'$/);
  refuses(['apply', '--for', 'pods'], /--for must be one of service, workload, all, not 'pods'/);
  refuses(['apply', '--name'], /'--name' needs a value/);
  refuses(['apply', '--name', '--sandwich'], /'--name' needs a value/);
  refuses(['apply', '--sandwich=yes'], /'--sandwich' takes no value/);
  refuses(['apply', '--name', 'Bad_Name'], /--name 'Bad_Name' is not a valid name/);
  refuses(['apply', '--name', 'a', '--name', 'b'], /given twice/);
  refuses(['apply', '-r', 'bad/rev'], /not a valid label value/);
});
