// SPDX-License-Identifier: Apache-2.0
// Byte-level mutations in the manner of libFuzzer's MutationDispatcher: each
// new input is a corpus entry with one to four stacked mutations (bit flips,
// random and "interesting" bytes and integers, insertions, deletions,
// duplicated or shuffled chunks, splices with another entry, dictionary
// tokens). Deterministic for a given seed, so a run can be replayed.

/** xorshift32: small, fast, seedable; quality is ample for choosing mutations. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = (seed >>> 0) || 0x9e3779b9;
  }

  next(): number {
    let x = this.#s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#s = x >>> 0;
    return this.#s;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.below(items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
}

// Values at type boundaries, which length and range checks get wrong.
const INTERESTING8 = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40, 0x64];
const INTERESTING16 = [0x0000, 0x0080, 0x00ff, 0x0100, 0x7fff, 0x8000, 0xffff, 0x0400, 0x1000];
const INTERESTING32 = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x10000, 0xfffe];

type Mutator = (b: Buffer, rng: Rng, ctx: MutationContext) => Buffer;

export interface MutationContext {
  /** Other corpus entries, for splicing. */
  corpus: readonly Buffer[];
  /** Tokens of the input's grammar (magic values, keywords). */
  dictionary: readonly Buffer[];
  maxLen: number;
}

function at(b: Buffer, rng: Rng): number {
  return rng.below(b.length);
}

const mutators: Mutator[] = [
  // Flip one bit.
  (b, rng) => {
    if (b.length === 0) return b;
    const out = Buffer.from(b);
    const i = at(out, rng);
    out[i] = (out[i] ?? 0) ^ (1 << rng.below(8));
    return out;
  },
  // Set a random byte.
  (b, rng) => {
    if (b.length === 0) return Buffer.from([rng.below(256)]);
    const out = Buffer.from(b);
    out[at(out, rng)] = rng.below(256);
    return out;
  },
  // Add or subtract a small amount from a byte (a length or a count off by a few).
  (b, rng) => {
    if (b.length === 0) return b;
    const out = Buffer.from(b);
    const i = at(out, rng);
    out[i] = ((out[i] ?? 0) + rng.below(35) - 17) & 0xff;
    return out;
  },
  // An interesting 8/16/32-bit value, either byte order.
  (b, rng) => {
    const width = rng.pick([1, 2, 4]);
    if (b.length < width) return b;
    const out = Buffer.from(b);
    const i = rng.below(out.length - width + 1);
    if (width === 1) out[i] = rng.pick(INTERESTING8);
    else if (width === 2) {
      const v = rng.pick(INTERESTING16);
      if (rng.below(2) === 0) out.writeUInt16BE(v, i); else out.writeUInt16LE(v, i);
    } else {
      const v = rng.pick(INTERESTING32);
      if (rng.below(2) === 0) out.writeUInt32BE(v, i); else out.writeUInt32LE(v, i);
    }
    return out;
  },
  // Insert random bytes.
  (b, rng) => {
    const n = 1 + rng.below(8);
    const ins = Buffer.alloc(n);
    for (let k = 0; k < n; k++) ins[k] = rng.below(256);
    const i = rng.below(b.length + 1);
    return Buffer.concat([b.subarray(0, i), ins, b.subarray(i)]);
  },
  // Delete a chunk.
  (b, rng) => {
    if (b.length === 0) return b;
    const i = at(b, rng);
    const n = 1 + rng.below(Math.min(16, b.length - i));
    return Buffer.concat([b.subarray(0, i), b.subarray(i + n)]);
  },
  // Duplicate a chunk in place (repeated fields, nested structures).
  (b, rng) => {
    if (b.length === 0) return b;
    const i = at(b, rng);
    const n = 1 + rng.below(Math.min(32, b.length - i));
    return Buffer.concat([b.subarray(0, i + n), b.subarray(i, i + n), b.subarray(i + n)]);
  },
  // Copy a chunk over another place.
  (b, rng) => {
    if (b.length < 2) return b;
    const out = Buffer.from(b);
    const from = at(out, rng);
    const to = at(out, rng);
    const n = 1 + rng.below(Math.min(16, out.length - Math.max(from, to)));
    b.copy(out, to, from, from + n);
    return out;
  },
  // Splice: the head of this input with the tail of another.
  (b, rng, ctx) => {
    if (ctx.corpus.length === 0) return b;
    const other = rng.pick(ctx.corpus);
    return Buffer.concat([b.subarray(0, rng.below(b.length + 1)), other.subarray(rng.below(other.length + 1))]);
  },
  // Insert or overwrite with a dictionary token.
  (b, rng, ctx) => {
    if (ctx.dictionary.length === 0) return b;
    const token = rng.pick(ctx.dictionary);
    const i = rng.below(b.length + 1);
    if (rng.below(2) === 0) return Buffer.concat([b.subarray(0, i), token, b.subarray(i)]);
    const out = Buffer.from(b);
    token.copy(out, i);
    return out;
  },
  // Truncate (inputs that end early).
  (b, rng) => b.subarray(0, rng.below(b.length + 1)),
];

/** One new input derived from `input`; never longer than ctx.maxLen. */
export function mutate(input: Buffer, rng: Rng, ctx: MutationContext): Buffer {
  let out = input;
  // Mostly one mutation (a step at the coverage frontier), sometimes up to four (a leap).
  let rounds = 1;
  while (rounds < 4 && rng.below(2) === 0) rounds++;
  for (let r = 0; r < rounds; r++) out = rng.pick(mutators)(out, rng, ctx);
  return out.length > ctx.maxLen ? out.subarray(0, ctx.maxLen) : out;
}
