// SPDX-License-Identifier: Apache-2.0
// Readiness (reference §8.3): ready when no startup task is pending. Tasks
// register themselves and mark themselves done; the probe lists what is not.
// A watched condition is asked at every probe, so it can go back to pending
// (a pod whose proxy failed to start keeps the node unready until it runs).
export class Readiness {
  readonly #pending = new Set<string>();
  readonly #watched = new Map<string, () => boolean>();

  /** Registers a task that must finish before the proxy is ready. */
  register(task: string): () => void {
    this.#pending.add(task);
    return () => { this.#pending.delete(task); };
  }

  /** Keeps `task` pending for as long as `isPending()` says so, checked at each probe. */
  watch(task: string, isPending: () => boolean): void {
    this.#watched.set(task, isPending);
  }

  get ready(): boolean {
    return this.pending.length === 0;
  }

  get pending(): string[] {
    const names = new Set(this.#pending);
    for (const [task, isPending] of this.#watched) if (isPending()) names.add(task);
    return [...names].sort();
  }
}
