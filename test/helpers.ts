// Shared by the tests: fixtures, leak checks, and collecting a container's output.
import { spawn as spawnProcess, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';

import { v1Hierarchies } from '../src/cgroup';
import { Container, type ExitStatus, type ProcessOptions } from '../src/container';
import { NsboxError } from '../src/errors';
import { processState } from '../src/proc';
import { claimsDir, parseClaim } from '../src/userns';

export { Container, NsboxError };

/** Set by test/global-setup.ts, which builds the fixture for the current script and busybox. */
function fixture(name: 'NSBOX_TEST_ROOTFS' | 'NSBOX_TEST_TARBALL'): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests through vitest (test/global-setup.ts makes the fixture)`);
  return v;
}
export const ROOTFS = fixture('NSBOX_TEST_ROOTFS');
export const TARBALL = fixture('NSBOX_TEST_TARBALL');

/** The host's mount table (mount points only), to compare before and after. */
export function hostMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(' ')[4]!)
    .sort();
}

/** Overlay or aufs mounts on the host: there should never be any left by nsbox. */
export function unionMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => / - (overlay|aufs) /.test(l));
}

const ownCpu = v1Hierarchies(readFileSync('/proc/self/mountinfo', 'utf8'), readFileSync('/proc/self/cgroup', 'utf8')).get('cpu');
const OWN_CPU_TASKS = ownCpu ? path.join(ownCpu.mount, ownCpu.path, 'tasks') : undefined;

/**
 * This process's open fds, but for the one nsbox keeps for the life of the process: the
 * sealed memfd holding nsbox-init (src-cc/core/init_image.cc), made on the first start.
 */
export function openFds(): string[] {
  let ownCpuTasks = OWN_CPU_TASKS;
  return readdirSync('/proc/self/fd')
    .filter((fd) => {
      try {
        const target = readlinkSync(`/proc/self/fd/${fd}`);
        // One fd on this process's own cpu `tasks`: the setup cgroup's way back
        // (src/cgroup.ts, setupCpuCgroup), opened once; a second one would be a leak.
        if (target === ownCpuTasks) {
          ownCpuTasks = undefined;
          return false;
        }
        // The nsbox-init memfd, and the `tasks` files of warm cgroup sets (src/cgroup-pool.ts):
        // both kept for the life of the process by design; limits.test.ts checks the sets.
        return !target.startsWith('/memfd:nsbox-init') && !/\/nsbox\/warm-\d+-/.test(target);
      } catch {
        // The fd readdir itself used, gone by now: its number depends on what else is open
        // (warm cgroup sets come and go), so it is left out of the comparison.
        return false;
      }
    })
    .sort((a, b) => Number(a) - Number(b));
}

/** Direct children of this process (containers are children until reaped). */
export function childPids(): number[] {
  const out: number[] = [];
  for (const task of readdirSync('/proc/self/task')) {
    let text = '';
    try {
      text = readFileSync(`/proc/self/task/${task}/children`, 'utf8');
    } catch {
      continue;
    }
    out.push(...text.trim().split(/\s+/).filter(Boolean).map(Number));
  }
  return out.sort((a, b) => a - b);
}

export function collect(stream: Readable | null): Promise<string> {
  if (!stream) return Promise.resolve('');
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', reject);
    stream.on('close', () => resolve(Buffer.concat(chunks).toString()));
  });
}

// ---------------------------------------------------------------------------------------
// Containers: running one and collecting what it printed; leak and zombie checks; node
// subprocesses (for what must happen outside the test process: SIGKILL, inherited fds,
// worker threads).

export function collectBuffer(stream: Readable | null): Promise<Buffer> {
  if (!stream) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', reject);
    stream.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

export interface RunResult extends ExitStatus {
  stdout: Buffer;
  stderr: Buffer;
  /** stdout as text */
  out: string;
  /** stderr as text */
  err: string;
}

/** Starts a container on the busybox fixture, collects its output, waits for its exit. */
export async function run(command: string[], options: Partial<ProcessOptions> = {}): Promise<RunResult> {
  const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command, ...options });
  const [stdout, stderr, status] = await Promise.all([collectBuffer(c.stdout), collectBuffer(c.stderr), c.wait()]);
  return { ...status, stdout, stderr, out: stdout.toString(), err: stderr.toString() };
}

/** sh -c SCRIPT in a container; fails the test unless it exits 0. Returns stdout. */
export async function sh(script: string, options: Partial<ProcessOptions> = {}): Promise<string> {
  const r = await run(['sh', '-c', script], options);
  if (r.exitCode !== 0) throw new Error(`sh -c ${JSON.stringify(script)}: exit ${r.exitCode} signal ${r.signal}: ${r.err}`);
  return r.out;
}

/** The error Container.start throws for these options (fails the test when it starts). */
export function startError(options: ProcessOptions): NsboxError {
  let c: Container;
  try {
    c = Container.start(options);
  } catch (e) {
    if (!(e instanceof NsboxError)) throw new Error(`expected an NsboxError, got ${String(e)}`);
    return e;
  }
  c.kill('SIGKILL');
  throw new Error(`Container.start(${JSON.stringify(options.command)}) started pid ${c.pid}`);
}

/** Whether any regular file under `dir` (symlinks not followed) holds `text`. */
export function treeContains(dir: string, text: string): boolean {
  const r = spawnSync('grep', ['-r', '-q', '-F', text, dir]);
  if (r.status === 0) return true;
  if (r.status === 1) return false;
  throw new Error(`grep -r ${dir}: status ${r.status} ${r.stderr}`);
}

export function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** A process's state letter (R, S, Z, ...) and parent, or null once it is gone (src/proc.ts reads it). */
export function procState(pid: number): { state: string; ppid: number } | null {
  return processState(pid) ?? null;
}

/** A process that has exited, reaped or not: one read of /proc, so it cannot race the exit. */
export function processEnded(pid: number): boolean {
  const s = procState(pid);
  return s === null || s.state === 'Z';
}

/** Children of `pid` (default: this process) in Z state: exited, never reaped. */
export function zombies(pid = process.pid): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = procState(Number(entry));
    if (s && s.ppid === pid && s.state === 'Z') out.push(Number(entry));
  }
  return out;
}

/** Host mounts at or under the fixture rootfs: where a container's mounts would leak to. */
export function rootfsMounts(): string[] {
  return hostMounts().filter((m) => m === ROOTFS || m.startsWith(`${ROOTFS}/`));
}

export interface Snapshot {
  fds: string[];
  children: number[];
  mounts: string[];
}

/** fds, children and rootfs mounts of this process, to compare before and after. */
export function snapshot(): Snapshot {
  return { fds: openFds(), children: childPids(), mounts: rootfsMounts() };
}

export async function until(what: string, cond: () => boolean, timeoutMs = 5000, stepMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Compiled entry points for node subprocesses (`npm test` runs tsc first). */
export function distModule(name: 'container' | 'errors' | 'fsbatch'): string {
  const js = path.resolve(__dirname, `../dist/${name}.js`);
  const ts = path.resolve(__dirname, `../src/${name}.ts`);
  if (!existsSync(js) || statSync(js).mtimeMs < statSync(ts).mtimeMs) {
    throw new Error(`${js} is missing or older than ${ts}: run \`npx tsc -p .\` first`);
  }
  return js;
}

export interface NodeResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node -e SCRIPT` (through `bash -c PRELUDE; exec node ...` when a prelude is given,
 * so that the shell's redirections are inherited). NSBOX_DIST in the script's environment
 * names dist/container.js, NSBOX_ROOTFS the fixture.
 */
export function runNode(script: string, opts: { prelude?: string; timeoutMs?: number } = {}): Promise<NodeResult> {
  const env = { ...process.env, NSBOX_DIST: distModule('container'), NSBOX_ROOTFS: ROOTFS };
  const child = opts.prelude
    ? spawnProcess('bash', ['-c', `${opts.prelude}\nexec "$0" -e "$1"`, process.execPath, script], { env })
    : spawnProcess(process.execPath, ['-e', script], { env });
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The uid bases `stateDir`'s containers claim in the host-wide claims directory (userns 'auto'). */
export function claimsOf(stateDir: string, dir = claimsDir()): number[] {
  const me = realpathSync(stateDir);
  const out: number[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    let target: string;
    try {
      target = readlinkSync(path.join(dir, n));
    } catch {
      continue;
    }
    const c = parseClaim(n, target);
    if (c?.stateDir === me) out.push(c.uidBase);
  }
  return out.sort((a, b) => a - b);
}
