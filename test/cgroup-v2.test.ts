// cgroup v2 mechanics on the real kernel, on this machine's unified hierarchy (hybrid host:
// v1 controllers, /sys/fs/cgroup/unified without any): the container is born in its own v2
// directory (clone3 + CLONE_INTO_CGROUP) with no moment outside, cgroup.kill (and the kill
// loop without it) ends every process of a container that ignores SIGTERM and forks, the
// directory goes once cgroup.events says populated 0, prune removes what a SIGKILLed
// supervisor left, and limits asked of a v2 hierarchy without the controller fail naming it.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { pruneStaleCgroups } from '../src/cgroup';
import { detectCgroupMode, enableControllers, killAndRemove } from '../src/cgroup-v2';
import { Container, type ProcessOptions } from '../src/container';
import { NsboxError } from '../src/errors';
import { processAlive, processStartTime } from '../src/proc';
import { ROOTFS, collect, distModule, snapshot, until } from './helpers';

const host = detectCgroupMode(readFileSync('/proc/self/mountinfo', 'utf8'), readFileSync('/proc/self/cgroup', 'utf8'));
const unified = host.unified!;
const own = path.join(unified.mount, unified.path);
const nsboxV2 = path.join(own, 'nsbox');

const start = (command: string[], extra: Partial<ProcessOptions> = {}) =>
  Container.start({ root: { type: 'bind', path: ROOTFS }, command, stdio: ['ignore', 'pipe', 'pipe'], ...extra });

/** The v2 cgroup of a host pid, as a path under the hierarchy's mount. */
function v2CgroupOf(pid: number): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('0::'))!;
  return path.join(unified.mount, line.slice(3));
}

/** nsbox's container directories in the v2 hierarchy. */
function v2Dirs(parent = nsboxV2): string[] {
  if (!existsSync(parent)) return [];
  return readdirSync(parent)
    .filter((n) => /^[0-9a-f]{12}$/.test(n))
    .sort();
}

/**
 * A parent directory of this test's own (NSBOX_CGROUP_V2_PARENT), beside the shared nsbox/:
 * what is left in it is this test's, whoever else runs containers on the host meanwhile.
 */
function privateParent(name: string): string {
  const parent = path.join(path.dirname(nsboxV2), `nsbox-test-${name}-${process.pid}`);
  mkdirSync(parent);
  process.env.NSBOX_CGROUP_V2_PARENT = parent;
  return parent;
}

