// What a supervisor that ends abruptly leaves. process.exit() runs no turn of the loop, so its
// 'exit' listener ends the containers itself, synchronously: killed, reaped, their cgroups
// (v1 and v2) removed, kept ones recorded as exited, --rm ones removed; detached ones are left
// running (their monitor supervises them). A SIGKILLed supervisor can run nothing: what it
// leaves (empty cgroups, records saying 'running', --rm containers) is finished by the next
// Runtime's first use, from any cgroup, touching only dead runs of its own records.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { containerCgroupDirs, recordedCgroupDirs, removeDeadCgroups } from '../src/cgroup';
import { ContainerLock } from '../src/lock';
import { newId } from '../src/layout';
import { processStartTime } from '../src/proc';
import { Runtime } from '../src/runtime';
import { processEnded, until } from './helpers';

const INDEX = path.resolve(__dirname, '../dist/index.js');
const UNIFIED_NSBOX = '/sys/fs/cgroup/unified/nsbox';

let base: string;
let root: string;

beforeAll(() => {
  if (!fs.existsSync(INDEX) || fs.statSync(INDEX).mtimeMs < fs.statSync(path.resolve(__dirname, '../src/index.ts')).mtimeMs) {
    throw new Error(`${INDEX} is missing or stale: run \`npx tsc -p .\` first`);
  }
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-exit-'));
  root = path.join(base, 'root');
});
afterAll(async () => {
  const rt = new Runtime({ root });
  for (const c of rt.list({ all: true })) await rt.remove(c.id, { force: true }).catch(() => {});
  fs.rmSync(base, { recursive: true, force: true });
});

interface Started {
  id: string;
  pid: number;
}
interface Supervisor {
  node: ChildProcessWithoutNullStreams;
  closed: Promise<[number | null, NodeJS.Signals | null]>;
  stderr: () => string;
  rm: Started;
  kept: Started;
  limited: Started;
  detached?: Started;
}

/**
 * A node process that runs three containers (`--rm`, kept, and one with memory and pids
 * limits, so that v1 directories exist) and maybe a detached one, all running `sleep 100`,
 * then waits: a line on its stdin makes it call process.exit(0) (or run `onLine`).
 */
async function supervisor(opts: { detached?: boolean; env?: Record<string, string>; onLine?: string } = {}): Promise<Supervisor> {
  const script = `
    const { Runtime } = require(process.env.NSBOX_INDEX);
    (async () => {
      const rt = new Runtime({ root: process.env.ROOT });
      const run = (o) => rt.run({ image: 'busybox', command: ['sleep', '100'], stdio: 'ignore', ...o });
      const rm = await run({ remove: true });
      const kept = await run({});
      const limited = await run({ limits: { memory: 64 * 1024 * 1024, pids: 50 } });
      const detached = ${opts.detached ? "await rt.run({ image: 'busybox', command: ['sleep', '100'], detach: true, limits: { pids: 50 } })" : 'undefined'};
      const out = (c) => c && { id: c.id, pid: c.pid };
      console.log(JSON.stringify({ rm: out(rm), kept: out(kept), limited: out(limited), detached: out(detached) }));
      process.stdin.once('data', () => { ${opts.onLine ?? 'process.exit(0)'}; });
    })().catch((e) => { console.error(e); process.exit(2); });
  `;
  const node = spawn(process.execPath, ['-e', script], {
    env: { ...process.env, NSBOX_INDEX: INDEX, ROOT: root, ...opts.env },
  });
  let stderr = '';
  node.stderr.on('data', (d: Buffer) => (stderr += d));
  const closed = new Promise<[number | null, NodeJS.Signals | null]>((r) => node.on('close', (c, s) => r([c, s])));
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    node.stdout.on('data', (d: Buffer) => {
      out += d;
      if (out.includes('\n')) resolve(out);
    });
    node.once('close', () => reject(new Error(`the supervisor ended before its containers ran: ${stderr}`)));
  });
  const ids = JSON.parse(line) as Omit<Supervisor, 'node' | 'closed' | 'stderr'>;
  return { node, closed, stderr: () => stderr, ...ids };
}

