// SPDX-License-Identifier: Apache-2.0
// Preloaded into every test file's process (package.json, test:run). Each
// file runs in a child that streams its results to the runner over stdout, a
// pipe; with --test-force-exit the child calls process.exit() as soon as its
// last test ends, and on Linux, where a pipe write is asynchronous, the
// results still buffered are lost: the runner reports fewer tests than ran,
// and a lost failure loses its name (nodejs/node#64833, open). A blocking
// pipe has nothing buffered at exit. Only in test children: the runner
// itself, and scripts, keep Node's default.
if (process.env.NODE_TEST_CONTEXT !== undefined) {
  const handle = (process.stdout as unknown as { _handle?: { setBlocking?: (blocking: boolean) => unknown } })._handle;
  handle?.setBlocking?.(true);
}
