// Sandbox bounds (issue 11) on the real kernel: limits hold for the whole process tree, a
// verdict tells OOM from timeout from a plain exit, and a limit that cannot be applied fails
// the run with nothing left behind. This machine has cgroup v1 controllers.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import * as path from 'node:path';

import { afterAll, beforeEach, describe, expect, it } from 'vitest';

import { pruneStaleCgroups } from '../src/cgroup';
import { drainWarmCgroups, warmCgroupDirs } from '../src/cgroup-pool';
import { Container, type ProcessOptions } from '../src/container';
import { ROOTFS, collect, distModule, openFds, run, snapshot, until } from './helpers';

const start = (command: string[], extra: Partial<ProcessOptions> = {}) =>
  Container.start({ root: { type: 'bind', path: ROOTFS }, command, stdio: ['ignore', 'pipe', 'pipe'], ...extra });

/** nsbox/<12 hex> cgroup directories of every controller: containers' own cgroups. */
function containerCgroups(): string[] {
  const out: string[] = [];
  for (const c of readdirSync('/sys/fs/cgroup')) {
    const dir = path.join('/sys/fs/cgroup', c, 'nsbox');
    if (!existsSync(dir)) continue;
    for (const d of readdirSync(dir)) if (/^[0-9a-f]{12}$/.test(d)) out.push(path.join(dir, d));
  }
  return out.sort();
}

/**
 * No container cgroup appeared since `before` that stays: nsbox/ is shared by every nsbox on
 * this host (other test files, other checkouts), whose short-lived containers come and go; a
 * leaked directory stays for good.
 */
async function noNewCgroups(before: string[]): Promise<void> {
  const had = new Set(before);
  const fresh = () => containerCgroups().filter((d) => !had.has(d));
  await until(`no new container cgroup (${fresh().join(', ')})`, () => fresh().length === 0, 3000);
}

/**
 * Processes in the host's process table that belong to the pid namespace `ns` (a link text
 * such as 'pid:[4026532]'): what a container adds to the host, whatever other work runs on
 * the machine meanwhile (a host-wide count moved with every other test file).
 */
function processesInNamespace(ns: string): number {
  let n = 0;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readlinkSync(`/proc/${e}/ns/pid`) === ns) n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