/** Host pids of every process in `pid`'s pid namespace (the container's, whose PID 1 it is). */
function processesOf(ns: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readlinkSync(`/proc/${e}/ns/pid`) === ns) out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Every cgroup directory of a container that exists now: where this process (the supervisor's parent) would make them, and where its record says. */
function cgroupDirsOf(id: string): string[] {
  const recorded = record(id)?.cgroups ?? [];
  return [...new Set([...containerCgroupDirs(id), ...recorded])].filter((d) => fs.existsSync(d)).sort();
}

function record(id: string): { status: string; exitCode: number | null; signal: string | null; cgroups?: string[] } | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(root, 'containers', id, 'container.json'), 'utf8')) as ReturnType<typeof record>;
  } catch {
    return undefined;
  }
}

const mountsUnderRoot = () =>
  fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(root));

describe('a supervisor that calls process.exit()', () => {
  it('takes its containers with it and leaves nothing: no process, no cgroup (v1 and v2), no mount, no --rm directory; kept ones recorded as exited', async () => {
    const s = await supervisor({ detached: true });
    const attached = [s.rm, s.kept, s.limited];
    const namespaces = attached.map((c) => fs.readlinkSync(`/proc/${c.pid}/ns/pid`));
    // Running: nsbox-init and sleep in each; a v2 directory each, and v1 memory and pids
    // directories for the limited one.
    for (const ns of namespaces) expect(processesOf(ns).length).toBe(2);
    const dirs = new Map(attached.map((c) => [c.id, cgroupDirsOf(c.id)]));
    for (const c of attached) expect(dirs.get(c.id)).toContain(path.join(UNIFIED_NSBOX, c.id));
    expect(dirs.get(s.limited.id)!.filter((d) => /\/(memory|pids)\//.test(d))).toHaveLength(2);
    expect(record(s.kept.id)!.cgroups).toEqual(dirs.get(s.kept.id));
    expect(record(s.limited.id)!.cgroups!.slice().sort()).toEqual(dirs.get(s.limited.id));
    const detachedDirs = cgroupDirsOf(s.detached!.id);
    expect(detachedDirs.length).toBeGreaterThan(0);

    s.node.stdin.write('exit\n');
    expect(await s.closed).toEqual([0, null]);
    expect(s.stderr()).toBe('');
    // All of it done by the time the process is gone: no waiting here.
    for (const ns of namespaces) expect(processesOf(ns)).toEqual([]);
    for (const c of attached) expect(fs.existsSync(`/proc/${c.pid}`)).toBe(false); // reaped, not left a zombie
    for (const d of [...dirs.values()].flat()) expect(fs.existsSync(d)).toBe(false);
    expect(mountsUnderRoot()).toEqual([]);
    expect(fs.existsSync(path.join(root, 'containers', s.rm.id))).toBe(false);
    expect(fs.readdirSync(path.join(root, 'containers')).filter((e) => e.startsWith(s.rm.id))).toEqual([]); // no tombstone either
    for (const c of [s.kept, s.limited]) expect(record(c.id)).toMatchObject({ status: 'exited', exitCode: null, signal: 'SIGKILL' });

    // The detached one is its monitor's: it runs on, cgroups and all.
    const rt = new Runtime({ root });
    expect(fs.readFileSync(`/proc/${s.detached!.pid}/comm`, 'utf8')).toBe('nsbox-init\n');
    expect(rt.inspect(s.detached!.id).status).toBe('running');
    for (const d of detachedDirs) expect(fs.existsSync(d)).toBe(true);
    expect(rt.inspect(s.kept.id)).toMatchObject({ status: 'exited', signal: 'SIGKILL' });
    await rt.stop(s.detached!.id, { timeout: 0 });
    await rt.remove(s.detached!.id);
    await until('the detached container to be gone', () => !fs.existsSync(`/proc/${s.detached!.pid}`));
  });
});

describe('a supervisor SIGKILLed in the middle of a commit', () => {
  it('leaves its container frozen, which the next Runtime thaws so that it dies: no process, no freezer cgroup left', async () => {
    // A v1 freezer holds the SIGKILL the container got when its supervisor died until a thaw,
    // which the dead committer never does: the container would stay frozen, for good.
    const script = `
      const { Runtime } = require(process.env.NSBOX_INDEX);
      (async () => {
        const rt = new Runtime({ root: process.env.ROOT });
        const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'mkdir /d; cd /d; i=0; while [ $i -lt 3000 ]; do echo $i > f$i; i=$((i+1)); done; echo ready; exec sleep 100'] });
        await new Promise((r) => c.stdout.once('data', r));
        console.log(JSON.stringify({ id: c.id, pid: c.pid }));
        await rt.commit(c.id, 'exit-commit:latest');
        console.log('committed');
      })().catch((e) => { console.error(e); process.exit(2); });
    `;
    const node = spawn(process.execPath, ['-e', script], { env: { ...process.env, NSBOX_INDEX: INDEX, ROOT: root } });
    let out = '';
    node.stdout.on('data', (d: Buffer) => (out += d));
    const closed = new Promise((r) => node.on('close', r));
    const parent = '/sys/fs/cgroup/freezer/nsbox';
    const frozen = () =>
      fs
        .readdirSync(parent)
        .filter((n) => n.startsWith(`freeze-${node.pid}-`) && fs.readFileSync(path.join(parent, n, 'freezer.state'), 'utf8').trim() === 'FROZEN');
    await until('the commit to freeze the container', () => frozen().length > 0, 20_000, 1);
    node.kill('SIGKILL');
    await closed;
    expect(out).not.toContain('committed');
    const { id, pid } = JSON.parse(out.split('\n')[0]!) as Started;
    const gone = () => processEnded(pid);
    // Frozen: its SIGKILL waits. Any Runtime on the host thaws a dead committer's freezer
    // (another test file's, running in parallel, may do so within these 300 ms): the container
    // must still be there unless its freezer was thawed.
    const freezers = frozen();
    expect(freezers.length).toBe(1);
    expect(gone()).toBe(false);
    await new Promise((r) => setTimeout(r, 300));
    const freezer = path.join(parent, freezers[0]!, 'freezer.state');
    let state = '';
    try {
      state = fs.readFileSync(freezer, 'utf8').trim();
    } catch {
      // removed by the Runtime that thawed it
    }
    if (state === 'FROZEN') expect(gone()).toBe(false);
    new Runtime({ root }).list({ all: true });
    await until(`container ${pid} to be gone`, gone, 5000);
    // Its freezer, busy while the processes were on their way out: the next Runtime's.
    new Runtime({ root }).list({ all: true });
    expect(fs.readdirSync(parent).filter((n) => n.startsWith(`freeze-${node.pid}-`))).toEqual([]);
    await new Runtime({ root }).remove(id, { force: true });
  });
});

describe('a SIGKILLed supervisor', () => {
  for (const where of ['same', 'other'] as const) {
    it(`leaves empty cgroups and 'running' records that the next Runtime's first use finishes (its cgroups ${where === 'same' ? 'beside' : 'away from'} the new Runtime's)`, async () => {
      // 'other': the supervisor's v2 directories under a parent of its own, which the
      // recovering process would never look in: only the record says where they are.
      const parent = path.join(path.dirname(UNIFIED_NSBOX), `nsbox-test-exit-${process.pid}`);
      if (where === 'other') fs.mkdirSync(parent);
      try {
        const s = await supervisor(where === 'other' ? { env: { NSBOX_CGROUP_V2_PARENT: parent } } : {});
        const attached = [s.rm, s.kept, s.limited];
        const dirs = attached.flatMap((c) => cgroupDirsOf(c.id));
        if (where === 'other') for (const c of attached) expect(dirs).toContain(path.join(parent, c.id));
        expect(dirs.length).toBe(5);
        s.node.kill('SIGKILL');
        expect(await s.closed).toEqual([null, 'SIGKILL']);
        await until('its containers to die', () => attached.every((c) => !fs.existsSync(`/proc/${c.pid}`)));
        // What it leaves: nothing could run to remove it.
        for (const d of dirs) expect(fs.existsSync(d)).toBe(true);
        for (const c of attached) expect(record(c.id)?.status).toBe('running');

        const rt = new Runtime({ root });
        const listed = rt.list({ all: true }).filter((c) => attached.some((a) => a.id === c.id));
        expect(listed.map((c) => [c.id, c.status]).sort()).toEqual(
          [
            [s.kept.id, 'exited'],
            [s.limited.id, 'exited'],
          ].sort(),
        );
        // The --rm one at once; the cgroups and records of the kept ones right after the call.
        expect(fs.readdirSync(path.join(root, 'containers')).filter((e) => e.startsWith(s.rm.id))).toEqual([]);
        await until('the dead runs to be finished', () => dirs.every((d) => !fs.existsSync(d)) && record(s.kept.id)?.status === 'exited');
        for (const c of [s.kept, s.limited]) expect(record(c.id)).toMatchObject({ status: 'exited', exitCode: null });
        expect(mountsUnderRoot()).toEqual([]);
        for (const c of [s.kept, s.limited]) await rt.remove(c.id);
      } finally {
        // After a failure above the containers' directories may still be in it: a cgroup
        // directory goes only empty, and each of theirs is (their processes are gone).
        if (where === 'other') {
          for (const e of fs.readdirSync(parent, { withFileTypes: true })) if (e.isDirectory()) fs.rmdirSync(path.join(parent, e.name));
          fs.rmdirSync(parent);
        }
      }
    });
  }

  it('what the next Runtime removes is only the empty cgroups of dead runs of its own records', async () => {
    // A record of this state directory to plant variants of.
    const rt0 = new Runtime({ root });
    const c = await rt0.run({ image: 'busybox', command: ['true'], stdio: 'ignore' });
    await c.wait();
    const template = JSON.parse(fs.readFileSync(path.join(root, 'containers', c.id!, 'container.json'), 'utf8')) as Record<string, unknown>;
    await c.remove();
    const sleeper = spawn('sleep', ['100']);
    await until('sleep to run', () => processStartTime(sleeper.pid!) !== undefined);
    const live = { supervisor: sleeper.pid!, supervisorStart: processStartTime(sleeper.pid!)! };
    // A pid and start time of a process that has exited.
    const gone = spawn('sleep', ['100']);
    await until('sleep to run', () => processStartTime(gone.pid!) !== undefined);
    const goneStart = processStartTime(gone.pid!)!;
    const goneExit = new Promise((r) => gone.once('exit', r));
    gone.kill('SIGKILL');
    await goneExit;
    const dead = { supervisor: gone.pid!, supervisorStart: goneStart, pid: gone.pid!, pidStart: goneStart };
    const made: string[] = [];
    const plant = (fields: Record<string, unknown>, cgroups?: (id: string) => string[]) => {
      const id = newId();
      const dirs = cgroups ? cgroups(id) : [path.join(UNIFIED_NSBOX, id)];
      for (const d of dirs) fs.mkdirSync(d);
      made.push(...dirs);
      fs.mkdirSync(path.join(root, 'containers', id, 'upper'), { recursive: true });
      fs.writeFileSync(
        path.join(root, 'containers', id, 'container.json'),
        JSON.stringify({ ...template, id, status: 'running', exitCode: null, remove: false, cgroups: dirs, ...fields }),
      );
      return { id, dirs };
    };
    try {
      const deadRun = plant({ ...dead });
      // A live supervisor's container (its start still before the clone, say): its own to handle.
      const liveRun = plant({ ...dead, ...live });
      // Another state directory's container: no record here.
      const foreign = path.join(UNIFIED_NSBOX, newId());
      fs.mkdirSync(foreign);
      made.push(foreign);
      // A record naming a directory that is not a cgroup (an attacker's record, or a bug): never removed.
      fs.mkdirSync(path.join(base, 'not-a-cgroup'), { recursive: true });
      const notCgroup = plant({ ...dead }, (id) => [path.join(base, 'not-a-cgroup', id)]);
      // A dead run whose lock a live process holds (a start of it, making its new cgroups).
      const locked = plant({ ...dead });
      const lock = ContainerLock.tryAcquire(new Runtime({ root }).layout, locked.id, 'start')!;
      expect(lock).toBeDefined();

      const rt = new Runtime({ root });
      rt.list({ all: true });
      await until('the dead run to be finished', () => !fs.existsSync(deadRun.dirs[0]!));
      await new Promise((r) => setTimeout(r, 100));
      expect(record(deadRun.id)?.status).toBe('exited');
      for (const d of [...liveRun.dirs, foreign, ...notCgroup.dirs, ...locked.dirs]) expect(fs.existsSync(d)).toBe(true);
      expect(record(liveRun.id)?.status).toBe('running');
      expect(record(locked.id)?.status).toBe('running');
      // Once the lock is free, the next Runtime finishes that one too.
      lock.release();
      new Runtime({ root }).list({ all: true });
      await until('the unlocked dead run to be finished', () => !fs.existsSync(locked.dirs[0]!));
      expect(fs.existsSync(liveRun.dirs[0]!)).toBe(true);
      for (const id of [deadRun.id, liveRun.id, notCgroup.id, locked.id]) fs.rmSync(path.join(root, 'containers', id), { recursive: true });
    } finally {
      sleeper.kill('SIGKILL');
      for (const d of made) {
        try {
          fs.rmdirSync(d);
        } catch {
          // removed by the test itself
        }
      }
    }
  });

  it("never follows a symbolic link in a record's cgroup path to another cgroup of the same name", () => {
    // A record naming `<dir>/<id>` where <dir> is a link to someone else's cgroup parent: the
    // parent's file system is a cgroup one once the link is followed, but the cgroup is not
    // where this container's supervisor made it.
    const id = newId();
    const elsewhere = path.join('/sys/fs/cgroup/unified', `nsbox-rev-other-${process.pid}`);
    const victim = path.join(elsewhere, id);
    const link = path.join(base, 'cglink');
    fs.mkdirSync(victim, { recursive: true });
    fs.symlinkSync(elsewhere, link);
    try {
      expect(recordedCgroupDirs(id, [path.join(link, id)])).toEqual([]);
      expect(recordedCgroupDirs(id, [`${UNIFIED_NSBOX}/../nsbox-rev-other-${process.pid}/${id}`])).toEqual([]);
      removeDeadCgroups(id, [path.join(link, id)]);
      expect(fs.existsSync(victim)).toBe(true);
      // The same directory named by its own path is one a record may name.
      expect(recordedCgroupDirs(id, [victim])).toEqual([victim]);
    } finally {
      fs.rmSync(link);
      fs.rmdirSync(victim);
      fs.rmdirSync(elsewhere);
    }
  });
});

/** Host pids of processes whose mount table names `dir` (a container's overlay under the state directory). */
function processesMounting(dir: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/mountinfo`, 'utf8').includes(dir)) out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** A node script with NSBOX_INDEX, NSBOX_NATIVE and ROOT set: its first line of output, and its end. */
async function script(
  body: string,
): Promise<{ node: ChildProcessWithoutNullStreams; first: string; closed: Promise<[number | null, NodeJS.Signals | null]>; stderr: () => string }> {
  const node = spawn(process.execPath, ['-e', body], {
    env: { ...process.env, NSBOX_INDEX: INDEX, NSBOX_NATIVE: path.join(path.dirname(INDEX), 'native.js'), ROOT: root },
  });
  let stderr = '';
  node.stderr.on('data', (d: Buffer) => (stderr += d));
  const closed = new Promise<[number | null, NodeJS.Signals | null]>((r) => node.on('close', (c, s) => r([c, s])));
  const first = await new Promise<string>((resolve, reject) => {
    let out = '';
    node.stdout.on('data', (d: Buffer) => {
      out += d;
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    node.once('close', () => reject(new Error(`the script ended before its first line: ${stderr}`)));
  });
  return { node, first, closed, stderr: () => stderr };
}

describe('attacks on the end of a supervisor', () => {
  it('an uncaught exception ends its containers as process.exit() does: no process, no cgroup, kept ones recorded exited, --rm ones removed', async () => {
    const s = await supervisor({ onLine: "setImmediate(() => { throw new Error('uncaught in the supervisor') })" });
    const attached = [s.rm, s.kept, s.limited];
    const namespaces = attached.map((c) => fs.readlinkSync(`/proc/${c.pid}/ns/pid`));
    const dirs = attached.flatMap((c) => cgroupDirsOf(c.id));
    expect(dirs.length).toBe(5);
    s.node.stdin.write('throw\n');
    expect(await s.closed).toEqual([1, null]);
    expect(s.stderr()).toContain('uncaught in the supervisor');
    for (const ns of namespaces) expect(processesOf(ns)).toEqual([]);
    for (const c of attached) expect(fs.existsSync(`/proc/${c.pid}`)).toBe(false);
    for (const d of dirs) expect(fs.existsSync(d)).toBe(false);
    expect(mountsUnderRoot()).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'containers')).filter((e) => e.startsWith(s.rm.id))).toEqual([]);
    for (const c of [s.kept, s.limited]) expect(record(c.id)).toMatchObject({ status: 'exited', signal: 'SIGKILL' });
    const rt = new Runtime({ root });
    for (const c of [s.kept, s.limited]) await rt.remove(c.id);
  });

  it('SIGTERM (no exit event runs): every process of its containers dies with it, and the next Runtime finishes the rest', async () => {
    const s = await supervisor();
    const attached = [s.rm, s.kept, s.limited];
    const namespaces = attached.map((c) => fs.readlinkSync(`/proc/${c.pid}/ns/pid`));
    const dirs = attached.flatMap((c) => cgroupDirsOf(c.id));
    s.node.kill('SIGTERM');
    expect(await s.closed).toEqual([null, 'SIGTERM']);
    await until('its containers to die', () => namespaces.every((ns) => processesOf(ns).length === 0));
    const rt = new Runtime({ root });
    expect(rt.list({ all: true }).filter((c) => attached.some((a) => a.id === c.id) && c.status === 'running')).toEqual([]);
    await until('the dead runs to be finished', () => dirs.every((d) => !fs.existsSync(d)));
    expect(fs.readdirSync(path.join(root, 'containers')).filter((e) => e.startsWith(s.rm.id))).toEqual([]);
    expect(mountsUnderRoot()).toEqual([]);
    for (const c of [s.kept, s.limited]) await rt.remove(c.id);
  });

  it("process.exit() while the process's first start is on a spawner thread leaves no cgroup and no process; the next Runtime removes the half-made container", async () => {
    // The CLI's `run` is such a process: its one start is its first. Before, the 'exit'
    // listener was added only once a container had started, so nothing waited for this start
    // and its v2 and v1 pids directories stayed on the host.
    const before = new Set(fs.existsSync(path.join(root, 'containers')) ? fs.readdirSync(path.join(root, 'containers')) : []);
    const s = await script(`
      const n = require(process.env.NSBOX_NATIVE).native();
      const spawnAsync = n.spawnAsync.bind(n);
      n.spawnAsync = (plan, onExit, onStarted) => {
        const r = spawnAsync(plan, onExit, onStarted);
        console.log(JSON.stringify(plan.cgroupDirs));
        process.exit(0);
        return r;
      };
      const { Runtime } = require(process.env.NSBOX_INDEX);
      new Runtime({ root: process.env.ROOT }).run({ image: 'busybox', command: ['sleep', '100'], stdio: 'ignore', limits: { memory: 64 * 1024 * 1024, pids: 50 } });
    `);
    expect(await s.closed).toEqual([0, null]);
    const dirs = JSON.parse(s.first) as string[];
    expect(dirs.some((d) => d.includes('/pids/'))).toBe(true);
    for (const d of dirs) expect(fs.existsSync(d)).toBe(false);
    const made = fs.readdirSync(path.join(root, 'containers')).filter((e) => !before.has(e));
    expect(made).toHaveLength(1);
    expect(processesMounting(path.join(root, 'containers', made[0]!))).toEqual([]);
    new Runtime({ root }).list({ all: true });
    expect(fs.readdirSync(path.join(root, 'containers')).filter((e) => !before.has(e))).toEqual([]);
  });

  it('a container forking as fast as it can is gone whole at process.exit(): no process of it, no cgroup', async () => {
    const s = await script(`
      const { Runtime } = require(process.env.NSBOX_INDEX);
      (async () => {
        const rt = new Runtime({ root: process.env.ROOT });
        const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'while :; do sleep 100 & done'], stdio: 'ignore', remove: true, limits: { pids: 400 } });
        console.log(JSON.stringify({ id: c.id, pid: c.pid }));
        process.stdin.once('data', () => process.exit(0));
      })().catch((e) => { console.error(e); process.exit(2); });
    `);
    const { id, pid } = JSON.parse(s.first) as Started;
    const ns = fs.readlinkSync(`/proc/${pid}/ns/pid`);
    const dirs = cgroupDirsOf(id);
    const pidsDir = dirs.find((d) => d.includes('/pids/'))!;
    await until('it to fork', () => Number(fs.readFileSync(path.join(pidsDir, 'pids.current'), 'utf8')) > 50, 10_000);
    s.node.stdin.write('exit\n');
    expect(await s.closed).toEqual([0, null]);
    expect(processesOf(ns)).toEqual([]);
    for (const d of dirs) expect(fs.existsSync(d)).toBe(false);
    expect(fs.readdirSync(path.join(root, 'containers')).filter((e) => e.startsWith(id))).toEqual([]);
  });

  for (const how of ['terminate', 'exit'] as const) {
    it(`a worker thread's containers, the worker ${how === 'terminate' ? 'terminated' : 'ended by process.exit() on the main thread'}: no process, no cgroup, no record left saying 'running'`, async () => {
      const s = await script(`
        const { Worker, isMainThread, parentPort } = require('node:worker_threads');
        const w = new Worker(\`
          const { parentPort } = require('node:worker_threads');
          const { Runtime } = require(process.env.NSBOX_INDEX);
          (async () => {
            const rt = new Runtime({ root: process.env.ROOT });
            const run = (o) => rt.run({ image: 'busybox', command: ['sleep', '100'], stdio: 'ignore', limits: { pids: 50 }, ...o });
            const kept = await run({});
            const rm = await run({ remove: true });
            parentPort.postMessage({ kept: { id: kept.id, pid: kept.pid }, rm: { id: rm.id, pid: rm.pid } });
          })();
        \`, { eval: true });
        w.once('message', (m) => {
          console.log(JSON.stringify(m));
          process.stdin.once('data', () => ${how === 'terminate' ? "w.terminate().then(() => console.log('terminated'))" : 'process.exit(0)'});
        });
      `);
      const got = JSON.parse(s.first) as { kept: Started; rm: Started };
      const started = [got.kept, got.rm];
      const namespaces = started.map((c) => fs.readlinkSync(`/proc/${c.pid}/ns/pid`));
      const dirs = started.flatMap((c) => cgroupDirsOf(c.id));
      expect(dirs.length).toBe(4);
      s.node.stdin.write('go\n');
      if (how === 'terminate') {
        await until('the worker to be terminated', () => namespaces.every((ns) => processesOf(ns).length === 0), 10_000);
      } else {
        expect(await s.closed).toEqual([0, null]);
      }
      for (const ns of namespaces) expect(processesOf(ns)).toEqual([]);
      for (const c of started) await until(`${c.pid} to be reaped`, () => !fs.existsSync(`/proc/${c.pid}`));
      await until('their cgroups to go', () => dirs.every((d) => !fs.existsSync(d)));
      // Another process's view (the supervisor may still run: its pid is no proof of anything).
      const rt = new Runtime({ root });
      const listed = rt.list({ all: true }).filter((c) => started.some((a) => a.id === c.id));
      expect(listed.filter((c) => c.status === 'running')).toEqual([]);
      expect(mountsUnderRoot()).toEqual([]);
      if (how === 'terminate') {
        s.node.kill('SIGKILL');
        await s.closed;
      }
      for (const c of started) await rt.remove(c.id, { force: true }).catch(() => {});
    });
  }
});

