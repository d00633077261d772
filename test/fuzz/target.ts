// SPDX-License-Identifier: Apache-2.0
// What a fuzz target is: one parser fed untrusted bytes. A target throws only
// for a finding; the parser's declared errors (its documented way of saying
// "malformed") are not findings, and a violated invariant is one.

export interface FuzzTarget {
  /** Short name, used on the command line and in the report. */
  readonly name: string;
  /** The code under test, for the report. */
  readonly parser: string;
  /** Starting inputs, built as the parser's own tests build their inputs. */
  seeds(): Buffer[];
  /** Tokens of the input's grammar that random bytes would rarely hit. */
  readonly dictionary?: readonly (string | Buffer)[];
  /** Longest input tried. */
  readonly maxLen: number;
  /** Error classes the parser declares for malformed input. */
  readonly declared: readonly (abstract new (...args: never[]) => Error)[];
  /** Feeds one input; may return a promise for parsers that are async. */
  run(data: Buffer): void | Promise<void>;
}

/** Thrown by a target when the parser returned, but returned something it must not. */
export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
}

export function invariant(ok: boolean, message: string): void {
  if (!ok) throw new InvariantViolation(message);
}
