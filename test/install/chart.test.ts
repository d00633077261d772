// SPDX-License-Identifier: Apache-2.0
// The Skein Helm chart (charts/skein) rendered by the real helm: the DaemonSet
// istio-cni, istiod and Skein itself expect, the ztunnel-compatible naming,
// the schema's required values, and the env fed through Skein's own config
// parser so chart and daemon cannot drift apart.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../../ztunnel-compat/src/config.ts';
import { chartDir, container, helm, istioDir, type K8sObject, only, parseManifests, podSpec } from './helm.ts';

const image = 'registry.example.com/skein';

async function render(args: readonly string[] = [], namespace = 'istio-system'): Promise<K8sObject[]> {
  const r = await helm(['template', 'skein', chartDir, '-n', namespace, '--set', `image.repository=${image}`, ...args]);
  assert.equal(r.code, 0, r.stderr);
  return parseManifests(r.stdout);
}

async function daemonSet(args: readonly string[] = []): Promise<K8sObject> {
  return only(await render(args), 'DaemonSet');
}

/** The container's env as name → value, downward API entries as `fieldRef:<path>`. */
function envOf(ds: K8sObject): Map<string, string> {
  const env = new Map<string, string>();
  for (const e of container(ds, 'istio-proxy').env ?? []) {
    assert.ok(!env.has(e.name), `${e.name} set twice`);
    const ref = e.valueFrom?.fieldRef?.fieldPath;
    env.set(e.name, ref === undefined ? (e.value ?? '') : `fieldRef:${ref}`);
  }
  return env;
}

const chartAppVersion = (parseYaml(fs.readFileSync(path.join(chartDir, 'Chart.yaml'), 'utf8')) as { appVersion: string }).appVersion;

