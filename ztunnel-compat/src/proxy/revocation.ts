// SPDX-License-Identifier: Apache-2.0
// The CRL file as the HBONE client and server consult it (CRL_PATH), with
// ztunnel's metric of what it refuses: istio_crl_policy_rejections_total,
// by `reporter` (source: a server's chain the client refused; destination:
// a client's chain the server refused), at handshake and when a reload
// tears an open connection down, on the JavaScript path and (its own
// counts, `engine`) on the native engine, which checks its own handshakes.
import { Counter, type Registry } from 'prom-client';
import type { CrlFile } from '../identity/crl-file.ts';
import type { ChainOf, Reporter, Revocation } from './hbone/tls.ts';

export function crlRevocation(file: CrlFile, registry: Registry, engine?: () => Record<Reporter, number>): Revocation {
  const js: Record<Reporter, number> = { source: 0, destination: 0 };
  const rejections = new Counter({
    name: 'istio_crl_policy_rejections_total',
    help: 'Connections refused or closed because a CRL revokes a certificate of the peer chain',
    labelNames: ['reporter'] as const, registers: [registry],
    collect: () => {
      const native = engine?.() ?? { source: 0, destination: 0 };
      rejections.reset();
      for (const reporter of ['source', 'destination'] as const) rejections.inc({ reporter }, js[reporter] + native[reporter]);
    },
  });
  return {
    check: (chainOf: ChainOf, reporter: Reporter) => {
      let why: string | undefined;
      try {
        const set = file.current;
        // No CRLs: nothing to check, and no chain to build.
        const chain = set.size === 0 ? [] : chainOf();
        why = chain === undefined
          ? 'no chain of certificates that verify leads from it to a root this node trusts, so its revocation cannot be checked'
          : set.check(chain);
      } catch (err) {
        // Fail closed: a check that breaks refuses.
        why = `the CRL check failed: ${(err as Error).message}`;
      }
      if (why !== undefined) js[reporter]++;
      return why;
    },
    onChange: (fn) => file.onChange(() => { fn(); }),
  };
}
