// State on disk is not trusted. Container records crafted to make rm delete outside the
// state directory or kill a host process, records of the wrong types or not JSON at all,
// name links aiming out: each is reported and skipped, rm -f removes only the container's own
// directory, nothing is killed that is not proven to be the container's, and ps -a, rm and
// prune keep working for the good containers beside the bad ones. And a state directory
// others could write is refused before anything is read from it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { newId } from '../src/layout';
import { processPidNamespace, processStartTime } from '../src/proc';
import { Runtime } from '../src/runtime';
import { procState, unionMounts, until } from './helpers';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');

let base: string;
let root: string;
let rt: Runtime;
/** A valid record (of a stopped container), to derive bad ones from. */
let template: Record<string, unknown>;
let canary: string;
const hostProcesses: ChildProcess[] = [];

beforeAll(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-state-'));
  root = path.join(base, 'root');
  rt = new Runtime({ root });
  const c = await rt.run({ image: 'busybox', command: ['true'] });
  await c.wait();
  template = JSON.parse(fs.readFileSync(path.join(root, 'containers', c.id!, 'container.json'), 'utf8')) as Record<string, unknown>;
  await c.remove();
});
afterAll(() => {
  for (const p of hostProcesses) p.kill('SIGKILL');
  fs.rmSync(base, { recursive: true, force: true });
});
afterEach(() => {
  expect(unionMounts().filter((l) => l.includes(root))).toEqual([]);
  // Whatever a record said, nothing outside the state directory was touched.
  if (canary) expect(fs.readFileSync(path.join(canary, 'precious'), 'utf8')).toBe('keep me\n');
});

/** A directory outside the state directory that `../../<name>` from containers/<id> reaches. */
function makeCanary(): { dir: string; escape: string } {
  const name = `canary-${newId()}`;
  const dir = path.join(base, name); // root is base/root: containers/<id>/../../<name> is base/<name>
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'precious'), 'keep me\n');
  canary = dir;
  return { dir, escape: `../../${name}` };
}

/**
 * A new containers/<id>/container.json with this content: an object is written as JSON,
 * with the directory's id unless it says another.
 */
function plant(content: Record<string, unknown> | string): string {
  const id = newId();
  const dir = path.join(root, 'containers', id);
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'container.json'), typeof content === 'string' ? content : JSON.stringify({ id, ...content }));
  return id;
}

/** The template's fields but its id, these instead. */
function record(fields: Record<string, unknown>): Record<string, unknown> {
  const { id: _id, ...rest } = template;
  void _id;
  return { ...rest, created: new Date().toISOString(), ...fields };
}

/** A host process that is not a container: `sleep 100`, a child of this test. */
async function hostSleep(): Promise<{ pid: number; start: string; ns: string; alive: () => boolean; kill: () => void }> {
  const p = spawn('sleep', ['100'], { stdio: 'ignore' });
  hostProcesses.push(p);
  await until('sleep to start', () => processStartTime(p.pid!) !== undefined && procState(p.pid!)?.state !== undefined);
  const pid = p.pid!;
  // sleep, not node: wait until the exec has happened, so the start time is final.
  await until('sleep to exec', () => fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep');
  return {
    pid,
    start: processStartTime(pid)!,
    ns: processPidNamespace(pid)!,
    alive: () => p.exitCode === null && p.signalCode === null && procState(pid) !== null && procState(pid)!.state !== 'Z',
    kill: () => p.kill('SIGKILL'),
  };
}

async function rejection(p: Promise<unknown>): Promise<NsboxError> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof NsboxError)) throw new Error(`expected an NsboxError, got ${String(e)}`);
    return e;
  }
  throw new Error('resolved');
}

function listed(): { ids: string[]; bad: Map<string, NsboxError> } {
  const bad = new Map<string, NsboxError>();
  const ids = rt.list({ all: true, onError: (e, id) => bad.set(id, e) }).map((c) => c.id);
  return { ids, bad };
}

