// SPDX-License-Identifier: Apache-2.0
// The Envoy examples in docs/waypoints.md are real config: every YAML block
// preceded by `<!-- envoy-proto: TYPE -->` must pass the strict proto check.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { checkEnvoyJson, loadEnvoyProtos } from './envoy-api.ts';

const doc = readFileSync(new URL('../../docs/waypoints.md', import.meta.url), 'utf8');
const blocks = [...doc.matchAll(/<!-- envoy-proto: ([\w.]+) -->\n```yaml\n([\s\S]*?)\n```/g)].map((m) => ({ type: m[1] ?? '', yaml: m[2] ?? '' }));

const root = loadEnvoyProtos([
  'envoy/config/listener/v3/listener.proto',
  'envoy/extensions/filters/network/rbac/v3/rbac.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
]);

test('docs/waypoints.md has its Envoy examples marked for checking', () => {
  assert.deepEqual(blocks.map((b) => b.type), ['envoy.config.listener.v3.Filter', 'envoy.config.listener.v3.Listener']);
});

for (const [i, b] of blocks.entries()) {
  test(`docs/waypoints.md Envoy example ${i + 1} is a valid ${b.type}`, () => {
    assert.deepEqual(checkEnvoyJson(root, b.type, parse(b.yaml)), []);
  });
}
