// SPDX-License-Identifier: Apache-2.0
// The .proto files and codecs: messages survive a round trip in the decoded
// shape proto.ts documents, and the field numbers on the wire are istiod's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import protobuf from 'protobufjs';
import {
  ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, AppProtocol, AuthorizationAction, AuthorizationScope, codecs,
  createCertificate, deltaAggregatedResources, fromStruct, HealthPolicy, NetworkMode, packResource, root,
  ServiceVisibility, toStruct, TunnelProtocol, unpackResource, WorkloadType,
} from './proto.ts';

/** Top-level field numbers in wire order. */
function fieldNumbers(bytes: Uint8Array): number[] {
  const r = protobuf.Reader.create(bytes);
  const out: number[] = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    out.push(tag >>> 3);
    r.skipType(tag & 7);
  }
  return out;
}

const ip = (...octets: number[]): Buffer => Buffer.from(octets);

test('a Workload round-trips, and its late fields carry their high numbers', () => {
  const workload = {
    uid: 'Kubernetes//Pod/default/sleep-1',
    name: 'sleep-1',
    namespace: 'default',
    addresses: [ip(10, 0, 0, 7), Buffer.from('fd000000000000000000000000000007', 'hex')],
    hostname: 'sleep.example',
    network: 'net-a',
    tunnelProtocol: TunnelProtocol.HBONE,
    trustDomain: 'td.local',
    serviceAccount: 'sleep',
    waypoint: { address: { network: 'net-a', address: ip(10, 0, 0, 9) }, hboneMtlsPort: 15008 },
    networkGateway: { hostname: { namespace: 'istio-system', hostname: 'eastwest.example' }, hboneMtlsPort: 15008 },
    node: 'node-a',
    canonicalName: 'sleep',
    canonicalRevision: 'v1',
    workloadType: WorkloadType.POD,
    workloadName: 'sleep',
    nativeTunnel: true,
    applicationTunnel: { protocol: 1, port: 15088 },
    services: { 'default/sleep.default.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8080, appProtocol: AppProtocol.HTTP2 }] } },
    authorizationPolicies: ['default/allow-sleep'],
    status: 1,
    clusterId: 'Kubernetes',
    locality: { region: 'r', zone: 'z', subzone: 's' },
    networkMode: NetworkMode.HOST_NETWORK,
    extensions: [{ name: 'x', config: { type_url: 'type.googleapis.com/x.Y', value: ip(1, 2) } }],
    capacity: { value: 3 },
  };
  const bytes = codecs.Workload.encode(workload);
  assert.deepEqual(codecs.Workload.decode(bytes), workload);

  const onlyUid = codecs.Workload.encode({ uid: 'u' });
  assert.deepEqual([...onlyUid.subarray(0, 2)], [0xa2, 0x01], 'uid is field 20, length-delimited');
  assert.deepEqual([...codecs.Workload.encode({ capacity: { value: 2 } }).subarray(0, 2)], [0xda, 0x01], 'capacity is 27');
  assert.deepEqual(
    new Set(fieldNumbers(bytes)),
    new Set([20, 1, 2, 3, 21, 4, 5, 6, 7, 8, 19, 9, 10, 11, 12, 13, 14, 23, 22, 16, 17, 18, 24, 25, 26, 27]),
  );
});

test('absent fields decode as missing scalars, empty arrays and empty maps; unknown fields are skipped', () => {
  // uid (20) plus a field 99 varint that a newer istiod might send.
  const bytes = Buffer.concat([codecs.Workload.encode({ uid: 'u' }), Buffer.from([0x98, 0x06, 0x05])]);
  assert.deepEqual(codecs.Workload.decode(bytes), {
    uid: 'u', addresses: [], services: {}, authorizationPolicies: [], extensions: [],
  });
});

test('a Service round-trips, keeping an explicit zero prefix length apart from none', () => {
  const service = {
    name: 'svc',
    namespace: 'default',
    hostname: 'svc.default.svc.cluster.local',
    addresses: [{ network: '', address: ip(10, 96, 0, 1), length: 0 }, { address: ip(10, 96, 0, 2) }],
    ports: [{ servicePort: 80, targetPort: 8080 }],
    subjectAltNames: ['spiffe://td/ns/default/sa/svc'],
    waypoint: { hostname: { namespace: 'default', hostname: 'waypoint.default.svc.cluster.local' }, hboneMtlsPort: 15008 },
    loadBalancing: { routingPreference: [1, 2], mode: 2, healthPolicy: HealthPolicy.ALLOW_ALL },
    ipFamilies: 3,
    extensions: [],
    canonical: true,
    ingressUseWaypoint: true,
    weightedWaypoints: [{ destination: { address: { address: ip(10, 0, 0, 1) }, hboneMtlsPort: 15008 }, weight: 10 }],
    visibility: ServiceVisibility.NAMESPACE,
  };
  const decoded = codecs.Service.decode(codecs.Service.encode(service));
  // `network: ''` is proto3's default, so it is not on the wire.
  assert.deepEqual(decoded, { ...service, addresses: [{ address: ip(10, 96, 0, 1), length: 0 }, { address: ip(10, 96, 0, 2) }] });
  assert.deepEqual(fieldNumbers(codecs.Service.encode({ canonical: true, weightedWaypoints: [{ weight: 1 }], visibility: 1 })), [11, 13, 14]);

  const address = codecs.Address.decode(codecs.Address.encode({ service }));
  assert.equal(address.workload, undefined);
  assert.equal(address.service?.hostname, service.hostname);
});

test('an Authorization round-trips with its nested rules and match kinds', () => {
  const policy = {
    name: 'allow-sleep',
    namespace: 'default',
    scope: AuthorizationScope.WORKLOAD_SELECTOR,
    action: AuthorizationAction.DENY,
    rules: [{
      clauses: [{
        matches: [{
          namespaces: [{ exact: 'default' }],
          notNamespaces: [{ prefix: 'kube-' }],
          serviceAccounts: [{ namespace: 'default', serviceAccount: 'sleep' }],
          notServiceAccounts: [],
          principals: [{ suffix: '/sa/sleep' }],
          notPrincipals: [{ presence: {} }],
          sourceIps: [{ address: ip(10, 0, 0, 0), length: 8 }],
          notSourceIps: [],
          destinationIps: [],
          notDestinationIps: [{ address: ip(192, 168, 0, 1), length: 32 }],
          destinationPorts: [80, 443],
          notDestinationPorts: [],
          extensions: [],
        }],
      }],
    }],
    dryRun: true,
    extensions: [],
  };
  const bytes = codecs.Authorization.encode(policy);
  assert.deepEqual(codecs.Authorization.decode(bytes), policy);
  assert.deepEqual(fieldNumbers(bytes), [1, 2, 3, 4, 5, 6]);
  // Clause.matches is field 2 (1 was never used); Match.service_accounts is 11.
  const clause = root.lookupType('istio.security.Clause').encode({ matches: [{ serviceAccounts: [{ namespace: 'n' }] }] }).finish();
  assert.deepEqual([...clause], [0x12, 0x05, 0x5a, 0x03, 0x0a, 0x01, 0x6e]);
});

test('a DeltaDiscoveryRequest round-trips with Node, Struct metadata, versions and a NACK', () => {
  const metadata = { NAME: 'ztunnel-abc', NAMESPACE: 'istio-system', ENABLE_HBONE: 'true', NESTED: { list: [1, null, true] } };
  const request = {
    node: { id: 'ztunnel~10.0.0.1~ztunnel-abc.istio-system~istio-system.svc.cluster.local', metadata: toStruct(metadata) },
    typeUrl: ADDRESS_TYPE_URL,
    resourceNamesSubscribe: ['a'],
    resourceNamesUnsubscribe: ['*'],
    initialResourceVersions: { 'Kubernetes//Pod/default/a': '7' },
    responseNonce: 'n-1',
    errorDetail: { message: 'a: bad address length 5', details: [] },
  };
  const bytes = codecs.DeltaDiscoveryRequest.encode(request);
  const decoded = codecs.DeltaDiscoveryRequest.decode(bytes);
  assert.deepEqual(decoded, request);
  assert.deepEqual(fromStruct(decoded.node.metadata), metadata);
  assert.deepEqual(fieldNumbers(bytes), [1, 2, 3, 4, 5, 6, 7]);
  // Node: id 1, metadata 3; cluster (2) stays unset, as ztunnel leaves it.
  assert.deepEqual(fieldNumbers(codecs.Node.encode(request.node)), [1, 3]);
});

test('a DeltaDiscoveryResponse puts nonce at 5, removals at 6, and Resource.name at 3', () => {
  const any = packResource(ADDRESS_TYPE_URL, { workload: { uid: 'u' } });
  const response = {
    systemVersionInfo: '9', typeUrl: ADDRESS_TYPE_URL, nonce: 'abc', removedResources: ['gone'],
    resources: [{ name: 'u', aliases: ['/10.0.0.1'], version: '3', resource: any }],
  };
  const bytes = codecs.DeltaDiscoveryResponse.encode(response);
  assert.deepEqual(codecs.DeltaDiscoveryResponse.decode(bytes), response);
  assert.deepEqual(fieldNumbers(bytes), [1, 2, 4, 5, 6]);
  assert.deepEqual([...codecs.DeltaDiscoveryResponse.encode({ nonce: 'x' })], [0x2a, 0x01, 0x78]);
  assert.deepEqual([...codecs.Resource.encode({ name: 'n' })], [0x1a, 0x01, 0x6e]);
  assert.deepEqual(fieldNumbers(codecs.Resource.encode(response.resources[0] ?? {})), [1, 2, 3, 4]);
});

test('an IstioCertificateRequest round-trips: csr 1, validity_duration 3, metadata 4', () => {
  const request = {
    csr: '-----BEGIN CERTIFICATE REQUEST-----\n...',
    validityDuration: 86_400,
    metadata: toStruct({ ImpersonatedIdentity: 'spiffe://cluster.local/ns/default/sa/sleep' }),
  };
  const bytes = codecs.IstioCertificateRequest.encode(request);
  assert.deepEqual(codecs.IstioCertificateRequest.decode(bytes), request);
  assert.deepEqual(fieldNumbers(bytes), [1, 3, 4]);
  assert.deepEqual([...codecs.IstioCertificateRequest.encode({ validityDuration: 1 })], [0x18, 0x01]);
  const response = { certChain: ['leaf', 'root'] };
  assert.deepEqual(codecs.IstioCertificateResponse.decode(codecs.IstioCertificateResponse.encode(response)), response);
});

test('Any-wrapped resources are checked for their type URL and decodability', () => {
  const any = packResource(AUTHORIZATION_TYPE_URL, { name: 'p', namespace: 'ns' });
  assert.equal(any.type_url, 'type.googleapis.com/istio.security.Authorization');
  assert.equal(unpackResource(AUTHORIZATION_TYPE_URL, any).name, 'p');
  assert.throws(() => unpackResource(ADDRESS_TYPE_URL, any), /expected type\.googleapis\.com\/istio\.workload\.Address, got .*Authorization/);
  assert.throws(() => unpackResource(ADDRESS_TYPE_URL, { type_url: ADDRESS_TYPE_URL, value: Buffer.from([0x0a, 0x7f]) }));
});

test('the gRPC method definitions match the services in the .proto files', () => {
  const ads = root.lookupService('envoy.service.discovery.v3.AggregatedDiscoveryService').methods.DeltaAggregatedResources;
  assert.equal(deltaAggregatedResources.path, '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources');
  assert.equal(ads?.requestStream, true);
  assert.equal(ads.responseStream, true);
  assert.equal(deltaAggregatedResources.requestStream && deltaAggregatedResources.responseStream, true);

  const ca = root.lookupService('istio.v1.auth.IstioCertificateService').methods.CreateCertificate;
  assert.equal(createCertificate.path, '/istio.v1.auth.IstioCertificateService/CreateCertificate');
  assert.equal(ca?.requestType, 'IstioCertificateRequest');
  assert.equal(createCertificate.requestStream || createCertificate.responseStream, false);

  const req = deltaAggregatedResources.requestSerialize({ typeUrl: ADDRESS_TYPE_URL });
  assert.equal(deltaAggregatedResources.requestDeserialize(req).typeUrl, ADDRESS_TYPE_URL);
});