describe('limits', () => {
  it('a fork bomb is held at limits.pids, and the host keeps its process count', async () => {
    const c = start(['sh', '-c', 'b() { b | b & }; b; sleep 2; echo survived'], { limits: { pids: 32 } });
    const ns = readlinkSync(`/proc/${c.pid}/ns/pid`);
    const out = collect(c.stdout);
    let peak = 0;
    const timer = setInterval(() => (peak = Math.max(peak, processesInNamespace(ns))), 20);
    const status = await c.wait();
    clearInterval(timer);
    // The whole container, nsbox-init included, never had more than 32 processes in the
    // host's table (the kernel's own count, pids.peak, is checked in the warm-set case below).
    expect(peak).toBeLessThanOrEqual(32);
    expect(peak).toBeGreaterThan(1);
    expect(status.exitCode).toBe(0);
    expect(await out).toContain('survived');
  });

  it('a memory hog is OOM-killed: oomKilled, signal SIGKILL, memory peak at the limit', async () => {
    const status = await start(['sh', '-c', 'x=a; while :; do x="$x$x"; done'], { limits: { memory: '16m' } }).wait();
    expect(status).toMatchObject({ exitCode: null, signal: 'SIGKILL', oomKilled: true, timedOut: false });
    expect(status.usage.memoryPeakBytes).toBeGreaterThan(8 * 1024 * 1024);
    expect(status.usage.memoryPeakBytes).toBeLessThanOrEqual(16 * 1024 * 1024);
    // A plain exit under a memory limit is not an OOM.
    expect(await start(['true'], { limits: { memory: '16m' } }).wait()).toMatchObject({ exitCode: 0, oomKilled: false });
  });

  it('cpus: 0.5 gives about half a CPU over a second and a half', async () => {
    const status = await start(['sh', '-c', 'timeout 1.5 sh -c "while :; do :; done"; true'], { limits: { cpus: 0.5 } }).wait();
    const cpu = status.usage.cpuUserMs + status.usage.cpuSystemMs;
    // The bound is the point; the floor only shows it ran (other test files share the CPUs).
    expect(cpu / status.usage.wallMs).toBeGreaterThan(0.2);
    expect(cpu / status.usage.wallMs).toBeLessThan(0.65);
  });

  it("cpuset: '0' is the only CPU the container may use", async () => {
    expect((await run(['grep', 'Cpus_allowed_list', '/proc/self/status'], { limits: { cpuset: '0' } })).out).toMatch(/^Cpus_allowed_list:\s+0$/m);
  });

  it('timeout kills a container that ignores SIGTERM, and says timedOut', async () => {
    const t0 = Date.now();
    const status = await start(['sh', '-c', "trap '' TERM; sleep 30"], { timeout: 300 }).wait();
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(status).toMatchObject({ signal: 'SIGKILL', timedOut: true, aborted: false, oomKilled: false });
  });

  it('an AbortSignal kills the whole container, and says aborted', async () => {
    const ac = new AbortController();
    const c = start(['sh', '-c', 'sleep 30 & sleep 30'], { signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    expect(await c.wait()).toMatchObject({ signal: 'SIGKILL', aborted: true, timedOut: false });
    const aborted = new AbortController();
    aborted.abort();
    expect(() => start(['true'], { signal: aborted.signal })).toThrow(/aborted before it started/);
  });

  it('cpuTime bounds the CPU seconds of the whole tree', async () => {
    // Two busy processes: each alone stays under the bound, together they pass it.
    const status = await start(['sh', '-c', 'sh -c "while :; do :; done" & sh -c "while :; do :; done"'], { limits: { cpuTime: 0.3 } }).wait();
    expect(status).toMatchObject({ signal: 'SIGKILL', cpuTimeExceeded: true });
    expect(status.usage.wallMs).toBeLessThan(5000);
  });

  it('rlimits are defined, not inherited from the supervisor: no core dumps, 1024 open files', async () => {
    expect((await run(['sh', '-c', 'ulimit -c; ulimit -n'])).out).toBe('0\n1024\n');
    expect((await run(['sh', '-c', 'ulimit -n; ulimit -f'], { limits: { files: 64, fileSize: '1m' } })).out).toBe('64\n2048\n');
    expect((await run(['sh', '-c', 'ulimit -n'], { ulimits: { nofile: [100, 200] } })).out).toBe('100\n');
  });

  it('usage says what the command used', async () => {
    const status = await start(['sh', '-c', 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done']).wait();
    expect(status.usage.cpuUserMs + status.usage.cpuSystemMs).toBeGreaterThan(20);
    expect(status.usage.maxRssBytes).toBeGreaterThan(100 * 1024);
    expect(status.usage.wallMs).toBeGreaterThan(status.usage.cpuUserMs * 0.5);
  });

  it('a limit that cannot be applied fails the start, naming the controller, with nothing left', async () => {
    const before = snapshot();
    const cgroups = containerCgroups();
    // No CPU 99 on this machine: the cpuset controller refuses it.
    expect(() => start(['true'], { limits: { cpuset: '99', memory: '64m' } })).toThrow(/cgroup controller cpuset/);
    expect(() => start(['true'], { limits: { memory: 'lots' } })).toThrow(/limits.memory/);
    expect(() => start(['true'], { limits: { memroy: '1m' } as never })).toThrow(/unknown limit/);
    await noNewCgroups(cgroups);
    expect(snapshot()).toEqual(before);
  });

  it('leaves no container cgroup behind after many runs with limits', async () => {
    const cgroups = containerCgroups();
    for (let i = 0; i < 20; i++) await start(['true'], { limits: { memory: '32m', pids: 16, cpus: 1 } }).wait();
    await noNewCgroups(cgroups);
  });

  it('the CLI: -m, --pids-limit, --timeout; exit 137 and a line saying why', () => {
    const main = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
    const root = execFileSync('mktemp', ['-d']).toString().trim();
    try {
      const oom = spawnSync(process.execPath, [main, '--root', root, 'run', '--rm', '-m', '16m', 'busybox', 'sh', '-c', 'x=a; while :; do x="$x$x"; done'], {
        encoding: 'utf8',
      });
      expect(oom.status).toBe(137);
      expect(oom.stderr).toBe('nsbox: the container was killed: it ran out of memory (--memory)\n');
      // Kept, it says why in ps, as docker does.
      spawnSync(process.execPath, [main, '--root', root, 'run', '--name', 'hog', '-m', '16m', 'busybox', 'sh', '-c', 'x=a; while :; do x="$x$x"; done']);
      expect(spawnSync(process.execPath, [main, '--root', root, 'ps', '-a'], { encoding: 'utf8' }).stdout).toMatch(/hog.*Exited \(137, OOM\)/);
      const slow = spawnSync(process.execPath, [main, '--root', root, 'run', '--rm', '--timeout', '200ms', 'busybox', 'sleep', '30'], { encoding: 'utf8' });
      expect(slow.status).toBe(137);
      expect(slow.stderr).toBe('nsbox: the container was killed: its --timeout passed\n');
      const pids = spawnSync(
        process.execPath,
        [
          main,
          '--root',
          root,
          'run',
          '--rm',
          '--pids-limit',
          '8',
          '--ulimit',
          'nofile=50',
          'busybox',
          'sh',
          '-c',
          'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null; ulimit -n',
        ],
        { encoding: 'utf8' },
      );
      expect(pids.stdout).toMatch(/50\n$/);
      expect(readFileSync('/proc/self/cgroup', 'utf8')).toBeTruthy();
    } finally {
      execFileSync('rm', ['-rf', root]);
    }
  });
});

/** Every nsbox/ child directory in every v1 hierarchy (warm sets and containers' own). */
function nsboxDirs(): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 6 || !existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      const p = path.join(dir, e.name);
      if (e.name === 'nsbox') {
        for (const d of readdirSync(p, { withFileTypes: true })) if (d.isDirectory() && d.name !== 'std') out.push(path.join(p, d.name));
      } else {
        walk(p, depth + 1);
      }
    }
  };
  for (const c of readdirSync('/sys/fs/cgroup')) if (c !== 'unified') walk(path.join('/sys/fs/cgroup', c), 0);
  return out.sort();
}

const ours = (dirs: string[], pid = process.pid) => dirs.filter((d) => path.basename(d).startsWith(`warm-${pid}-`));

/** The container's own directory in a v1 hierarchy, from /proc/PID/cgroup. */
function cgroupOf(pid: number, controller: string): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => l.split(':')[1]!.split(',').includes(controller))!;
  return path.join('/sys/fs/cgroup', controller, line.split(':')[2]!);
}