function nsbox(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, '--root', root, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('a container record that lies about its id', () => {
  it('is skipped by list, and rm -f removes only its own directory, never the one its id names', async () => {
    const { dir: outside, escape } = makeCanary();
    const id = plant(record({ id: escape }));
    const good = await rt.run({ image: 'busybox', command: ['true'] });
    await good.wait();

    const { ids, bad } = listed();
    expect(ids).toContain(good.id);
    expect(ids).not.toContain(escape);
    expect(bad.get(id)?.code).toBe('BAD_STATE');
    expect(bad.get(id)?.message).toMatch(/container [0-9a-f]{12}: its record .* is not valid: id: expected 12 hexadecimal digits/);

    // rm without -f says why, and what would remove it; inspect and commit refuse it too.
    const plain = await rejection(rt.remove(id));
    expect(plain.code).toBe('BAD_STATE');
    expect(plain.hint).toMatch(/rm -f/);
    expect(() => rt.inspect(id)).toThrow(/is not valid/);
    expect((await rejection(rt.commit(id, 'from-bad'))).code).toBe('BAD_STATE');
    expect(rt.images.find('from-bad')).toBeUndefined();

    await rt.remove(id, { force: true });
    expect(fs.existsSync(path.join(root, 'containers', id))).toBe(false);
    expect(fs.readdirSync(outside)).toEqual(['precious']);
    await good.remove();
  });

  it("whose id is well-formed but another container's is refused too", async () => {
    const other = await rt.run({ image: 'busybox', command: ['true'] });
    await other.wait();
    const id = plant(record({ id: other.id }));
    expect(listed().bad.get(id)?.message).toMatch(/its id [0-9a-f]{12} is not the name of its directory/);
    await rt.remove(id, { force: true });
    // The other container, which the record named, is still there and works.
    expect(rt.inspect(other.id!).status).toBe('exited');
    await other.remove();
  });
});

describe('records of the wrong shape', () => {
  it('are reported as a process warning when list() is given no onError', async () => {
    const id = plant('{');
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      expect(rt.list({ all: true })).toEqual([]);
      await new Promise((r) => setTimeout(r, 10));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => w.message)).toEqual([expect.stringMatching(new RegExp(`^container ${id}: its record .* is not valid: not JSON`))]);
    await rt.remove(id, { force: true });
  });

  const cases: Array<[string, Record<string, unknown> | string, RegExp]> = [
    ['not JSON', '{"id": "abc', /not JSON/],
    ['JSON but not an object', '[1,2]', /expected an object, got an array/],
    ['empty', '', /not JSON/],
    ['pid as a string', { pid: '1', status: 'running' }, /pid: expected an integer/],
    ['pid 0 (every process of the group)', { pid: 0 }, /pid: expected an integer from 1/],
    ['pid -1 (every process)', { pid: -1 }, /pid: expected an integer from 1/],
    ['remove as a string', { remove: 'false' }, /remove: expected a boolean/],
    ['command as a string', { command: 'rm -rf /' }, /command: expected a non-empty array/],
    ['a name with a slash', { name: '../../etc' }, /name: expected a container name/],
    ['a driver it does not know', { driver: 'btrfs' }, /driver: expected one of/],
    ['a status it does not know', { status: 'paused' }, /status: expected one of/],
    ['an image layer outside images/', { imageLayer: '/etc' }, /imageLayer "\/etc" is not an image's rootfs/],
    ['an image layer climbing out of images/', { imageLayer: 'IMAGES/../../../etc/rootfs' }, /imageLayer .* is not an image's rootfs/],
    ['a relative image layer', { imageLayer: 'images/busybox/rootfs' }, /is not an image's rootfs/],
    ['a volume that is not a volume', { volumes: ['/etc'] }, /volume "\/etc": expected HOST:CONTAINER/],
    ['an unknown field', { privileged: true }, /privileged: unknown option/],
    ['a missing field', { supervisor: undefined }, /supervisor: expected an integer/],
    ['a created time that is not one', { created: { toString: 1 } }, /created: expected an ISO 8601 time/],
  ];

  it.each(cases)('%s: reported, skipped, and rm -f removes just its directory', async (_what, content, message) => {
    const body = typeof content === 'string' ? content : record(content);
    if (typeof body !== 'string' && typeof body.imageLayer === 'string') body.imageLayer = body.imageLayer.replace('IMAGES', path.join(root, 'images'));
    const id = plant(body);
    const { bad } = listed();
    expect(bad.get(id)?.code).toBe('BAD_STATE');
    expect(bad.get(id)?.message).toMatch(message);
    await rt.remove(id, { force: true });
    expect(fs.existsSync(path.join(root, 'containers', id))).toBe(false);
  });

  it('a record that is a symlink is not followed', async () => {
    const id = newId();
    fs.mkdirSync(path.join(root, 'containers', id), { mode: 0o700 });
    fs.symlinkSync('/etc/passwd', path.join(root, 'containers', id, 'container.json'));
    expect(listed().bad.get(id)?.message).toMatch(/a symbolic link/);
    await rt.remove(id, { force: true });
    expect(fs.existsSync('/etc/passwd')).toBe(true);
  });

  it('a container directory that is a symlink is not followed, and rm -f removes only the link', async () => {
    const { dir: outside } = makeCanary();
    const id = newId();
    fs.writeFileSync(path.join(outside, 'container.json'), JSON.stringify({ id, ...record({}) }));
    fs.symlinkSync(outside, path.join(root, 'containers', id));
    expect(listed().bad.get(id)?.message).toMatch(/its directory is not a directory/);
    expect((await rejection(rt.commit(id, 'from-link'))).code).toBe('BAD_STATE');
    await rt.remove(id, { force: true });
    expect(fs.existsSync(path.join(root, 'containers', id))).toBe(false);
    expect(fs.readdirSync(outside).sort()).toEqual(['container.json', 'precious']);
  });

  it('a directory in containers/ whose name is not an id is reported, and never removed', async () => {
    const { dir: outside } = makeCanary();
    const stray = path.join(root, 'containers', 'not-an-id');
    fs.symlinkSync(outside, stray);
    try {
      expect(listed().bad.get('not-an-id')?.message).toMatch(/not a container id/);
      expect((await rejection(rt.remove('not-an-id', { force: true }))).code).toBe('NOT_FOUND');
      expect(await rt.prune({ onError: () => undefined })).toEqual([]);
      expect(fs.readdirSync(outside)).toEqual(['precious']);
    } finally {
      fs.unlinkSync(stray);
    }
  });

  it('a name link aiming out of containers/ is not followed', async () => {
    const { dir: outside, escape } = makeCanary();
    fs.symlinkSync(escape, path.join(root, 'names', 'evil'));
    expect((await rejection(rt.remove('evil', { force: true }))).code).toBe('NOT_FOUND');
    expect(fs.readdirSync(outside)).toEqual(['precious']);
    fs.unlinkSync(path.join(root, 'names', 'evil'));
  });
});

describe('killing a process this process did not start', () => {
  it('is refused for a record naming a host process (pid and start time right), which stays alive', async () => {
    const victim = await hostSleep();
    const hostNs = processPidNamespace('self')!;
    expect(victim.ns).toBe(hostNs);
    // [the pid namespace on record, what the refusal says]
    const lies: Array<[string | null, RegExp]> = [
      [victim.ns, /it is in the host's own pid namespace/], // copied from the process itself
      ['pid:[4026531111]', /its pid namespace is pid:\[\d+\], not the container's pid:\[4026531111\]/],
      [null, /no pid namespace on record/],
    ];
    for (const [pidNamespace, why] of lies) {
      const id = plant(record({ status: 'running', pid: victim.pid, pidStart: victim.start, pidNamespace }));
      // It looks alive (its pid and start time are a live process's)...
      expect(rt.inspect(id).status).toBe('running');
      // ...so rm without -f refuses, and rm -f will not kill what it cannot prove is the container's.
      expect((await rejection(rt.remove(id))).code).toBe('IN_USE');
      const e = await rejection(rt.remove(id, { force: true }));
      expect(e.code).toBe('EPERM');
      expect(e.message).toMatch(new RegExp(`container ${id}: not killing pid ${victim.pid}: `));
      expect(e.message).toMatch(why);
      await new Promise((r) => setTimeout(r, 50));
      expect(victim.alive()).toBe(true);
      // Its directory stays: the container might be running, for all nsbox can prove.
      expect(fs.existsSync(path.join(root, 'containers', id))).toBe(true);
      fs.rmSync(path.join(root, 'containers', id), { recursive: true });
    }
  });

  it('a record from before pid namespaces were recorded is listed and removed, its process never killed', async () => {
    const victim = await hostSleep();
    const { pidNamespace: _ns, ...legacy } = record({ status: 'running', pid: victim.pid, pidStart: victim.start });
    void _ns;
    const id = plant(legacy);
    expect(
      rt
        .list({
          onError: (e) => {
            throw e;
          },
        })
        .map((c) => c.id),
    ).toContain(id);
    expect((await rejection(rt.remove(id, { force: true }))).message).toMatch(/no pid namespace on record/);
    expect(victim.alive()).toBe(true);
    victim.kill();
    await until('the sleep to end', () => !victim.alive());
    expect(rt.inspect(id).status).toBe('exited');
    await rt.remove(id);
    expect(fs.existsSync(path.join(root, 'containers', id))).toBe(false);
  });

  it('a bad record with a host pid: rm -f removes its directory and kills nothing', async () => {
    const victim = await hostSleep();
    const { dir: outside, escape } = makeCanary();
    const id = plant(record({ id: escape, status: 'running', pid: victim.pid, pidStart: victim.start, pidNamespace: victim.ns }));
    await rt.remove(id, { force: true });
    expect(fs.existsSync(path.join(root, 'containers', id))).toBe(false);
    expect(fs.readdirSync(outside)).toEqual(['precious']);
    await new Promise((r) => setTimeout(r, 50));
    expect(victim.alive()).toBe(true);
  });

  it('a tree 2500 directories deep (a container can make one) under a bad record or the tombstone of a dead remover: rm -f and prune still remove it', async () => {
    // chdir one level at a time: no path of the tree fits in PATH_MAX.
    const deepTree = (dir: string) => {
      const r = spawnSync(process.execPath, [
        '-e',
        'const fs = require("fs"); process.chdir(process.argv[1]); for (let i = 0; i < 2500; i++) { fs.mkdirSync("d"); process.chdir("d"); }',
        dir,
      ]);
      expect(r.status).toBe(0);
    };
    const id = plant('not json');
    deepTree(path.join(root, 'containers', id));
    await rt.remove(id, { force: true });
    expect(fs.existsSync(path.join(root, 'containers', id))).toBe(false);
    // A remover that died (pid 4194303 with start time 1 is no live process) left its tombstone: prune finishes its work.
    const tomb = path.join(root, 'containers', `${newId()}.removing-4194303-1`);
    fs.mkdirSync(tomb, { mode: 0o700 });
    deepTree(tomb);
    await rt.prune();
    expect(fs.existsSync(tomb)).toBe(false);
  });

  it('works for a real container: its record holds its own pid namespace, and another Runtime kills it', async () => {
    const c = await rt.run({ image: 'busybox', command: ['sleep', '100'] });
    const rec = JSON.parse(fs.readFileSync(path.join(root, 'containers', c.id!, 'container.json'), 'utf8')) as Record<string, unknown>;
    expect(rec.pidNamespace).toMatch(/^pid:\[\d+\]$/);
    expect(rec.pidNamespace).toBe(processPidNamespace(c.pid));
    expect(rec.pidNamespace).not.toBe(processPidNamespace('self'));
    const other = new Runtime({ root }); // not the one that started it: no pidfd, only the record
    await other.remove(c.id!, { force: true });
    expect((await c.wait()).signal).toBe('SIGKILL');
    expect(fs.existsSync(path.join(root, 'containers', c.id!))).toBe(false);
  });
});

describe('ps -a, rm and prune beside bad records', () => {
  it('keep working for the good containers; prune reports what it could not remove', async () => {
    const { dir: outside, escape } = makeCanary();
    const victim = await hostSleep();
    const badIds = [
      plant('not json'),
      plant(record({ id: escape })),
      plant(record({ status: 'running', pid: victim.pid, pidStart: victim.start, pidNamespace: null, remove: 'yes' })),
    ];
    const a = await rt.run({ image: 'busybox', name: 'good-a', command: ['true'] });
    const b = await rt.run({ image: 'busybox', name: 'good-b', command: ['true'] });
    const running = await rt.run({ image: 'busybox', name: 'good-running', command: ['sleep', '100'] });
    await Promise.all([a.wait(), b.wait()]);

    // The CLI: the good ones listed, each bad one said on stderr, exit 0.
    const ps = nsbox(['ps', '-a', '--format', 'json']);
    expect(ps.code).toBe(0);
    const names = (JSON.parse(ps.out) as Array<{ name: string }>).map((c) => c.name).sort();
    expect(names).toEqual(['good-a', 'good-b', 'good-running']);
    for (const id of badIds) expect(ps.err).toContain(`container ${id}: its record`);
    expect(nsbox(['ps', '-aq']).out.trim().split('\n').sort()).toEqual([a.id, b.id, running.id].sort());

    expect(nsbox(['rm', 'good-a'])).toMatchObject({ code: 0, out: 'good-a\n' });

    // prune: good-b removed; the bad ones reported (not removed: nothing can prove they are
    // stopped); the running one kept.
    const errors = new Map<string, NsboxError>();
    const pruned = await rt.prune({ onError: (e, id) => errors.set(id, e) });
    expect(pruned).toEqual([b.id]);
    expect([...errors.keys()].sort()).toEqual([...badIds].sort());
    expect(rt.list({ onError: () => undefined }).map((c) => c.id)).toEqual([running.id]);

    // Without onError, prune throws, once it has removed all it could.
    const c = await rt.run({ image: 'busybox', command: ['true'] });
    await c.wait();
    await expect(rt.prune()).rejects.toThrow(/prune: removed 1, failed 3: container [0-9a-f]{12}: its record/);
    expect(fs.existsSync(path.join(root, 'containers', c.id!))).toBe(false);

    // The CLI's prune: exit 125, each failure said, the removed ids printed.
    const d = await rt.run({ image: 'busybox', command: ['true'] });
    await d.wait();
    const r = nsbox(['prune']);
    expect(r.code).toBe(125);
    expect(r.out).toBe(`${d.id}\n`);
    expect(r.err.match(/its record/g)).toHaveLength(3);

    for (const id of badIds) await rt.remove(id, { force: true });
    expect(fs.readdirSync(outside)).toEqual(['precious']);
    expect(victim.alive()).toBe(true);
    await running.remove({ force: true });
    expect(fs.readdirSync(path.join(root, 'containers'))).toEqual([]);
  });

  it('rmi counts a container whose record cannot be read as a possible user of the image', async () => {
    const c = await rt.run({ image: 'busybox', command: ['true'] });
    await c.wait();
    await c.commit('doomed');
    await c.remove();
    const id = plant(record({ image: 'doomed', remove: 'no' }));
    expect(() => rt.removeImage('doomed')).toThrow(new RegExp(`image doomed: used by container ${id} \\(unreadable record\\)`));
    expect(rt.images.find('doomed')).toBeDefined();
    await rt.removeImage('doomed', { force: true });
    expect(rt.images.find('doomed')).toBeUndefined();
    await rt.remove(id, { force: true });
  });

  it('prune reports a container it failed to remove instead of hiding it, and removes the others', async () => {
    const stuck = await rt.run({ image: 'busybox', command: ['true'] });
    const other = await rt.run({ image: 'busybox', command: ['true'] });
    await Promise.all([stuck.wait(), other.wait()]);
    const ws = rt.inspect(stuck.id!).driver === 'vfs' ? 'rootfs' : 'merged';
    const mountPoint = path.join(root, 'containers', stuck.id!, ws);
    expect(spawnSync('mount', ['-t', 'tmpfs', 'none', mountPoint]).status).toBe(0);
    try {
      const errors: Array<[string, NsboxError]> = [];
      expect(await rt.prune({ onError: (e, id) => errors.push([id, e]) })).toEqual([other.id]);
      expect(errors).toHaveLength(1);
      expect(errors[0]![0]).toBe(stuck.id);
      expect(errors[0]![1].code).toBe('EBUSY');
    } finally {
      spawnSync('umount', [mountPoint]);
    }
    expect(await rt.prune()).toEqual([stuck.id]);
  });
});

describe('a state directory others could write', () => {
  function refused(dir: string, why: RegExp): void {
    let err: unknown;
    try {
      new Runtime({ root: dir });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NsboxError);
    expect((err as NsboxError).code).toBe('UNSAFE_PATH');
    expect((err as NsboxError).message).toMatch(why);
  }

  /** A state directory holding a container whose record names a host process. */
  async function planted(name: string): Promise<{ dir: string; id: string; victim: Awaited<ReturnType<typeof hostSleep>> }> {
    const dir = path.join(base, name);
    const victim = await hostSleep();
    for (const d of ['', 'images', 'containers', 'names', 'tmp']) fs.mkdirSync(path.join(dir, d), { mode: 0o700 });
    const id = newId();
    fs.mkdirSync(path.join(dir, 'containers', id));
    fs.writeFileSync(
      path.join(dir, 'containers', id, 'container.json'),
      JSON.stringify({ id, ...record({ status: 'running', pid: victim.pid, pidStart: victim.start }), imageLayer: path.join(dir, 'images', 'x', 'rootfs') }),
    );
    return { dir, id, victim };
  }

  it('is refused when owned by another user', async () => {
    const { dir, victim } = await planted('other-owner');
    fs.chownSync(dir, 65534, 65534);
    refused(dir, /state directory .*other-owner: owned by uid 65534, not by uid 0 that runs nsbox/);
    const r = nsbox(['--root', dir, 'ps', '-a']);
    expect(r.code).toBe(125);
    expect(r.err).toMatch(/owned by uid 65534/);
    expect(nsbox(['--root', dir, 'rm', '-f', 'x']).code).toBe(125);
    expect(victim.alive()).toBe(true);
  });

  it('is refused when group- or other-writable, the root or any directory in it', async () => {
    const { dir, id, victim } = await planted('writable');
    fs.chmodSync(dir, 0o777);
    refused(dir, /writable by its group \(mode 0777\)/);
    fs.chmodSync(dir, 0o702);
    refused(dir, /writable by others \(mode 0702\)/);
    fs.chmodSync(dir, 0o700);
    for (const sub of ['images', 'containers', 'names', 'tmp']) {
      fs.chmodSync(path.join(dir, sub), 0o770);
      refused(dir, new RegExp(`state directory .*/${sub}: writable by its group`));
      fs.chmodSync(path.join(dir, sub), 0o700);
      fs.chownSync(path.join(dir, sub), 65534, 65534);
      refused(dir, new RegExp(`state directory .*/${sub}: owned by uid 65534`));
      fs.chownSync(path.join(dir, sub), 0, 0);
    }
    // What refused it, not anything else: made safe, it is read (and its lie caught).
    const ok = new Runtime({ root: dir });
    expect(ok.list({ all: true, onError: () => undefined })).toHaveLength(1);
    await expect(ok.remove(id, { force: true })).rejects.toThrow(/not killing pid/);
    expect(victim.alive()).toBe(true);
  });

  it('is refused when one of its directories is a symlink, even to a safe place', () => {
    const dir = path.join(base, 'linked');
    for (const d of ['', 'images', 'names', 'tmp']) fs.mkdirSync(path.join(dir, d), { mode: 0o700 });
    fs.mkdirSync(path.join(base, 'elsewhere'), { mode: 0o700 });
    fs.symlinkSync(path.join(base, 'elsewhere'), path.join(dir, 'containers'));
    refused(dir, /containers: a symbolic link/);
  });

  it('is refused when it appears, unsafe, after the Runtime was made', async () => {
    const dir = path.join(base, 'late');
    const late = new Runtime({ root: dir });
    fs.mkdirSync(dir, { mode: 0o777 });
    fs.chmodSync(dir, 0o777);
    await expect(late.run({ image: 'busybox', command: ['true'] })).rejects.toThrow(/writable by its group/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('a fresh one is made 0700 and works', async () => {
    const dir = path.join(base, 'fresh', 'nested');
    const fresh = new Runtime({ root: dir });
    const c = await fresh.run({ image: 'busybox', command: ['true'], remove: true });
    expect((await c.wait()).exitCode).toBe(0);
    for (const d of ['', 'images', 'containers', 'names', 'tmp']) expect(fs.statSync(path.join(dir, d)).mode & 0o777).toBe(0o700);
  });
});