describe('the Skein chart', () => {
  it('renders one ServiceAccount and one DaemonSet running `proxy ztunnel` in container istio-proxy', async () => {
    const objs = await render();
    assert.deepEqual(objs.map((o) => o.kind).sort(), ['DaemonSet', 'ServiceAccount']);
    const ds = only(objs, 'DaemonSet');
    const sa = only(objs, 'ServiceAccount');
    assert.equal(ds.metadata.name, 'skein');
    assert.equal(ds.metadata.namespace, 'istio-system');
    assert.equal(podSpec(ds).serviceAccountName, sa.metadata.name);
    const c = container(ds, 'istio-proxy');
    assert.deepEqual(c.args, ['proxy', 'ztunnel']);
    assert.equal(c.image, `${image}:${chartAppVersion}`);
    assert.equal(c.imagePullPolicy, 'IfNotPresent');
  });

  it('takes the image tag and pull policy from values', async () => {
    const c = container(await daemonSet(['--set', 'image.tag=dev-1', '--set', 'image.pullPolicy=Always']), 'istio-proxy');
    assert.equal(c.image, `${image}:dev-1`);
    assert.equal(c.imagePullPolicy, 'Always');
  });

  it('mounts the istio-token for audience istio-ca, the root cert, the ZDS directory, bpffs and the host cgroup tree', async () => {
    const ds = await daemonSet();
    const volumes = new Map((podSpec(ds).volumes ?? []).map((v) => [v.name, v]));
    const mounts = new Map((container(ds, 'istio-proxy').volumeMounts ?? []).map((m) => [m.name, m]));
    for (const name of volumes.keys()) assert.ok(mounts.has(name), `volume ${name} is mounted`);

    const token = volumes.get('istio-token')?.projected?.sources[0]?.serviceAccountToken;
    assert.deepEqual(token, { path: 'istio-token', audience: 'istio-ca', expirationSeconds: 43200 });
    assert.equal(mounts.get('istio-token')?.mountPath, '/var/run/secrets/tokens');
    assert.equal(volumes.get('istiod-ca-cert')?.configMap?.name, 'istio-ca-root-cert');
    assert.equal(mounts.get('istiod-ca-cert')?.mountPath, '/var/run/secrets/istio');

    const hostPaths = new Map([...volumes.values()].flatMap((v) => (v.hostPath === undefined ? [] : [[v.hostPath.path, v.name] as const])));
    assert.deepEqual([...hostPaths.keys()].sort(), ['/sys/fs/bpf', '/sys/fs/cgroup', '/var/run/ztunnel']);
    assert.equal(mounts.get(hostPaths.get('/var/run/ztunnel') ?? '')?.mountPath, '/var/run/ztunnel');
    assert.equal(mounts.get(hostPaths.get('/sys/fs/bpf') ?? '')?.mountPath, '/sys/fs/bpf');
    const cgroup = mounts.get(hostPaths.get('/sys/fs/cgroup') ?? '');
    assert.equal(cgroup?.readOnly, true);
    assert.notEqual(cgroup.mountPath, '/sys/fs/cgroup', 'the container keeps its own cgroup mount');
    // A read-only root file system needs somewhere writable.
    assert.ok(volumes.get('tmp')?.emptyDir !== undefined);
    assert.equal(mounts.get('tmp')?.mountPath, '/tmp');
  });

  it('sets ztunnel\'s environment: istiod addresses, cluster, network, log level, and the pod facts by downward API', async () => {
    const env = envOf(await daemonSet());
    assert.equal(env.get('CA_ADDRESS'), 'istiod.istio-system.svc:15012');
    assert.equal(env.get('XDS_ADDRESS'), 'istiod.istio-system.svc:15012');
    assert.equal(env.get('CLUSTER_ID'), 'Kubernetes');
    assert.equal(env.get('ISTIO_META_CLUSTER_ID'), 'Kubernetes');
    assert.equal(env.get('NETWORK'), '');
    assert.equal(env.get('RUST_LOG'), 'info');
    assert.equal(env.get('SKEIN_KERNEL_FASTPATH'), 'auto');
    // The fast paths attach to the host's cgroup tree and pin where the bpffs mount is.
    assert.equal(env.get('SKEIN_CGROUP_PATH'), '/host/sys/fs/cgroup');
    assert.equal(env.get('SKEIN_BPFFS_DIR'), '/sys/fs/bpf/skein');
    assert.equal(env.get('NODE_NAME'), 'fieldRef:spec.nodeName');
    assert.equal(env.get('POD_NAME'), 'fieldRef:metadata.name');
    assert.equal(env.get('POD_NAMESPACE'), 'fieldRef:metadata.namespace');
    assert.equal(env.get('INSTANCE_IP'), 'fieldRef:status.podIP');
    assert.equal(env.get('SERVICE_ACCOUNT'), 'fieldRef:spec.serviceAccountName');
    assert.equal(env.has('LOG_FORMAT'), false);
  });

  it('maps ztunnel chart values onto the same variables', async () => {
    const env = envOf(await daemonSet([
      '--set', 'multiCluster.clusterName=east',
      '--set', 'global.network=net-g',
      '--set', 'logLevel=debug',
      '--set', 'logAsJson=true',
      '--set', 'revision=canary',
      '--set', 'istioNamespace=istio-ops',
      '--set', 'meshConfig.defaultConfig.proxyMetadata.ISTIO_META_DNS_CAPTURE=true',
      '--set', 'env.SECRET_TTL=12h',
    ]));
    assert.equal(env.get('CLUSTER_ID'), 'east');
    assert.equal(env.get('ISTIO_META_CLUSTER_ID'), 'east');
    assert.equal(env.get('NETWORK'), 'net-g');
    assert.equal(env.get('RUST_LOG'), 'debug');
    assert.equal(env.get('LOG_FORMAT'), 'json');
    assert.equal(env.get('XDS_ADDRESS'), 'istiod-canary.istio-ops.svc:15012');
    assert.equal(env.get('CA_ADDRESS'), 'istiod-canary.istio-ops.svc:15012');
    assert.equal(env.get('ISTIO_META_DNS_CAPTURE'), 'true');
    assert.equal(env.get('SECRET_TTL'), '12h');

    const own = envOf(await daemonSet(['--set', 'global.network=net-g', '--set', 'network=net-own', '--set', 'xdsAddress=xds.example:15012', '--set', 'caAddress=https://ca.example:15012']));
    assert.equal(own.get('NETWORK'), 'net-own', 'network wins over global.network');
    assert.equal(own.get('XDS_ADDRESS'), 'xds.example:15012');
    assert.equal(own.get('CA_ADDRESS'), 'https://ca.example:15012');
  });

  it('gives env that Skein\'s own config parser accepts, with token and root cert paths on the mounts', async () => {
    const ds = await daemonSet(['--set', 'multiCluster.clusterName=east', '--set', 'network=n1', '--set', 'kernelFastpath=off', '--set', 'logLevel=warn']);
    // What the kubelet fills in for the downward API entries.
    const downward: Record<string, string> = {
      'metadata.name': 'skein-abcde', 'metadata.namespace': 'istio-system', 'spec.nodeName': 'node-1',
      'status.podIP': '10.0.0.7', 'spec.serviceAccountName': 'skein',
    };
    const env: Record<string, string> = { KUBERNETES_SERVICE_HOST: '10.96.0.1' };
    for (const [k, v] of envOf(ds)) env[k] = v.startsWith('fieldRef:') ? (downward[v.slice(9)] ?? assert.fail(`unexpected ${v}`)) : v;
    const config = parseConfig(env);
    assert.equal(config.xdsAddress, 'https://istiod.istio-system.svc:15012');
    assert.equal(config.caAddress, 'https://istiod.istio-system.svc:15012');
    assert.equal(config.localCa, false);
    assert.equal(config.clusterId, 'east');
    assert.equal(config.network, 'n1');
    assert.equal(config.nodeName, 'node-1');
    assert.equal(config.instanceIp, '10.0.0.7');
    assert.equal(config.serviceAccount, 'skein');
    assert.equal(config.kernelFastpath, 'off');
    assert.equal(config.logLevel, 'warn');
    assert.equal(config.proxyMode, 'shared');
    // The daemon's default paths are relative to its working directory, /
    // (the image's WORKDIR, as ztunnel's); they must land on the mounts.
    const mounts = new Map((container(ds, 'istio-proxy').volumeMounts ?? []).map((m) => [m.name, m.mountPath]));
    assert.equal(config.authToken.kind, 'file');
    assert.equal(path.resolve('/', config.authToken.path), `${mounts.get('istio-token') ?? ''}/istio-token`);
    assert.equal(config.xdsRootCa.kind, 'file');
    assert.equal(path.resolve('/', config.xdsRootCa.path), `${mounts.get('istiod-ca-cert') ?? ''}/root-cert.pem`);
    assert.equal(path.dirname(config.inpodUds), mounts.get('cni-ztunnel-sock-dir'));
  });

  it('with peerCaCrl.enabled mounts the istio-ca-crl ConfigMap and sets CRL_PATH as Istio\'s ztunnel chart does', async () => {
    assert.equal(envOf(await daemonSet()).has('CRL_PATH'), false, 'off by default');
    const crlOf = (ds: K8sObject): { path: string | undefined; dir: string | undefined; volume: unknown } => {
      const c = container(ds, 'istio-proxy');
      const volume = (podSpec(ds).volumes ?? []).find((v) => v.configMap?.name === 'istio-ca-crl');
      return {
        path: (c.env ?? []).find((e) => e.name === 'CRL_PATH')?.value,
        dir: (c.volumeMounts ?? []).find((m) => m.name === volume?.name)?.mountPath,
        volume: volume?.configMap,
      };
    };
    const r = await helm(['template', 'ztunnel', `${istioDir}/ztunnel-chart`, '-n', 'istio-system', '--set', 'peerCaCrl.enabled=true']);
    assert.equal(r.code, 0, r.stderr);
    const istio = crlOf(only(parseManifests(r.stdout), 'DaemonSet', 'ztunnel'));
    assert.ok(istio.path !== undefined && istio.dir !== undefined, 'Istio\'s chart mounts a CRL');
    assert.deepEqual(crlOf(await daemonSet(['--set', 'peerCaCrl.enabled=true'])), istio);
  });

  it('passes the CPU facts the engine\'s threads are sized from as Istio\'s ztunnel chart does, for the same resources', async () => {
    const cpuEnv = (ds: K8sObject): unknown[] => (container(ds, 'istio-proxy').env ?? [])
      .filter((e) => e.valueFrom?.resourceFieldRef !== undefined).sort((a, b) => a.name.localeCompare(b.name));
    for (const resources of [[], ['--set', 'resources.limits.cpu=4', '--set', 'resources.requests.cpu=2']]) {
      const r = await helm(['template', 'ztunnel', `${istioDir}/ztunnel-chart`, '-n', 'istio-system', ...resources, ...(resources.length === 0 ? ['--set', 'resources.requests.cpu=200m'] : [])]);
      assert.equal(r.code, 0, r.stderr);
      const istio = cpuEnv(only(parseManifests(r.stdout), 'DaemonSet', 'ztunnel'));
      assert.ok(istio.length > 0, 'Istio\'s chart passes some');
      assert.deepEqual(cpuEnv(await daemonSet(resources)), istio);
    }
  });

  it('runs as uid 0 with ALL dropped and only the needed capabilities added', async () => {
    const sc = container(await daemonSet(), 'istio-proxy').securityContext;
    assert.equal(sc?.runAsUser, 0);
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.deepEqual(sc.capabilities?.drop, ['ALL']);
    assert.deepEqual([...(sc.capabilities.add ?? [])].sort(), ['BPF', 'NET_ADMIN', 'NET_RAW', 'PERFMON', 'SYS_ADMIN']);
  });

  it('mounts bpffs on the host where none is, in a privileged init container; the daemon itself stays unprivileged', async () => {
    const ds = await daemonSet();
    const inits = podSpec(ds).initContainers ?? [];
    assert.deepEqual(inits.map((c) => c.name), ['mount-bpffs']);
    const init = inits[0];
    assert.equal(init?.image, `${image}:${chartAppVersion}`);
    // Kubernetes admits Bidirectional propagation only for privileged containers; without it the host never sees the mount.
    assert.equal(init.securityContext?.privileged, true);
    assert.deepEqual(init.volumeMounts, [{ name: 'bpffs', mountPath: '/sys/fs/bpf', mountPropagation: 'Bidirectional' }]);
    // BPF_FS_MAGIC is 0xcafe4a11 (linux/magic.h); the mount is the one the daemon would make.
    assert.match(init.command?.join(' ') ?? '', /stat -f -c %t \/sys\/fs\/bpf\)" = cafe4a11 \] \|\| mount -t bpf -o nosuid,nodev,noexec,mode=0700 bpffs \/sys\/fs\/bpf/);
    const c = container(ds, 'istio-proxy');
    assert.equal(c.securityContext?.privileged, false);
    assert.equal(c.volumeMounts?.find((m) => m.name === 'bpffs')?.mountPropagation, 'HostToContainer');
  });

  it('with kernelFastpath=off drops the BPF capabilities and the bpffs and cgroup mounts', async () => {
    const ds = await daemonSet(['--set', 'kernelFastpath=off']);
    const c = container(ds, 'istio-proxy');
    assert.deepEqual([...(c.securityContext?.capabilities?.add ?? [])].sort(), ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN']);
    const hostPaths = (podSpec(ds).volumes ?? []).flatMap((v) => (v.hostPath === undefined ? [] : [v.hostPath.path]));
    assert.deepEqual(hostPaths, ['/var/run/ztunnel']);
    assert.equal(podSpec(ds).initContainers, undefined, 'no privileged bpffs mount');
    assert.equal(envOf(ds).get('SKEIN_KERNEL_FASTPATH'), 'off');
    assert.equal(envOf(ds).has('SKEIN_CGROUP_PATH'), false);
  });

  it('is ready on GET :15021/healthz/ready, scraped on :15020, node-critical, on every node, replaced surge-first', async () => {
    const ds = await daemonSet();
    const c = container(ds, 'istio-proxy');
    assert.deepEqual(c.readinessProbe?.httpGet, { path: '/healthz/ready', port: 15021 });
    assert.deepEqual(c.ports?.map((p) => p.containerPort).sort(), [15020, 15021]);
    const annotations = ds.spec?.template?.metadata?.annotations ?? {};
    assert.equal(annotations['prometheus.io/scrape'], 'true');
    assert.equal(annotations['prometheus.io/port'], '15020');
    assert.equal(annotations['prometheus.io/path'], '/stats/prometheus');
    assert.deepEqual(ds.spec?.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    const pod = podSpec(ds);
    assert.equal(pod.priorityClassName, 'system-node-critical');
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    // istio-cni must never capture the node proxy itself.
    assert.equal(ds.spec.template?.metadata?.labels?.['istio.io/dataplane-mode'], 'none');
  });

  it('by default is named skein with label app: skein, selected by that label', async () => {
    const objs = await render();
    const ds = only(objs, 'DaemonSet');
    assert.equal(ds.spec?.template?.metadata?.labels?.app, 'skein');
    assert.deepEqual(ds.spec.selector?.matchLabels, { app: 'skein' });
    assert.equal(only(objs, 'ServiceAccount').metadata.name, 'skein');
  });

  it('with compatName=true is DaemonSet and ServiceAccount ztunnel with label app: ztunnel, as istio-cni and istioctl expect', async () => {
    const objs = await render(['--set', 'compatName=true']);
    const ds = only(objs, 'DaemonSet');
    assert.equal(ds.metadata.name, 'ztunnel');
    assert.equal(ds.metadata.namespace, 'istio-system');
    assert.equal(ds.metadata.labels?.app, 'ztunnel');
    assert.equal(ds.spec?.template?.metadata?.labels?.app, 'ztunnel');
    assert.deepEqual(ds.spec.selector?.matchLabels, { app: 'ztunnel' });
    assert.equal(only(objs, 'ServiceAccount').metadata.name, 'ztunnel');
    assert.equal(podSpec(ds).serviceAccountName, 'ztunnel');
  });

  it('honours resourceName for another name', async () => {
    const ds = await daemonSet(['--set', 'resourceName=skein-blue']);
    assert.equal(ds.metadata.name, 'skein-blue');
    assert.equal(podSpec(ds).serviceAccountName, 'skein-blue');
  });
});

describe('the Skein chart refuses bad values, naming them', () => {
  const fails = async (args: readonly string[], ...mentions: string[]): Promise<void> => {
    const r = await helm(['template', 'skein', chartDir, ...args]);
    assert.notEqual(r.code, 0, `helm template ${args.join(' ')} should fail`);
    assert.equal(r.stdout, '');
    for (const m of mentions) assert.ok(r.stderr.includes(m), `stderr names ${m}: ${r.stderr}`);
  };

  it('without image.repository (the default)', async () => {
    await fails([], '/image/repository');
  });

  it('with image.repository empty or unset', async () => {
    await fails(['--set', 'image.repository='], '/image/repository');
    await fails(['--set', 'image.repository=null'], '/image', 'repository');
  });

  it('with kernelFastpath other than auto or off', async () => {
    await fails(['--set', `image.repository=${image}`, '--set', 'kernelFastpath=on'], '/kernelFastpath');
  });

  it('with a misspelt top-level value instead of ignoring it', async () => {
    await fails(['--set', `image.repository=${image}`, '--set', 'kernelFastPath=off'], 'kernelFastPath');
  });
});

describe('helm lint', () => {
  it('passes with the chart-testing values and --strict', async () => {
    const r = await helm(['lint', '--strict', chartDir, '-f', path.join(chartDir, 'ci/test-values.yaml')]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it('fails without the required image.repository', async () => {
    const r = await helm(['lint', chartDir]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /image\/repository/);
  });
});