const inode = (p: string) => statSync(p).ino;

/** Two starts of a shape, one after the other: the second makes its pool (the first none). */
async function prime(limits: NonNullable<ProcessOptions['limits']>): Promise<void> {
  for (let i = 0; i < 2; i++) expect((await start(['true'], { limits }).wait()).exitCode).toBe(0);
}

/** Waits until `n` warm sets of this process are ready; returns each directory's inode. */
async function warmInodes(n: number): Promise<Map<number, string>> {
  await until(`${n} warm sets`, () => new Set(warmCgroupDirs().map((d) => path.basename(d))).size >= n);
  return new Map(warmCgroupDirs().map((d) => [inode(d), d]));
}

// Warm cgroup sets (src/cgroup-pool.ts): a container given a set made ahead of time is
// bounded exactly as one whose cgroups were made for it, with its own values (never the ones
// the set was prepared with); two at once never share one; a SIGKILLed supervisor's sets go
// with prune; nothing is left behind.
describe('limits: warm cgroup sets', () => {
  // Each test starts with no pool, so that the sets it waits for are of its own shape.
  beforeEach(() => drainWarmCgroups());
  afterAll(() => drainWarmCgroups());

  it('a container born in a warm set is held at its own pids limit against a fork bomb, not the set’s', async () => {
    // The first start of this shape makes its own cgroups, then the pool (with pids.max 64).
    await prime({ pids: 64 });
    const warm = await warmInodes(1);
    const c = start(['sh', '-c', 'b() { b | b & }; b; sleep 2; echo survived'], { limits: { pids: 16 } });
    const dir = cgroupOf(c.pid, 'pids');
    // The very directory made ahead, renamed to the container: the set was used.
    expect(warm.has(inode(dir))).toBe(true);
    expect(path.basename(dir)).toMatch(/^[0-9a-f]{12}$/);
    expect(readFileSync(path.join(dir, 'pids.max'), 'utf8').trim()).toBe('16');
    const out = collect(c.stdout);
    // The kernel's own count for the container's cgroup (other test files' processes do not
    // blur it): the bomb reached the limit, was refused beyond it, and never passed it.
    await new Promise((r) => setTimeout(r, 1000));
    const peak = Number(readFileSync(path.join(dir, 'pids.peak'), 'utf8'));
    expect(peak).toBeLessThanOrEqual(16);
    expect(peak).toBeGreaterThanOrEqual(12);
    expect(Number(/max (\d+)/.exec(readFileSync(path.join(dir, 'pids.events'), 'utf8'))![1])).toBeGreaterThan(0);
    const status = await c.wait();
    expect(status.exitCode).toBe(0);
    expect(await out).toContain('survived');
    expect(existsSync(dir)).toBe(false);
  });

  it('memory limits lowered and raised against a set’s values: the OOM comes at the container’s own', async () => {
    await prime({ memory: '96m' });
    await warmInodes(1);
    // Lower than the set was made with: memory first, then memory+swap.
    const hog = await start(['sh', '-c', 'x=a; while :; do x="$x$x"; done'], { limits: { memory: '16m' } }).wait();
    expect(hog).toMatchObject({ signal: 'SIGKILL', oomKilled: true });
    expect(hog.usage.memoryPeakBytes).toBeLessThanOrEqual(16 * 1024 * 1024);
    // Sets are now made with 16m; higher again: memory+swap is lifted before memory.
    await warmInodes(1);
    const c = start(['sh', '-c', 'sleep 0.3'], { limits: { memory: '128m' } });
    const dir = cgroupOf(c.pid, 'memory');
    expect(Number(readFileSync(path.join(dir, 'memory.limit_in_bytes'), 'utf8'))).toBe(128 * 1024 * 1024);
    expect(Number(readFileSync(path.join(dir, 'memory.memsw.limit_in_bytes'), 'utf8'))).toBe(128 * 1024 * 1024);
    expect(await c.wait()).toMatchObject({ exitCode: 0, oomKilled: false });
  });

  it('two limited containers at once get distinct sets, each with its own values', async () => {
    const limits = (pids: number, mem: number) => ({ pids, memory: `${mem}m`, cpus: 0.5 });
    await prime(limits(64, 64));
    const warm = await warmInodes(2);
    const a = start(['sleep', '1'], { limits: limits(10, 32) });
    const b = start(['sleep', '1'], { limits: limits(20, 48) });
    for (const [c, pids, mem] of [
      [a, 10, 32],
      [b, 20, 48],
    ] as const) {
      const p = cgroupOf(c.pid, 'pids');
      const m = cgroupOf(c.pid, 'memory');
      expect(warm.has(inode(p)) && warm.has(inode(m))).toBe(true);
      expect(readFileSync(path.join(p, 'pids.max'), 'utf8').trim()).toBe(String(pids));
      expect(Number(readFileSync(path.join(m, 'memory.limit_in_bytes'), 'utf8'))).toBe(mem * 1024 * 1024);
      expect(readFileSync(path.join(cgroupOf(c.pid, 'cpu'), 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('50000');
    }
    for (const controller of ['pids', 'memory', 'cpu']) expect(cgroupOf(a.pid, controller)).not.toBe(cgroupOf(b.pid, controller));
    await Promise.all([a.wait(), b.wait()]);
  });

  it('a limit a warm set cannot take fails the start, naming the controller, with nothing left', async () => {
    const fds = openFds();
    await prime({ cpuset: '0', memory: '64m' });
    const warm = await warmInodes(2);
    expect(() => start(['true'], { limits: { cpuset: '99', memory: '64m' } })).toThrow(/cgroup controller cpuset/);
    // The set it took, renamed to the container, is gone: what is left of the sets is idle.
    const idle = new Set(warmCgroupDirs());
    expect(idle.size).toBe(2);
    for (const d of nsboxDirs()) if (warm.has(inode(d))) expect(idle.has(d)).toBe(true);
    // The pool is not poisoned: the next start of that shape works, with its own cpuset.
    expect((await run(['grep', 'Cpus_allowed_list', '/proc/self/status'], { limits: { cpuset: '1', memory: '64m' } })).out).toMatch(
      /^Cpus_allowed_list:\s+1$/m,
    );
    await drainWarmCgroups();
    expect(openFds()).toEqual(fds);
  });

  it('a SIGKILLed supervisor’s warm sets are removed by prune; a live one’s are not', async () => {
    await prime({ pids: 64 });
    const mine = await warmInodes(1);
    const dist = path.dirname(distModule('container'));
    const script = `
      const { Container } = require(${JSON.stringify(path.join(dist, 'container.js'))});
      const pool = require(${JSON.stringify(path.join(dist, 'cgroup-pool.js'))});
      (async () => {
        for (let i = 0; i < 2; i++) await Container.start({ root: { type: 'bind', path: ${JSON.stringify(ROOTFS)} }, command: ['true'], stdio: 'ignore', limits: { pids: 32, memory: '32m' } }).wait();
        while (pool.warmCgroupDirs().length < 4) await new Promise((r) => setTimeout(r, 10));
        console.log(JSON.stringify(pool.warmCgroupDirs()));
        setInterval(() => {}, 1000);
      })();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d;
        if (out.includes('\n')) resolve(out);
      });
    });
    const theirs = JSON.parse(line) as string[];
    expect(ours(nsboxDirs(), child.pid)).toEqual([...theirs].sort());
    // Alive: prune leaves them.
    pruneStaleCgroups();
    expect(theirs.every((d) => existsSync(d))).toBe(true);
    child.kill('SIGKILL');
    await new Promise((r) => child.on('close', r));
    const removed = pruneStaleCgroups();
    expect(removed).toEqual(expect.arrayContaining(theirs));
    expect(theirs.some((d) => existsSync(d))).toBe(false);
    // This process's own sets are untouched.
    expect([...mine.values()].every((d) => existsSync(d))).toBe(true);
  });

  it('one limited start makes no pool; a supervisor that exits takes its warm sets with it', async () => {
    await start(['true'], { limits: { pids: 40 } }).wait();
    await new Promise((r) => setTimeout(r, 100));
    expect(warmCgroupDirs()).toEqual([]);
    expect(ours(nsboxDirs())).toEqual([]);
    const dist = path.dirname(distModule('container'));
    const script = `
      const { Container } = require(${JSON.stringify(path.join(dist, 'container.js'))});
      const pool = require(${JSON.stringify(path.join(dist, 'cgroup-pool.js'))});
      (async () => {
        for (let i = 0; i < 2; i++) await Container.start({ root: { type: 'bind', path: ${JSON.stringify(ROOTFS)} }, command: ['true'], stdio: 'ignore', limits: { pids: 32 } }).wait();
        while (pool.warmCgroupDirs().length < 2) await new Promise((r) => setTimeout(r, 10));
        console.log(JSON.stringify(pool.warmCgroupDirs()));
      })();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    expect(await new Promise((r) => child.on('close', r))).toBe(0);
    const theirs = JSON.parse(out) as string[];
    expect(theirs.length).toBe(2);
    expect(theirs.filter((d) => existsSync(d))).toEqual([]);
  });

  it('leaves nothing behind: no cgroup directory, thread or fd after many limited starts and a drain', async () => {
    // Warm up what lives for the process (the spawner thread, libuv's pool, nsbox-init's memfd).
    await prime({ pids: 8 });
    await warmInodes(1);
    await drainWarmCgroups();
    const threads = () => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
    const fds = openFds();
    const t0 = threads();
    const used = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const limits = i % 3 === 0 ? { pids: 8 + i } : i % 3 === 1 ? { memory: `${32 + i}m`, cpus: 1 } : { pids: 8, memory: '32m', cpus: 0.5 };
      const both = [start(['sleep', '0.2'], { limits }), start(['sleep', '0.2'], { limits })];
      for (const c of both) for (const k of Object.keys(limits)) used.add(cgroupOf(c.pid, k === 'cpus' ? 'cpu' : k));
      for (const c of both) expect((await c.wait()).exitCode).toBe(0);
    }
    // 10 × 2 containers with one directory each, 10 × 2 with two, 10 × 2 with three: all distinct.
    expect(used.size).toBe(120);
    expect(ours(nsboxDirs()).length).toBeGreaterThan(0);
    await drainWarmCgroups();
    // Every container's directories went when it ended; every warm set with the drain.
    expect([...used].filter((d) => existsSync(d))).toEqual([]);
    expect(ours(nsboxDirs())).toEqual([]);
    expect(openFds()).toEqual(fds);
    expect(threads()).toBe(t0);
  });
});
