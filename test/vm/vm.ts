// SPDX-License-Identifier: Apache-2.0
// The VM lab: boots Debian's kernel (fetched by test/vm/setup.sh into
// .skein/vm) under qemu with a throwaway initramfs of busybox, the kernel
// modules a test needs and its payload files, runs one shell script there and
// hands back the script's output and exit status. This machine's own kernel
// loads no modules and has no kTLS; the Debian kernel does both.
//
// The VM has no network device at all (-nodefaults, no -netdev): its traffic
// stays on its own loopback. Output comes back over the second serial port
// (ttyS1, the script's stdout and stderr), the kernel's console over the first
// (ttyS0, at loglevel 5 so WARN()s show; scanned for them). qemu is killed
// by PID when the time is up.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cpioArchive, type CpioEntry } from './cpio.ts';

export const projectRoot = path.resolve(import.meta.dirname, '../..');
export const vmDir = path.join(projectRoot, '.skein/vm');

export interface VmImage {
  /** Debian's kernel ABI name, e.g. 6.1.0-57-amd64 (from .skein/vm/kernel.stamp). */
  release: string;
  kernel: string;
  modulesDir: string;
  busybox: string;
  /** Our module, built by setup against the same kernel's headers. */
  kmod: string;
  /** The static C test programs that run inside the VM. */
  binDir: string;
}

/** The image setup built, or why there is none (the VM tests skip with that reason). */
export function vmImage(): VmImage | string {
  let release: string;
  try {
    release = (fs.readFileSync(path.join(vmDir, 'kernel.stamp'), 'utf8').split(' ')[0] ?? '').trim();
  } catch {
    return 'the VM image is not set up (bash test/setup.sh fetches it into .skein/vm)';
  }
  const root = path.join(vmDir, 'root');
  const img: VmImage = {
    release,
    kernel: path.join(root, 'boot', `vmlinuz-${release}`),
    modulesDir: path.join(root, 'lib/modules', release),
    busybox: path.join(root, 'bin/busybox'),
    kmod: path.join(vmDir, 'kmod-build/skein_hbone.ko'),
    binDir: path.join(vmDir, 'bin'),
  };
  for (const f of [img.kernel, img.busybox, img.kmod]) {
    if (!fs.existsSync(f)) return `missing ${path.relative(projectRoot, f)} (re-run bash test/setup.sh)`;
  }
  if (!qemuBinary()) return 'qemu-system-x86_64 is not installed (bash test/setup.sh installs it)';
  return img;
}

function qemuBinary(): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin').split(':')) {
    const p = path.join(dir, 'qemu-system-x86_64');
    if (fs.existsSync(p)) return p;
  }
  return null;
}

/** The module's name as the kernel knows it: dashes read as underscores. */
function modName(s: string): string {
  return path.basename(s).replace(/\.ko$/, '').replaceAll('-', '_');
}

/** The `depends=` field of a .ko's .modinfo section (NUL-separated key=value strings). */
export function moduleDepends(ko: Buffer): string[] {
  const key = Buffer.from('\0depends=');
  const at = ko.indexOf(key);
  if (at < 0) return [];
  const end = ko.indexOf(0, at + key.length);
  const value = ko.subarray(at + key.length, end < 0 ? undefined : end).toString('latin1');
  return value.split(',').filter((d) => d !== '').map(modName);
}

/**
 * The x86 AES-NI and CLMUL implementations of AES and GHASH, which a real
 * machine's udev loads by CPU feature: without them kTLS runs the kernel's
 * generic C code while OpenSSL in userspace uses the instructions (qemu's
 * `-cpu max` has them), which would compare the module's path unfairly.
 */
export const CRYPTO_ACCEL_MODULES = ['aesni_intel', 'ghash_clmulni_intel'] as const;

/**
 * The Debian modules to insmod for the named ones, dependencies first, as
 * paths under the modules directory. busybox's insmod does not resolve
 * dependencies, and there is no modprobe database in the image.
 */
