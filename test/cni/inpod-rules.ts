// SPDX-License-Identifier: Apache-2.0
// istio-cni's in-pod redirection, reproduced rule for rule (istio
// cni/pkg/iptables/iptables.go; reference §4.4), as iptables-restore input
// plus the policy routing that sends marked replies back to the local stack.
import { inNetns } from '../lab/sh.ts';

export const INPOD_MARK = 0x539;
export const INPOD_TPROXY_MARK = 0x111;
export const INPOD_MASK = 0xfff;
export const ROUTE_TABLE_INBOUND = 100;
export const PORTS = { outbound: 15001, inbound: 15006, hbone: 15008, dns: 15053 } as const;
export const PROBE_SNAT = { 4: '169.254.7.127', 6: 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff' } as const;

export interface InpodOptions {
  /** DNS capture (default on, as in current ambient): UDP/TCP 53 → 15053. */
  dnsCapture?: boolean;
  /** `ambient.istio.io/bypass-inbound-capture=true`: no 15006 redirect, no probe rule. */
  bypassInboundCapture?: boolean;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * The iptables-restore text for one family, written the way iptables-save
 * prints it back (explicit /32, `-m tcp`), so a comparison can be exact.
 */
export function inpodRules(family: 4 | 6, o: InpodOptions = {}): string {
  const dns = o.dnsCapture ?? true;
  const lo = family === 4 ? '127.0.0.1/32' : '::1/128';
  const probe = `${PROBE_SNAT[family]}/${family === 4 ? 32 : 128}`;
  const mark = `${hex(INPOD_MARK)}/${hex(INPOD_MASK)}`;
  const tproxy = `${hex(INPOD_TPROXY_MARK)}/${hex(INPOD_MASK)}`;
  const chains = [':ISTIO_PRERT - [0:0]', ':ISTIO_OUTPUT - [0:0]'];
  const lines = [
    '*mangle',
    ...chains,
    '-A PREROUTING -j ISTIO_PRERT',
    '-A OUTPUT -j ISTIO_OUTPUT',
    `-A ISTIO_PRERT -m mark --mark ${mark} -j CONNMARK --set-xmark ${tproxy}`,
    `-A ISTIO_OUTPUT -m connmark --mark ${tproxy} -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff`,
    'COMMIT',
    '*nat',
    ...chains,
    '-A OUTPUT -j ISTIO_OUTPUT',
    '-A PREROUTING -j ISTIO_PRERT',
    ...(o.bypassInboundCapture === true ? [] : [
      `-A ISTIO_PRERT -s ${probe} -p tcp -m tcp -j ACCEPT`,
    ]),
    `-A ISTIO_OUTPUT -d ${probe} -p tcp -m tcp -j ACCEPT`,
    ...(o.bypassInboundCapture === true ? [] : [
      `-A ISTIO_PRERT ! -d ${lo} -p tcp -m tcp ! --dport ${PORTS.hbone} -m mark ! --mark ${mark} -j REDIRECT --to-ports ${PORTS.inbound}`,
    ]),
    ...(dns ? [
      `-A ISTIO_OUTPUT ! -o lo -p udp -m mark ! --mark ${mark} -m udp --dport 53 -j REDIRECT --to-ports ${PORTS.dns}`,
      `-A ISTIO_OUTPUT ! -d ${lo} -p tcp -m tcp --dport 53 -m mark ! --mark ${mark} -j REDIRECT --to-ports ${PORTS.dns}`,
    ] : []),
    `-A ISTIO_OUTPUT -p tcp -m mark --mark ${tproxy} -j ACCEPT`,
    `-A ISTIO_OUTPUT ! -d ${lo} -o lo -j ACCEPT`,
    `-A ISTIO_OUTPUT ! -d ${lo} -p tcp -m mark ! --mark ${mark} -j REDIRECT --to-ports ${PORTS.outbound}`,
    'COMMIT',
    ...(dns ? [
      '*raw',
      ...chains,
      '-A PREROUTING -j ISTIO_PRERT',
      '-A OUTPUT -j ISTIO_OUTPUT',
      `-A ISTIO_OUTPUT -p udp -m mark --mark ${mark} -m udp --dport 53 -j CT --zone 1`,
      `-A ISTIO_PRERT -p udp -m mark ! --mark ${mark} -m udp --sport 53 -j CT --zone 1`,
      'COMMIT',
    ] : []),
  ];
  return `${lines.join('\n')}\n`;
}

/** `ip` commands for the inbound policy routing (table 100, fwmark rule). */
export function inpodRouting(family: 4 | 6): string[][] {
  const f = family === 4 ? '-4' : '-6';
  return [
    [f, 'route', 'add', 'local', family === 4 ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', String(ROUTE_TABLE_INBOUND)],
    [f, 'rule', 'add', 'fwmark', `${hex(INPOD_TPROXY_MARK)}/${hex(INPOD_MASK)}`, 'lookup', String(ROUTE_TABLE_INBOUND), 'priority', '32764'],
  ];
}

/**
 * Installs the rules in a pod's netns with the real iptables tools. Like
 * istio-cni, it first removes any earlier set, so a re-add is idempotent.
 */
export function installInpodRules(netns: string, o: InpodOptions = {}): void {
  removeInpodRules(netns);
  for (const family of [4, 6] as const) {
    inNetns(netns, family === 4 ? 'iptables-restore' : 'ip6tables-restore', ['--noflush'], inpodRules(family, o));
    for (const args of inpodRouting(family)) inNetns(netns, 'ip', args);
  }
}

/** Removes them again (pod leaves the mesh); the pod keeps its network. */
export function removeInpodRules(netns: string): void {
  for (const family of [4, 6] as const) {
    const ipt = family === 4 ? 'iptables' : 'ip6tables';
    for (const table of ['mangle', 'nat', 'raw']) {
      for (const [hook, chain] of [['PREROUTING', 'ISTIO_PRERT'], ['OUTPUT', 'ISTIO_OUTPUT']] as const) {
        try { inNetns(netns, ipt, ['-t', table, '-D', hook, '-j', chain]); } catch { /* not there (e.g. raw without DNS) */ }
        try { inNetns(netns, ipt, ['-t', table, '-F', chain]); inNetns(netns, ipt, ['-t', table, '-X', chain]); } catch { /* as above */ }
      }
    }
    const f = family === 4 ? '-4' : '-6';
    try { inNetns(netns, 'ip', [f, 'rule', 'del', 'fwmark', `${hex(INPOD_TPROXY_MARK)}/${hex(INPOD_MASK)}`, 'lookup', String(ROUTE_TABLE_INBOUND)]); } catch { /* gone */ }
    try { inNetns(netns, 'ip', [f, 'route', 'flush', 'table', String(ROUTE_TABLE_INBOUND)]); } catch { /* gone */ }
  }
}
