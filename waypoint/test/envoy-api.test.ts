// SPDX-License-Identifier: Apache-2.0
// The Envoy fragments Skein generates, checked against Envoy's API protos;
// and the checker itself, which must catch misspelt fields and bad values.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { sandwichEnvoyFilter } from '../src/manifest/sandwich.ts';
import { proxyProtocolListenerFilter } from '../src/manifest/proxy-protocol-filter.ts';
import { METADATA_KEY_PEER, METADATA_KEY_SERVICE, METADATA_NAMESPACE } from '../src/manifest/constants.ts';
import { TLV_PEER_IDENTITY, TLV_SERVICE_HOSTNAME } from '../src/proxy-protocol/tlv.ts';
import { checkEnvoyJson, loadEnvoyProtos, toEnvoyMessage } from './envoy-api.ts';

const LISTENER_FILTER = 'envoy.config.listener.v3.ListenerFilter';
const PROXY_PROTOCOL = 'envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol';

const root = loadEnvoyProtos([
  'envoy/config/listener/v3/listener_components.proto',
  'envoy/extensions/filters/listener/proxy_protocol/v3/proxy_protocol.proto',
]);

function patchValue(filter: { spec?: Record<string, unknown> }): unknown {
  const patches = filter.spec?.configPatches as { patch: { value: unknown } }[];
  assert.equal(patches.length, 1);
  return patches[0]?.patch.value;
}

test('the sandwich EnvoyFilter patches in a ListenerFilter Envoy accepts, reading both Istio TLVs', () => {
  const value = patchValue(sandwichEnvoyFilter({ name: 'wp', namespace: 'ns', trafficType: 'service', sandwich: true, enrollNamespace: false }));
  assert.deepEqual(checkEnvoyJson(root, LISTENER_FILTER, value), []);
  const msg = root.lookupType(LISTENER_FILTER).toObject(toEnvoyMessage(root, LISTENER_FILTER, value)) as { name: string; typed_config: { type_url: string; value: Uint8Array } };
  assert.equal(msg.name, 'envoy.filters.listener.proxy_protocol');
  assert.equal(msg.typed_config.type_url, `type.googleapis.com/${PROXY_PROTOCOL}`);
  // The Any's bytes decode as Envoy's ProxyProtocol config with the TLV rules intact.
  const pp = root.lookupType(PROXY_PROTOCOL);
  const decoded = pp.toObject(pp.decode(msg.typed_config.value));
  assert.deepEqual(decoded, {
    rules: [
      { tlv_type: TLV_PEER_IDENTITY, on_tlv_present: { metadata_namespace: METADATA_NAMESPACE, key: METADATA_KEY_PEER } },
      { tlv_type: TLV_SERVICE_HOSTNAME, on_tlv_present: { metadata_namespace: METADATA_NAMESPACE, key: METADATA_KEY_SERVICE } },
    ],
  });
  assert.deepEqual([TLV_PEER_IDENTITY, TLV_SERVICE_HOSTNAME], [0xd0, 0xd1]);
});

test('the committed sandwich golden file carries the same valid fragment', () => {
  const docs = parseAllDocuments(readFileSync(new URL('golden/sandwich.yaml', import.meta.url), 'utf8')).map((d) => d.toJS() as { kind: string; spec?: Record<string, unknown> });
  const filters = docs.filter((d) => d.kind === 'EnvoyFilter');
  assert.equal(filters.length, 1);
  const [filter] = filters;
  assert.ok(filter);
  assert.deepEqual(checkEnvoyJson(root, LISTENER_FILTER, patchValue(filter)), []);
});

