// SPDX-License-Identifier: Apache-2.0
// Which service hostnames a DNS question may mean, read as ztunnel's DNS
// proxy reads it: the name itself, the name with the pod's Kubernetes search
// domain taken off (a stub resolver with ndots:5 tries "api.example.com" as
// "api.example.com.<ns>.svc.cluster.local" first), and the short Kubernetes
// forms completed (<svc>, <svc>.<ns>, <svc>.<ns>.svc). Pure.

/** Lower case, no trailing dot. */
export function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** The search domains a pod in `namespace` gets from the kubelet. */
export function searchDomains(namespace: string, clusterDomain: string): string[] {
  return [`${namespace}.svc.${clusterDomain}`, `svc.${clusterDomain}`, clusterDomain];
}

function kubeForms(name: string, namespace: string, clusterDomain: string): string[] {
  const labels = name.split('.');
  if (labels.length === 1) return [`${name}.${namespace}.svc.${clusterDomain}`];
  if (labels.length === 2) return [`${name}.svc.${clusterDomain}`];
  if (labels.length === 3 && labels[2] === 'svc') return [`${name}.${clusterDomain}`];
  return [];
}

/** `a.b.c` → `*.b.c`, `*.c`: the wildcard hosts (ServiceEntry) that cover a name, nearest first. */
export function wildcardsOf(host: string): string[] {
  const labels = host.split('.');
  return labels.slice(1).map((_, i) => `*.${labels.slice(i + 1).join('.')}`);
}

/** Candidate hostnames for `qname` asked by a pod in `namespace`, most specific first, no repeats. */
export function candidateHosts(qname: string, namespace: string, clusterDomain: string): string[] {
  const name = normalize(qname);
  if (name === '') return [];
  const out = new Set<string>([name, ...kubeForms(name, namespace, clusterDomain)]);
  for (const domain of searchDomains(namespace, clusterDomain)) {
    if (!name.endsWith(`.${domain}`)) continue;
    const stripped = name.slice(0, -domain.length - 1);
    out.add(stripped);
    for (const f of kubeForms(stripped, namespace, clusterDomain)) out.add(f);
  }
  return [...out];
}