export function resolveModules(modulesDir: string, wanted: readonly string[]): string[] {
  const byName = new Map<string, string>();
  for (const rel of fs.readFileSync(path.join(modulesDir, 'modules.order'), 'utf8').split('\n')) {
    if (rel.trim() !== '') byName.set(modName(rel.trim()), rel.trim());
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string, chain: readonly string[]): void => {
    if (seen.has(name)) return;
    if (chain.includes(name)) throw new Error(`module dependency cycle: ${[...chain, name].join(' -> ')}`);
    const rel = byName.get(name);
    if (rel === undefined) throw new Error(`no module ${name} in ${modulesDir}`);
    for (const dep of moduleDepends(fs.readFileSync(path.join(modulesDir, rel)))) visit(dep, [...chain, name]);
    seen.add(name);
    order.push(rel);
  };
  for (const w of wanted) visit(modName(w), []);
  return order;
}

export interface VmFile {
  /** Where it lands inside the VM (absolute). */
  path: string;
  /** Host file to copy, or the contents. */
  from: string | Uint8Array;
  mode?: number;
}

export interface VmRunOptions {
  /** Debian modules to load before the script (dependencies are added). */
  modules?: readonly string[];
  /** Extra files for the VM, e.g. our .ko and the test programs. */
  files?: readonly VmFile[];
  /** Busybox sh script run as root inside the VM; its exit status is returned. */
  script: string;
  /** Kill qemu after this long (boot included). */
  timeoutMs: number;
  memoryMb?: number;
  /**
   * A host directory shared read-only into the VM over virtio-9p, mounted at
   * /host before the script runs (the script may chroot into it to run the
   * host's dynamically linked programs, Node among them).
   */
  shareHostDir?: string;
}

export interface VmResult {
  /** The script's exit status; null if the VM never reported one (timeout, panic). */
  exitCode: number | null;
  timedOut: boolean;
  /** What the script wrote (stdout and stderr), without the exit-status line. */
  output: string;
  /** The kernel console (ttyS0). */
  console: string;
  /** Console lines showing a kernel warning, bug or oops: a VM test fails on any. */
  kernelWarnings: string[];
  /** Wall-clock time from spawning qemu to its exit. */
  elapsedMs: number;
  accel: 'tcg';
}

const EXIT_MARK = 'SKEIN-VM-EXIT ';

// PID 1. devtmpfs gives /dev/ttyS1; the script's output goes there, the exit
// status after it, and poweroff -f ends the VM (qemu exits with -no-reboot).
const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
ip link set lo up
while read -r m; do
  [ -n "$m" ] && { insmod "/lib/modules/$m" || echo "init: insmod $m failed" > /dev/ttyS1; }
