// SPDX-License-Identifier: Apache-2.0
// The TypeScript layouts against the C header they mirror: a C program built
// from bpf/include/skein_maps.h prints every size, offset and constant, and
// each must equal accel/layout.ts's. Then the encoders, byte by byte.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AUTHZ, decodeApproval, decodeEvent, EVENT, INPOD_MARK, LAYOUT, LayoutError, MAX_AUTHZ, MAX_ENDPOINTS, MAX_LOCAL, MAX_PODS, MAX_SERVICES, serviceKey, serviceValue, STAT, SVC_PASSTHROUGH } from './layout.ts';

const INCLUDE = fileURLToPath(new URL('../../../bpf/include', import.meta.url));

function cLayout(): Record<string, number> {
  const lines: string[] = [];
  for (const [struct, fields] of Object.entries(LAYOUT)) {
    for (const field of Object.keys(fields)) {
      lines.push(field === 'size'
        ? `  printf("\\"${struct}.size\\": %zu,\\n", sizeof(struct ${struct}));`
        : `  printf("\\"${struct}.${field}\\": %zu,\\n", offsetof(struct ${struct}, ${field}));`);
    }
  }
  const consts = {
    SKEIN_INPOD_MARK: 'mark', SKEIN_MAX_PODS: 'maxPods', SKEIN_MAX_SERVICES: 'maxServices', SKEIN_MAX_ENDPOINTS: 'maxEndpoints',
    SKEIN_SVC_PASSTHROUGH: 'passthrough', SKEIN_EV_OPEN: 'evOpen', SKEIN_EV_CLOSE: 'evClose', SKEIN_EV_FAIL: 'evFail',
    SKEIN_STAT_LB_REWRITE: 'statLb', SKEIN_STAT_PASSTHROUGH: 'statPass', SKEIN_STAT_FLOWS_FULL: 'statFull', SKEIN_STAT_EVENTS_LOST: 'statLost',
    SKEIN_STAT_NO_ENDPOINT: 'statNoEp', SKEIN_STAT_SAME_NODE: 'statSame', SKEIN_STAT_DENIED: 'statDenied', SKEIN_STAT_ADMITTED: 'statAdmitted',
    SKEIN_STAT_NO_LISTENER: 'statNoListener', SKEIN_STAT_OTHER_FLOW: 'statOtherFlow', SKEIN_STAT_MAX: 'statMax',
    SKEIN_MAX_LOCAL: 'maxLocal', SKEIN_MAX_AUTHZ: 'maxAuthz', SKEIN_AUTHZ_ALLOW: 'allow', SKEIN_AUTHZ_DENY: 'deny',
  };
  for (const [c, name] of Object.entries(consts)) lines.push(`  printf("\\"${name}\\": %lld,\\n", (long long)${c});`);
  const src = `#include <stddef.h>\n#include <stdio.h>\n#include "skein_maps.h"\nint main(void) {\n  printf("{\\n");\n${lines.join('\n')}\n  printf("\\"end\\": 0}\\n");\n  return 0;\n}\n`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-layout-'));
  try {
    fs.writeFileSync(path.join(dir, 'layout.c'), src);
    execFileSync('cc', ['-Wall', '-Werror', `-I${INCLUDE}`, '-o', path.join(dir, 'layout'), path.join(dir, 'layout.c')]);
    return JSON.parse(execFileSync(path.join(dir, 'layout'), { encoding: 'utf8' })) as Record<string, number>;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('every size, offset and constant in layout.ts is the C header\'s', () => {
  const c = cLayout();
  for (const [struct, fields] of Object.entries(LAYOUT)) {
    for (const [field, value] of Object.entries(fields)) assert.equal(value, c[`${struct}.${field}`], `${struct}.${field}`);
  }
  assert.deepEqual(
    [c.mark, c.maxPods, c.maxServices, c.maxEndpoints, c.passthrough, c.evOpen, c.evClose, c.evFail],
    [INPOD_MARK, MAX_PODS, MAX_SERVICES, MAX_ENDPOINTS, SVC_PASSTHROUGH, EVENT.open, EVENT.close, EVENT.fail],
  );
  assert.deepEqual(
    [c.statLb, c.statPass, c.statFull, c.statLost, c.statNoEp, c.statSame, c.statDenied, c.statAdmitted, c.statNoListener, c.statOtherFlow, c.statMax],
    [STAT.lbRewrite, STAT.passthrough, STAT.flowsFull, STAT.eventsLost, STAT.noEndpoint, STAT.sameNode, STAT.denied, STAT.admitted, STAT.noListener, STAT.otherFlow, STAT.max],
  );
  assert.deepEqual([c.maxLocal, c.maxAuthz, c.allow, c.deny], [MAX_LOCAL, MAX_AUTHZ, AUTHZ.allow, AUTHZ.deny]);
});

test('keys and values are encoded with addresses and ports in network order', () => {
  assert.equal(serviceKey('10.96.0.10', 80).toString('hex'), '0a60000a00500000');
  const v = serviceValue({ svcId: 7, passthrough: false, endpoints: [{ ip: '10.244.1.10', port: 8080, weight: 1 }, { ip: '10.244.1.11', port: 8080, weight: 3 }] });
  assert.equal(v.length, LAYOUT.skein_service.size);
  assert.equal(v.subarray(0, 16).toString('hex'), '07000000' + '0200' + '0000' + '04000000' + '00000000');
  assert.equal(v.subarray(16, 28).toString('hex'), '0af4010a' + '1f90' + '0000' + '01000000');
  assert.equal(serviceValue({ svcId: 1, passthrough: true, endpoints: [] }).readUInt16LE(LAYOUT.skein_service.flags), SVC_PASSTHROUGH);
  assert.throws(() => serviceValue({ svcId: 1, passthrough: false, endpoints: Array.from({ length: MAX_ENDPOINTS + 1 }, () => ({ ip: '10.0.0.1', port: 1, weight: 1 })) }), LayoutError);
  assert.throws(() => serviceKey('fd00::1', 80), LayoutError);
});

test('events decode from the ring buffer record layout; garbage is refused', () => {
  const b = Buffer.alloc(LAYOUT.skein_event.size);
  b.writeUInt32LE(EVENT.close, 0);
  b.writeUInt32LE(3, 4);
  b.writeUInt32LE(9, 8);
  Buffer.from([10, 244, 0, 10]).copy(b, 12);
  Buffer.from([10, 96, 0, 10]).copy(b, 16);
  Buffer.from([10, 244, 1, 10]).copy(b, 20);
  b.writeUInt16LE(40000, 24);
  b.writeUInt16BE(80, 26);
  b.writeUInt16BE(8080, 28);
  b.writeBigUInt64LE(42n, 32);
  b.writeBigUInt64LE(100n, 40);
  b.writeBigUInt64LE(2000n, 48);
  b.writeBigUInt64LE(5_000_000n, 56);
  assert.deepEqual(decodeEvent(b), {
    kind: 'close', podId: 3, svcId: 9, src: { ip: '10.244.0.10', port: 40000 }, orig: { ip: '10.96.0.10', port: 80 },
    dst: { ip: '10.244.1.10', port: 8080 }, cookie: 42n, bytesSent: 100, bytesRecv: 2000, durationMs: 5, dstPodId: 0,
  });
  assert.throws(() => decodeEvent(b.subarray(0, 10)), LayoutError);
  b.writeUInt32LE(99, 0);
  assert.throws(() => decodeEvent(b), /unknown event kind 99/);
});

test('approvals decode from the flow key and approval layouts', () => {
  const key = Buffer.alloc(LAYOUT.skein_flow_key.size);
  Buffer.from([10, 244, 0, 10]).copy(key, LAYOUT.skein_flow_key.ip);
  key.writeUInt32LE(40123, LAYOUT.skein_flow_key.port);
  Buffer.from([10, 244, 0, 11]).copy(key, LAYOUT.skein_flow_key.dst_ip);
  const value = Buffer.alloc(LAYOUT.skein_approval.size);
  value.writeBigUInt64LE(77n, LAYOUT.skein_approval.dst_netns);
  value.writeUInt32LE(8080, LAYOUT.skein_approval.dst_port);
  assert.deepEqual(decodeApproval(key, value), { clientIp: '10.244.0.10', clientPort: 40123, dstIp: '10.244.0.11', dstNetns: 77n, dstPort: 8080 });
  assert.throws(() => decodeApproval(key.subarray(0, 4), value), LayoutError);
});
