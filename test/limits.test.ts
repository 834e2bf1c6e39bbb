// Sandbox bounds (issue 11) on the real kernel: limits hold for the whole process tree, a
// verdict tells OOM from timeout from a plain exit, and a limit that cannot be applied fails
// the run with nothing left behind. This machine has cgroup v1 controllers.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import { Container, type ProcessOptions } from '../src/container';
import { ROOTFS, collect, run, snapshot } from './helpers';

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

function hostProcessCount(): number {
  return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).length;
}

describe('limits', () => {
  it('a fork bomb is held at limits.pids, and the host keeps its process count', async () => {
    const before = hostProcessCount();
    const c = start(['sh', '-c', 'b() { b | b & }; b; sleep 2; echo survived'], { limits: { pids: 32 } });
    const out = collect(c.stdout);
    let peak = 0;
    const timer = setInterval(() => (peak = Math.max(peak, hostProcessCount() - before)), 20);
    const status = await c.wait();
    clearInterval(timer);
    // The whole container, nsbox-init included, never had more than 32 processes.
    expect(peak).toBeLessThanOrEqual(34);
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
    expect(cpu / status.usage.wallMs).toBeGreaterThan(0.3);
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

  it('a limit that cannot be applied fails the start, naming the controller, with nothing left', () => {
    const before = snapshot();
    const cgroups = containerCgroups();
    // No CPU 99 on this machine: the cpuset controller refuses it.
    expect(() => start(['true'], { limits: { cpuset: '99', memory: '64m' } })).toThrow(/cgroup controller cpuset/);
    expect(() => start(['true'], { limits: { memory: 'lots' } })).toThrow(/limits.memory/);
    expect(() => start(['true'], { limits: { memroy: '1m' } as never })).toThrow(/unknown limit/);
    expect(containerCgroups()).toEqual(cgroups);
    expect(snapshot()).toEqual(before);
  });

  it('leaves no container cgroup behind after many runs with limits', async () => {
    const cgroups = containerCgroups();
    for (let i = 0; i < 20; i++) await start(['true'], { limits: { memory: '32m', pids: 16, cpus: 1 } }).wait();
    expect(containerCgroups()).toEqual(cgroups);
  });

  it('the CLI: -m, --pids-limit, --timeout; exit 137 and a line saying why', () => {
    const main = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
    const root = execFileSync('mktemp', ['-d']).toString().trim();
    try {
      const oom = spawnSync(process.execPath, [main, '--root', root, 'run', '--rm', '-m', '16m', 'busybox', 'sh', '-c', 'x=a; while :; do x="$x$x"; done'], { encoding: 'utf8' });
      expect(oom.status).toBe(137);
      expect(oom.stderr).toBe('nsbox: the container was killed: it ran out of memory (--memory)\n');
      // Kept, it says why in ps, as docker does.
      spawnSync(process.execPath, [main, '--root', root, 'run', '--name', 'hog', '-m', '16m', 'busybox', 'sh', '-c', 'x=a; while :; do x="$x$x"; done']);
      expect(spawnSync(process.execPath, [main, '--root', root, 'ps', '-a'], { encoding: 'utf8' }).stdout).toMatch(/hog.*Exited \(137, OOM\)/);
      const slow = spawnSync(process.execPath, [main, '--root', root, 'run', '--rm', '--timeout', '200ms', 'busybox', 'sleep', '30'], { encoding: 'utf8' });
      expect(slow.status).toBe(137);
      expect(slow.stderr).toBe('nsbox: the container was killed: its --timeout passed\n');
      const pids = spawnSync(process.execPath, [main, '--root', root, 'run', '--rm', '--pids-limit', '8', '--ulimit', 'nofile=50', 'busybox', 'sh', '-c', 'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null; ulimit -n'], { encoding: 'utf8' });
      expect(pids.stdout).toMatch(/50\n$/);
      expect(readFileSync('/proc/self/cgroup', 'utf8')).toBeTruthy();
    } finally {
      execFileSync('rm', ['-rf', root]);
    }
  });
});