test('a misspelt field name is caught, at any depth', () => {
  const typo = (mutate: (tc: Record<string, unknown>) => void): string[] => {
    const f = proxyProtocolListenerFilter();
    mutate(f.typed_config as Record<string, unknown>);
    return checkEnvoyJson(root, LISTENER_FILTER, f);
  };
  assert.match(typo((tc) => { tc.rule = tc.rules; delete tc.rules; }).join('\n'), /\$\.typed_config\.rule: no field 'rule' in envoy\.extensions\.filters\.listener\.proxy_protocol\.v3\.ProxyProtocol/);
  assert.match(typo((tc) => { (tc.rules as Record<string, unknown>[])[0] = { tlv_typ: 208 }; }).join('\n'), /rules\[0\]\.tlv_typ: no field 'tlv_typ'/);
  assert.match(typo((tc) => {
    (tc.rules as Record<string, unknown>[])[1] = { tlv_type: 209, on_tlv_present: { metadata_namepsace: 'x', key: 'k' } };
  }).join('\n'), /rules\[1\]\.on_tlv_present\.metadata_namepsace: no field/);
  assert.match(checkEnvoyJson(root, LISTENER_FILTER, { name: 'x', typedConfig: { '@type': `type.googleapis.com/${PROXY_PROTOCOL}` }, typed_confg: {} }).join('\n'), /typed_confg: no field/);
});

test('json names are accepted as Envoy accepts them, and give the same message', () => {
  const camel = { name: 'envoy.filters.listener.proxy_protocol', typedConfig: { '@type': `type.googleapis.com/${PROXY_PROTOCOL}`, rules: [{ tlvType: 208, onTlvPresent: { metadataNamespace: 'ns', key: 'k' } }] } };
  const snake = { name: 'envoy.filters.listener.proxy_protocol', typed_config: { '@type': `type.googleapis.com/${PROXY_PROTOCOL}`, rules: [{ tlv_type: 208, on_tlv_present: { metadata_namespace: 'ns', key: 'k' } }] } };
  assert.deepEqual(checkEnvoyJson(root, LISTENER_FILTER, camel), []);
  const t = root.lookupType(LISTENER_FILTER);
  assert.deepEqual(t.encode(toEnvoyMessage(root, LISTENER_FILTER, camel)).finish(), t.encode(toEnvoyMessage(root, LISTENER_FILTER, snake)).finish());
});

test('values are checked: scalar types, validate rules, enums, Any types and oneofs', () => {
  const pp = (body: Record<string, unknown>): string => checkEnvoyJson(root, PROXY_PROTOCOL, body).join('\n');
  assert.match(pp({ rules: [{ tlv_type: '0xD0' }] }), /"0xD0" is not an integer/);
  assert.match(pp({ rules: [{ tlv_type: 256 }] }), /tlv_type: must be < 256/);
  assert.match(pp({ rules: [{ tlv_type: -1 }] }), /tlv_type: -1 is not an integer in \[0, 4294967295\]/);
  assert.match(pp({ rules: [{ tlv_type: 208, on_tlv_present: { key: '' } }] }), /key: must be at least 1 character/);
  assert.match(pp({ rules: { tlv_type: 208 } }), /repeated 'rules' must be a JSON array/);
  assert.match(pp({ allow_requests_without_proxy_protocol: 'false' }), /is not true or false/);
  assert.equal(pp({ disallowed_versions: ['V1'] }), '');
  assert.equal(pp({ disallowed_versions: [0] }), '');
  assert.match(pp({ disallowed_versions: ['V3'] }), /"V3" is not a value of enum envoy\.config\.core\.v3\.ProxyProtocolConfig\.Version \(V1, V2\)/);
  assert.match(pp({ disallowed_versions: [7] }), /7 is not a value of enum/);
  const lf = (body: Record<string, unknown>): string => checkEnvoyJson(root, LISTENER_FILTER, body).join('\n');
  assert.match(lf({ name: 'x', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocl' } }), /no message .*ProxyProtocl in the loaded Envoy protos/);
  assert.match(lf({ name: 'x', typed_config: { rules: [] } }), /an Any needs "@type"/);
  assert.match(lf({ name: '', typed_config: { '@type': `type.googleapis.com/${PROXY_PROTOCOL}` } }), /\$\.name: must be at least 1 character/);
  assert.match(lf({ name: 'x', typed_config: { '@type': `type.googleapis.com/${PROXY_PROTOCOL}` }, config_discovery: {} }), /'config_discovery' and 'typed_config' are both set, but are one of 'config_type'/);
  assert.throws(() => toEnvoyMessage(root, PROXY_PROTOCOL, { rules: [{ tlv_typ: 208 }] }), /not a valid .*ProxyProtocol:\n {2}\$\.rules\[0\]\.tlv_typ: no field/);
});