describe('process.exit() in the middle of a commit', () => {
  const FREEZER = '/sys/fs/cgroup/freezer/nsbox';
  const freezersOf = (pid: number) => (fs.existsSync(FREEZER) ? fs.readdirSync(FREEZER).filter((n) => n.startsWith(`freeze-${pid}-`)) : []);
  /** Runs `before` (a container made, its id and pid printed), then commits it and calls process.exit() once it is frozen. */
  const exitMidCommit = (before: string) =>
    script(`
      const cg = require(require('node:path').join(require('node:path').dirname(process.env.NSBOX_INDEX), 'cgroup.js'));
      const freeze = cg.freezeContainer;
      cg.freezeContainer = async (...a) => { const thaw = await freeze(...a); console.log('frozen ' + (thaw !== null)); process.exit(0); };
      const { Runtime } = require(process.env.NSBOX_INDEX);
      (async () => {
        const rt = new Runtime({ root: process.env.ROOT });
        ${before}
        await rt.commit(c.id, 'exit-mid-commit:latest');
        console.log('committed');
      })().catch((e) => { console.error(e); process.exit(2); });
    `);

  it('of its own container: the container is thawed and dies with it at once (not left frozen with its SIGKILL pending), no freezer cgroup left', async () => {
    const s = await exitMidCommit(
      "const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'echo ready; exec sleep 100'] }); await new Promise((r) => c.stdout.once('data', r)); console.log(JSON.stringify({ id: c.id, pid: c.pid }));",
    );
    const { id, pid } = JSON.parse(s.first) as Started;
    const ns = fs.readlinkSync(`/proc/${pid}/ns/pid`);
    const dirs = cgroupDirsOf(id);
    expect(await s.closed).toEqual([0, null]);
    expect(s.stderr()).toBe('');
    // Gone by the time the supervisor is: before, both stayed frozen (state D) until the next Runtime.
    expect(processesOf(ns)).toEqual([]);
    expect(freezersOf(s.node.pid!)).toEqual([]);
    for (const d of dirs) expect(fs.existsSync(d)).toBe(false);
    expect(record(id)).toMatchObject({ status: 'exited', signal: 'SIGKILL' });
    await new Runtime({ root }).remove(id);
  });

  it('of a detached container (another process supervises it): it is thawed and runs on; no freezer cgroup left', async () => {
    const s = await exitMidCommit(
      "const c = await rt.run({ image: 'busybox', command: ['sleep', '100'], detach: true }); console.log(JSON.stringify({ id: c.id, pid: c.pid }));",
    );
    const { id, pid } = JSON.parse(s.first) as Started;
    expect(await s.closed).toEqual([0, null]);
    expect(freezersOf(s.node.pid!)).toEqual([]);
    const rt = new Runtime({ root });
    try {
      // Frozen, an exec into it would hang; thawed, it runs.
      const state = fs
        .readFileSync(`/proc/${pid}/cgroup`, 'utf8')
        .split('\n')
        .find((l) => /^\d+:freezer:/.test(l))!;
      expect(state).not.toMatch(/freeze-/);
      const e = rt.exec(id, { command: ['echo', 'thawed'], stdio: ['ignore', 'pipe', 'ignore'] });
      let text = '';
      e.stdout!.on('data', (d: Buffer) => (text += d));
      const done = await Promise.race([e.wait(), new Promise((r) => setTimeout(() => r('hung'), 5000))]);
      expect(done).not.toBe('hung');
      expect(text).toBe('thawed\n');
    } finally {
      await rt.stop(id, { timeout: 0 });
      await rt.remove(id);
    }
  });
});

