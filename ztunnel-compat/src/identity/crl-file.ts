// SPDX-License-Identifier: Apache-2.0
// The CRL file (ztunnel CRL_PATH; Istio's chart mounts ConfigMap
// istio-ca-crl at /var/run/secrets/istio/crl/ca-crl.pem when
// peerCaCrl.enabled): read at start and again whenever it changes. As
// ztunnel: a file not there yet is no revocation until it appears; one that
// does not parse at start is an error, and later keeps the last good set.
// Changes are found by stat every `pollMs`: a ConfigMap update swaps a
// symlink, which a stat of the path sees and no watch of the file does.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Stats } from 'node:fs';
import { CrlError, CrlSet } from './crl.ts';
import { silentLogger } from './log.ts';
import type { IdentityLogger } from './log.ts';

export interface CrlFileOptions {
  /** How often the file is stat'ed. Default 2000 ms (ztunnel debounces its watch by 2 s). */
  pollMs?: number;
  logger?: IdentityLogger;
}

export class CrlFile {
  readonly path: string;
  #set: CrlSet;
  readonly #listeners = new Set<(set: CrlSet) => void>();
  #guard: ((set: CrlSet) => void) | undefined;
  readonly #logger: IdentityLogger;
  readonly #onStat: (cur: Stats, prev: Stats) => void;

  /** Throws CrlError when the file is there and does not parse. */
  constructor(path: string, opts: CrlFileOptions = {}) {
    this.path = path;
    this.#logger = opts.logger ?? silentLogger;
    const first = this.#read();
    if (first instanceof Error) throw new CrlError(`CRL_PATH ${path}: ${first.message}`, { cause: first });
    this.#set = first ?? CrlSet.EMPTY;
    if (first === undefined) this.#logger.warn({ path }, 'CRL file not found; nothing is revoked until it appears');
    else this.#logger.info({ path, crls: this.#set.size, revoked: this.#set.revoked }, 'CRL loaded');
    this.#onStat = (cur, prev) => {
      if (cur.mtimeMs === prev.mtimeMs && cur.ino === prev.ino && cur.size === prev.size) return;
      this.reload();
    };
    watchFile(path, { persistent: false, interval: opts.pollMs ?? 2000 }, this.#onStat);
  }

  /** The CRLs in force. */
  get current(): CrlSet {
    return this.#set;
  }

  /** Calls `fn` with each newly loaded set; returns the unsubscribe. */
  onChange(fn: (set: CrlSet) => void): () => void {
    this.#listeners.add(fn);
    return () => { this.#listeners.delete(fn); };
  }

  /**
   * Runs `fn` on each new set before it is taken (the native engine takes
   * it there); a throw rejects the reload, so both keep the last good set.
   */
  guard(fn: (set: CrlSet) => void): void {
    this.#guard = fn;
  }

  /** Reads the file again; a missing or bad file keeps the set in force. */
  reload(): void {
    let next = this.#read();
    if (next instanceof CrlSet) {
      try {
        this.#guard?.(next);
      } catch (err) {
        next = err as Error;
      }
    }
    if (next === undefined || next instanceof Error) {
      this.#logger.warn({ path: this.path, err: next?.message ?? 'the file is gone' }, 'CRL not reloaded; the last good one stays in force');
      return;
    }
    this.#set = next;
    this.#logger.info({ path: this.path, crls: next.size, revoked: next.revoked }, 'CRL reloaded');
    for (const fn of this.#listeners) {
      try {
        fn(next);
      } catch (err) {
        this.#logger.warn({ err: String(err) }, 'a CRL listener threw');
      }
    }
  }

  close(): void {
    unwatchFile(this.path, this.#onStat);
    this.#listeners.clear();
  }

  /** The parsed file; undefined when it is not there; the error when it does not read or parse. */
  #read(): CrlSet | Error | undefined {
    let data: Buffer;
    try {
      data = readFileSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return err as Error;
    }
    try {
      return CrlSet.parse(data);
    } catch (err) {
      return err as Error;
    }
  }
}
