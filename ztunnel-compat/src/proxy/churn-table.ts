// SPDX-License-Identifier: Apache-2.0
// Short-lived entries (one per connection or tunnel) by a number, kept in a
// dictionary-mode object instead of a Map or Set. A long-lived Map or Set
// that takes and drops an entry per connection makes V8 promote, scavenge
// after scavenge, much of what its recent entries point to, whatever the
// young generation's size: test/bench/churn-gc.ts measures 37% of all
// allocation promoted for a Map or Set against 0.6% for this table. In the
// client-side daemon under connection churn that was about 15% of all it
// allocated, sent to the old generation to die there (the heap grew to
// 90 MB between full GCs). Object properties do not do that. Values are
// never undefined (that is how a missing key reads).

// Keys 1 … 2^31 - 1 (small integers, which the native engine takes as
// uint32), then round again, skipping those still in use: an entry may
// outlive billions of others (a connection open for weeks on a busy node).
export const LAST_KEY = 0x7fff_ffff;

export class ChurnTable<V extends object | string | number | boolean | bigint | symbol> {
  #entries: Record<number, V> = Object.create(null) as Record<number, V>;
  #size = 0;
  #next = 1;
  readonly #last: number;

  /** `lastKey` (default LAST_KEY) is the largest key add() gives; tests lower it to go round. */
  constructor(lastKey = LAST_KEY) {
    this.#last = lastKey;
  }

  get size(): number {
    return this.#size;
  }

  get(key: number): V | undefined {
    return this.#entries[key];
  }

  has(key: number): boolean {
    return this.#entries[key] !== undefined;
  }

  set(key: number, value: V): void {
    if (this.#entries[key] === undefined) this.#size++;
    this.#entries[key] = value;
  }

  /** Adds `value` under a key of its own, which `delete` takes. */
  add(value: V): number {
    if (this.#size >= this.#last) throw new RangeError(`a churn table holds at most ${this.#last} keys`);
    let key = this.#next;
    while (this.#entries[key] !== undefined) key = this.#after(key);
    this.#next = this.#after(key);
    this.set(key, value);
    return key;
  }

  #after(key: number): number {
    return key >= this.#last ? 1 : key + 1;
  }

  delete(key: number): boolean {
    if (this.#entries[key] === undefined) return false;
    // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- a dictionary-mode object is the point
    delete this.#entries[key];
    this.#size--;
    return true;
  }

  keys(): number[] {
    return Object.keys(this.#entries).map(Number);
  }

  values(): V[] {
    return Object.values(this.#entries);
  }

  clear(): void {
    this.#entries = Object.create(null) as Record<number, V>;
    this.#size = 0;
  }
}