describe('process.exit() in the middle of a removal', () => {
  it('leaves a tombstone at most, which the next Runtime removes: the container is never listed again, nothing of it stays', async () => {
    const s = await script(`
      const n = require(process.env.NSBOX_NATIVE).native();
      const { Runtime } = require(process.env.NSBOX_INDEX);
      (async () => {
        const rt = new Runtime({ root: process.env.ROOT });
        const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'mkdir /d; i=0; while [ $i -lt 2000 ]; do echo $i > /d/f$i; i=$((i+1)); done'], stdio: 'ignore', limits: { pids: 20 } });
        await c.wait();
        console.log(JSON.stringify({ id: c.id, pid: c.pid }));
        // The exit once the walk of the write layer is posted to the pool (or, a synchronous
        // removal, just before it runs): its tombstone is made by then.
        const removeTreeAsync = n.removeTreeAsync.bind(n);
        n.removeTreeAsync = (p, done) => { removeTreeAsync(p, done); process.exit(0); };
        n.removeTree = () => process.exit(0);
        // The usual path: a batch of the pool (src/fsbatch.ts) with the tree's removal in it.
        const fsBatchAsync = n.fsBatchAsync.bind(n);
        n.fsBatchAsync = (ops, done) => {
          fsBatchAsync(ops, done);
          if (ops.some((o) => o.op === 'removeTree')) process.exit(0);
        };
        await rt.remove(c.id);
        console.error('removed before the exit');
      })().catch((e) => { console.error(e); process.exit(2); });
    `);
    const { id } = JSON.parse(s.first) as Started;
    expect(await s.closed).toEqual([0, null]);
    expect(s.stderr()).toBe('');
    const rt = new Runtime({ root });
    expect(rt.list({ all: true }).filter((c) => c.id === id)).toEqual([]);
    await until('its tombstone to go', () => fs.readdirSync(path.join(root, 'containers')).every((e) => !e.includes(id)));
    expect(cgroupDirsOf(id)).toEqual([]);
    expect(mountsUnderRoot()).toEqual([]);
  });
});
