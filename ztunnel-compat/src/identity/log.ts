// SPDX-License-Identifier: Apache-2.0
// The logging seam of the identity code: the subset of pino's API it uses, so
// the app can pass a pino child logger and tests can pass a recorder.

export type LogFn = (fields: Record<string, unknown>, msg: string) => void;

export interface IdentityLogger {
  readonly debug: LogFn;
  readonly info: LogFn;
  readonly warn: LogFn;
}

const nothing: LogFn = () => undefined;

export const silentLogger: IdentityLogger = Object.freeze({ debug: nothing, info: nothing, warn: nothing });
