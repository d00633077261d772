// SPDX-License-Identifier: Apache-2.0
// What the DNS proxy does with one query (ztunnel's DNS proxy): A and AAAA
// questions for a hostname Skein knows from WDS are answered with the
// service's VIPs; every other well-formed query goes upstream unchanged; a
// message that does not parse gets FORMERR. Pure: `find` is the lookup.
import packet from 'dns-packet';

/** ztunnel answers with a 30 s TTL. */
export const TTL_SECONDS = 30;

export interface Addresses {
  v4: readonly string[];
  v6: readonly string[];
}

export type Verdict =
  /** Answered here. `type` is the question's type, lower case, for the metrics. */
  | { kind: 'answer'; type: string; response: Buffer }
  /** Not ours to answer: send the query upstream as it is. */
  | { kind: 'forward'; type: string }
  /** Malformed: reply with `response` (FORMERR), or drop it (no header, or a response rather than a query). */
  | { kind: 'malformed'; type: string; response: Buffer | undefined };

const RCODE = { formerr: 1, servfail: 2 } as const;

function decode(query: Buffer): packet.DecodedPacket | undefined {
  try {
    return packet.decode(query);
  } catch {
    return undefined;
  }
}

/** A bare header answering `query`'s id with `rcode`, no sections (for what cannot be decoded). */
function headerOnly(query: Buffer, rcode: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(query.readUInt16BE(0), 0);
  // QR, the query's opcode and RD, RA, then the rcode.
  const flags = query.readUInt16BE(2);
  h.writeUInt16BE(0x8000 | (flags & 0x7900) | 0x0080 | rcode, 2);
  return h;
}

export function respond(query: Buffer, find: (qname: string) => Addresses | undefined): Verdict {
  // A response is never answered (two DNS speakers must not ping-pong).
  if (query.length >= 12 && (query.readUInt16BE(2) & 0x8000) !== 0) return { kind: 'malformed', type: 'unknown', response: undefined };
  const q = decode(query);
  if (q === undefined) {
    return { kind: 'malformed', type: 'unknown', response: query.length >= 12 ? headerOnly(query, RCODE.formerr) : undefined };
  }
  const questions = q.questions ?? [];
  const question = questions.length === 1 ? questions[0] : undefined;
  const type = (question?.type ?? 'unknown').toLowerCase();
  const opcode = (query.readUInt16BE(2) >> 11) & 0xf;
  if (question === undefined || opcode !== 0 || (question.class ?? 'IN') !== 'IN' || (question.type !== 'A' && question.type !== 'AAAA')) {
    return { kind: 'forward', type };
  }
  const found = find(question.name);
  if (found === undefined) return { kind: 'forward', type };
  const ips = question.type === 'A' ? found.v4 : found.v6;
  const response = packet.encode({
    type: 'response',
    id: q.id ?? 0,
    flags: (q.flag_rd ? packet.RECURSION_DESIRED : 0) | packet.RECURSION_AVAILABLE,
    questions: [question],
    answers: ips.map((ip) => ({ name: question.name, type: question.type, class: 'IN', ttl: TTL_SECONDS, data: ip })),
  } as packet.Packet);
  return { kind: 'answer', type, response };
}

/** SERVFAIL for a query whose upstream did not answer (the question echoed when it decodes). */
export function servfail(query: Buffer): Buffer | undefined {
  if (query.length < 12) return undefined;
  const q = decode(query);
  if (q === undefined) return headerOnly(query, RCODE.servfail);
  return packet.encode({
    type: 'response',
    id: q.id ?? 0,
    flags: (q.flag_rd ? packet.RECURSION_DESIRED : 0) | packet.RECURSION_AVAILABLE | RCODE.servfail,
    questions: q.questions ?? [],
  });
}
