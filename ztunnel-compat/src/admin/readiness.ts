// SPDX-License-Identifier: Apache-2.0
// Readiness (reference §8.3): ready when no startup task is pending. Tasks
// register themselves and mark themselves done; the probe lists what is not.
export class Readiness {
  readonly #pending = new Set<string>();

  /** Registers a task that must finish before the proxy is ready. */
  register(task: string): () => void {
    this.#pending.add(task);
    return () => { this.#pending.delete(task); };
  }

  get ready(): boolean {
    return this.#pending.size === 0;
  }

  get pending(): string[] {
    return [...this.#pending].sort();
  }
}