done < /etc/skein-modules
if [ -e /etc/skein-share ]; then
  mkdir -p /host
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host /host || echo "init: mounting the 9p share failed" > /dev/ttyS1
fi
cd /root
sh /root/run.sh > /dev/ttyS1 2>&1 < /dev/null
echo "${EXIT_MARK}$?" > /dev/ttyS1
sync
poweroff -f
`;

/** Kernel messages that mean a test must fail, whatever the script said. */
export function kernelWarnings(consoleText: string): string[] {
  return consoleText.split('\n').filter((l) => /WARNING:|BUG:|Oops|Call Trace:|general protection fault|Kernel panic|refcount_t:|UBSAN:|KASAN:/.test(l));
}

/** Boots the VM, runs the script, returns its result. Never leaves qemu running. */
export async function runInVm(img: VmImage, opts: VmRunOptions): Promise<VmResult> {
  const qemu = qemuBinary();
  if (qemu === null) throw new Error('qemu-system-x86_64 not found');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-vm-'));
  try {
    const share = opts.shareHostDir;
    const mods = resolveModules(img.modulesDir, [...(share === undefined ? [] : ['virtio_pci', '9pnet_virtio', '9p']), ...(opts.modules ?? [])]);
    const entries: CpioEntry[] = [];
    const dirs = new Set<string>();
    const mkdirs = (p: string): void => {
      const parts = path.posix.dirname(p).split('/').filter((s) => s !== '');
      for (let i = 1; i <= parts.length; i++) {
        const d = `/${parts.slice(0, i).join('/')}`;
        if (!dirs.has(d)) {
          dirs.add(d);
          entries.push({ kind: 'dir', path: d });
        }
      }
    };
    const add = (p: string, data: Uint8Array, mode = 0o644): void => {
      mkdirs(p);
      entries.push({ kind: 'file', path: p, data, mode });
    };
    for (const d of ['/proc', '/sys', '/dev', '/tmp', '/root', '/bin', '/sbin', '/etc']) mkdirs(`${d}/x`);
    entries.push({ kind: 'chardev', path: '/dev/console', major: 5, minor: 1 });
    add('/bin/busybox', fs.readFileSync(img.busybox), 0o755);
    add('/init', Buffer.from(INIT), 0o755);
    for (const rel of mods) add(`/lib/modules/${rel}`, fs.readFileSync(path.join(img.modulesDir, rel)));
    add('/etc/skein-modules', Buffer.from(mods.map((m) => `${m}\n`).join('')));
    for (const f of opts.files ?? []) {
      if (!f.path.startsWith('/')) throw new Error(`VM file path must be absolute: ${f.path}`);
      add(f.path, typeof f.from === 'string' ? fs.readFileSync(f.from) : f.from, f.mode ?? 0o644);
    }
    add('/root/run.sh', Buffer.from(opts.script), 0o755);
    if (share !== undefined) add('/etc/skein-share', Buffer.from(share));
    const initrd = path.join(work, 'initrd.cpio');
    fs.writeFileSync(initrd, cpioArchive(entries));

    const consoleLog = path.join(work, 'console.log');
    const outputLog = path.join(work, 'output.log');
    // Software emulation only: under this machine's nested KVM, qemu either
    // aborts on an MSR (-cpu host/max) or hangs before the kernel prints.
    const accel = 'tcg';
    const args = [
      '-nographic', '-nodefaults', '-no-reboot', '-monitor', 'none',
      '-accel', 'tcg', '-cpu', 'max',
      '-m', String(opts.memoryMb ?? 256), '-smp', '1',
      '-kernel', img.kernel, '-initrd', initrd,
      '-append', 'console=ttyS0 panic=-1 loglevel=5',
      '-serial', `file:${consoleLog}`, '-serial', `file:${outputLog}`,
      ...(share === undefined ? [] : ['-virtfs', `local,path=${share},mount_tag=host,security_model=none,readonly=on`]),
    ];
    const started = Date.now();
    const child = spawn(qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let qemuErr = '';
    child.stdout.on('data', (d: Buffer) => { qemuErr += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { qemuErr += d.toString(); });
    const run = { timedOut: false };
    const timer = setTimeout(() => {
      run.timedOut = true;
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, opts.timeoutMs);
    // If the test process exits first (a runner's forced exit), qemu must not
    // outlive it, nor its files.
    const onExit = (): void => {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
      fs.rmSync(work, { recursive: true, force: true });
    };
    process.once('exit', onExit);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c) => { resolve(c); });
    }).finally(() => {
      clearTimeout(timer);
      process.removeListener('exit', onExit);
    });
    const elapsedMs = Date.now() - started;
    const consoleText = readOr(consoleLog);
    const outText = readOr(outputLog).replaceAll('\r\n', '\n');
    const markAt = outText.lastIndexOf(EXIT_MARK);
    const exitCode = markAt < 0 ? null : Number.parseInt(outText.slice(markAt + EXIT_MARK.length), 10);
    if (!run.timedOut && markAt < 0 && code !== 0) {
      throw new Error(`qemu exited with ${code} before the script reported: ${qemuErr.trim()}\n${consoleText.slice(-2000)}`);
    }
    return {
      exitCode: Number.isNaN(exitCode) ? null : exitCode,
      timedOut: run.timedOut,
      output: markAt < 0 ? outText : outText.slice(0, markAt),
      console: consoleText,
      kernelWarnings: kernelWarnings(consoleText),
      elapsedMs,
      accel,
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function readOr(p: string): string {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}