const saved = { ...process.env };
afterEach(() => {
  for (const k of ['NSBOX_CGROUP_V2', 'NSBOX_CGROUP_V2_PARENT', 'NSBOX_CGROUP_V2_KILL']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

describe('cgroup v2 on this host', () => {
  it("this machine is hybrid, and its v2 hierarchy has none of the limits' controllers (what these tests assume)", () => {
    expect(host.mode).toBe('hybrid');
    const controllers = readFileSync(path.join(unified.mount, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
    for (const c of ['memory', 'pids', 'cpu', 'cpuset']) expect(controllers).not.toContain(c);
  });

  it('the container is born in nsbox/<id> of the v2 hierarchy, and its cgroup namespace is rooted there', async () => {
    const c = start(['sh', '-c', 'grep ^0:: /proc/self/cgroup; sleep 0.2']);
    const out = collect(c.stdout);
    // Right after start returns: nsbox-init (its first process) is in its own directory.
    const dir = v2CgroupOf(c.pid);
    expect(path.dirname(dir)).toBe(nsboxV2);
    expect(path.basename(dir)).toMatch(/^[0-9a-f]{12}$/);
    expect(readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')).toContain(String(c.pid));
    expect(await c.wait()).toMatchObject({ exitCode: 0 });
    // Inside, its own directory is the root: the host's layout is not visible.
    expect((await out).trim()).toBe('0::/');
    // Removed once populated went to 0 (only its own: nsbox/ is shared with every other
    // nsbox user on the host, test files running beside this one included).
    expect(existsSync(dir)).toBe(false);
  });

  it('there is no moment outside: a container born into a frozen parent is frozen before its first step', async () => {
    // A parent of our own (NSBOX_CGROUP_V2_PARENT), frozen: whatever is born below it is
    // frozen before it runs a single instruction. A process cloned outside and moved in
    // later would have run its first step (unshare of its cgroup namespace) before the move.
    const parent = path.join(own, `nsbox-born-${process.pid}`);
    mkdirSync(parent);
    const report = path.join(mkdtempSync(path.join(tmpdir(), 'nsbox-v2born-')), 'report');
    try {
      writeFileSync(path.join(parent, 'cgroup.freeze'), '1');
      process.env.NSBOX_CGROUP_V2_PARENT = parent;
      // Container.start blocks this thread until the child reports, so a separate process
      // looks at the frozen child and then thaws it (after 3 s at the latest, whatever it saw).
      const script = `
        P="$1"; i=0; d=
        while [ $i -lt 300 ]; do
          for x in "$P"/*/; do grep -q . "$x/cgroup.procs" 2>/dev/null && d="$x"; done
          [ -n "$d" ] && break; sleep 0.01; i=$((i+1))
        done
        sleep 0.2
        if [ -n "$d" ]; then
          pid=$(head -n1 "$d/cgroup.procs")
          echo "pid=$pid"
          echo "cgroup=$(grep '^0::' /proc/$pid/cgroup)"
          echo "cgroupns=$(readlink /proc/$pid/ns/cgroup)"
          echo "syscall=$(cut -d' ' -f1 /proc/$pid/syscall)"
          echo "events=$(tr '\\n' ' ' < "$d/cgroup.events")"
        fi
        echo 0 > "$P/cgroup.freeze"`;
      const helper = spawn('sh', ['-c', `(${script}) > ${report}`, 'sh', parent], { stdio: 'ignore' });
      const helperDone = new Promise((r) => helper.on('close', r));
      const c = start(['true']);
      await c.wait();
      await helperDone;
      const seen = Object.fromEntries(
        readFileSync(report, 'utf8')
          .trim()
          .split('\n')
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
      expect(Number(seen.pid)).toBe(c.pid);
      expect(seen.cgroup).toMatch(new RegExp(`^0::${path.join(unified.path, path.basename(parent))}/[0-9a-f]{12}$`));
      expect(seen.events).toMatch(/populated 1/);
      expect(seen.events).toMatch(/frozen 1/);
      // Still in the supervisor's cgroup namespace: not even its first step had run.
      expect(seen.cgroupns).toBe(readlinkSync('/proc/self/ns/cgroup'));
      // And no system call of its own: the one it is in is the clone3 it was born from (a
      // child cloned outside that joined as its first step would be in a write).
      if (process.arch === 'x64') expect(seen.syscall).toBe('435');
      expect(v2Dirs(parent)).toEqual([]);
    } finally {
      writeFileSync(path.join(parent, 'cgroup.freeze'), '0');
      rmdirSync(parent);
      rmSync(path.dirname(report), { recursive: true, force: true });
    }
  });

  for (const mode of ['cgroup.kill', 'kill loop'] as const) {
    it(`${mode} ends a container whose processes ignore SIGTERM and keep forking; populated 0, then nothing left`, async () => {
      if (mode === 'kill loop') process.env.NSBOX_CGROUP_V2_KILL = 'loop';
      const before = snapshot();
      const c = start(['sh', '-c', 'trap "" TERM; for i in 1 2 3; do (trap "" TERM; while :; do sleep 1000 & sleep 0.01; done) & done; echo up; wait']);
      const out = collect(c.stdout);
      const dir = v2CgroupOf(c.pid);
      await until('forks', () => readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').trim().split('\n').length > 10);
      // Each process as pid and start time: a pid may be reused by then, on a busy host.
      const procs = readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
        .trim()
        .split('\n')
        .map((p) => [Number(p), processStartTime(Number(p))] as const);
      await killAndRemove(dir);
      expect(existsSync(dir)).toBe(false);
      // Dead: gone, or a zombie (nsbox-init, until this process reaps it). populated goes to 0
      // as the last one starts its exit, so give the exits a moment to finish.
      const alive = () => procs.filter(([p, t]) => processAlive(p, t));
      await until('the killed processes to finish exiting', () => alive().length === 0, 2000).catch(() => {});
      expect(alive()).toEqual([]);
      // nsbox-init was killed with the rest: the verdict says SIGKILL.
      expect(await c.wait()).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
      expect(await out).toBe('up\n');
      expect(snapshot()).toEqual(before);
    });
  }

  it('usage comes from cpu.stat: CPU of processes nsbox-init never reaped is counted', async () => {
    // The command leaves a busy loop behind; the kernel kills it when nsbox-init exits, and
    // no getrusage of nsbox-init's ever sees it.
    const script = 'sh -c "while :; do :; done" & sleep 0.5; exit 0';
    const tracked = await start(['sh', '-c', script]).wait();
    process.env.NSBOX_CGROUP_V2 = 'off';
    const untracked = await start(['sh', '-c', script]).wait();
    const cpu = (s: typeof tracked) => s.usage.cpuUserMs + s.usage.cpuSystemMs;
    // Half a second of a busy loop, on a host shared with others: some tens of ms at least,
    // several times what nsbox-init's rusage saw without the v2 cgroup.
    expect(cpu(tracked)).toBeGreaterThan(40);
    expect(cpu(untracked)).toBeLessThan(cpu(tracked) / 3);
  });

  it('a container killed from outside (timeout) still has its CPU time, from cpu.stat', async () => {
    const status = await start(['sh', '-c', 'while :; do :; done'], { timeout: 400 }).wait();
    expect(status).toMatchObject({ timedOut: true, signal: 'SIGKILL' });
    // nsbox-init was killed before it could report any rusage: this is the cgroup's count.
    expect(status.usage.cpuUserMs + status.usage.cpuSystemMs).toBeGreaterThan(30);
  });

  it("a SIGKILLed supervisor's v2 cgroup is removed by prune", async () => {
    const supervisor = spawn(
      process.execPath,
      [
        '-e',
        `
      const { Container } = require(process.env.NSBOX_DIST);
      const c = Container.start({ root: { type: 'bind', path: process.env.NSBOX_ROOTFS }, command: ['sleep', '1000'], stdio: ['ignore', 'ignore', 'ignore'] });
      const line = require('fs').readFileSync('/proc/' + c.pid + '/cgroup', 'utf8').split('\\n').find((l) => l.startsWith('0::'));
      console.log(c.pid + ' ' + line.slice(3));
      setInterval(() => {}, 1000);
    `,
      ],
      { env: { ...process.env, NSBOX_DIST: distModule('container'), NSBOX_ROOTFS: ROOTFS }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const closed = new Promise((r) => supervisor.on('close', r));
    const line = await new Promise<string>((resolve) => supervisor.stdout.once('data', (d: Buffer) => resolve(String(d))));
    const [pid, rel] = line.trim().split(' ') as [string, string];
    const dir = path.join(unified.mount, rel);
    expect(path.dirname(dir)).toBe(nsboxV2);
    supervisor.kill('SIGKILL');
    await closed;
    // nsbox-init dies with its supervisor (parent-death signal); the directory stays behind.
    await until('the container to die', () => !existsSync(`/proc/${pid}`));
    expect(existsSync(dir)).toBe(true);
    // A fresh empty directory may be a start in progress: not removed yet.
    expect(pruneStaleCgroups()).not.toContain(dir);
    expect(pruneStaleCgroups(Date.now() + 120_000)).toContain(dir);
    expect(existsSync(dir)).toBe(false);
  });

  it('limits asked of a v2 hierarchy without the controller fail naming it, with nothing left behind', () => {
    process.env.NSBOX_CGROUP_V2 = 'limits';
    const before = snapshot();
    const parent = privateParent('limits');
    const v1Dirs = readdirSync('/sys/fs/cgroup/memory/').length;
    for (const [limits, controller] of [
      [{ memory: '64m' }, 'memory'],
      [{ pids: 10 }, 'pids'],
      [{ cpus: 0.5 }, 'cpu'],
      [{ cpuset: '0' }, 'cpuset'],
    ] as const) {
      let err: unknown;
      try {
        start(['true'], { limits });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).message).toContain(`no ${controller} controller in cgroup v2`);
      expect((err as NsboxError).path).toBe(controller);
    }
    expect(v2Dirs(parent)).toEqual([]);
    rmdirSync(parent);
    expect(readdirSync('/sys/fs/cgroup/memory/').length).toBe(v1Dirs);
    expect(snapshot()).toEqual(before);
  });

  it("v2's no-internal-process rule: a controller is not enabled below a cgroup holding processes; the error names it", async () => {
    // hugetlb is the one controller this machine's v2 hierarchy has: the rule for real.
    const rootControllers = readFileSync(path.join(unified.mount, 'cgroup.controllers'), 'utf8');
    if (!rootControllers.includes('hugetlb') || unified.path !== '/') return;
    const rootHad = readFileSync(path.join(unified.mount, 'cgroup.subtree_control'), 'utf8').includes('hugetlb');
    const parent = path.join(own, `nsbox-rule-${process.pid}`);
    mkdirSync(parent);
    const sleeper = spawn('sleep', ['1000'], { stdio: 'ignore' });
    try {
      writeFileSync(path.join(parent, 'cgroup.procs'), String(sleeper.pid));
      let err: unknown;
      try {
        enableControllers([own, parent], new Set(['hugetlb']));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).code).toBe('EBUSY');
      expect((err as NsboxError).path).toBe('hugetlb');
      expect((err as NsboxError).message).toMatch(/cannot enable the hugetlb controller .* holds processes/);
      expect(readFileSync(path.join(parent, 'cgroup.subtree_control'), 'utf8').trim()).toBe('');
      // Empty, the same parent takes it.
      sleeper.kill('SIGKILL');
      await until('the sleeper to leave', () => readFileSync(path.join(parent, 'cgroup.procs'), 'utf8').trim() === '');
      enableControllers([own, parent], new Set(['hugetlb']));
      expect(readFileSync(path.join(parent, 'cgroup.subtree_control'), 'utf8').trim()).toBe('hugetlb');
    } finally {
      sleeper.kill('SIGKILL');
      await until('the sleeper to leave', () => readFileSync(path.join(parent, 'cgroup.procs'), 'utf8').trim() === '');
      try {
        writeFileSync(path.join(parent, 'cgroup.subtree_control'), '-hugetlb');
      } catch {
        // never enabled
      }
      rmdirSync(parent);
      if (!rootHad) writeFileSync(path.join(unified.mount, 'cgroup.subtree_control'), '-hugetlb');
    }
  });

  it('with v2 limits forced, a start that needs no controller works there (cpuTime from cpu.stat)', async () => {
    process.env.NSBOX_CGROUP_V2 = 'limits';
    const c = start(['sh', '-c', 'while :; do :; done'], { limits: { cpuTime: 0.3 } });
    expect(path.dirname(v2CgroupOf(c.pid))).toBe(nsboxV2);
    const status = await c.wait();
    expect(status.cpuTimeExceeded).toBe(true);
    expect(status.usage.cpuUserMs + status.usage.cpuSystemMs).toBeGreaterThanOrEqual(300);
  });

  it('leaves no v2 directory after many runs', async () => {
    const parent = privateParent('runs');
    for (let i = 0; i < 50; i++) await start(['true']).wait();
    expect(v2Dirs(parent)).toEqual([]);
    rmdirSync(parent);
  });
});
