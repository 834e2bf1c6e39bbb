// Issue 10, item 1, state by state: what a process killed at each step of a create or a remove
// leaves (a 'creating' record of a dead supervisor, a tombstone of a dead remover, a directory
// without a record, a name pointing to nothing, an exited --rm container of a SIGKILLed
// supervisor) is finished by the next Runtime at its first use and by prune; what cannot be
// finished is listed (Dead), and rm -f NAME works on every one of them.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { newId } from '../src/layout';
import { ownStartTime, processStartTime } from '../src/proc';
import { Runtime } from '../src/runtime';
import { until } from './helpers';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');

let base: string;
let root: string;
let template: Record<string, unknown>;
/** A pid and start time of a process that has exited. */
let dead: { pid: number; start: string };

beforeAll(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-recovery-'));
  root = path.join(base, 'root');
  const rt = new Runtime({ root });
  const c = await rt.run({ image: 'busybox', command: ['true'], stdio: 'ignore' });
  await c.wait();
  template = JSON.parse(fs.readFileSync(path.join(root, 'containers', c.id!, 'container.json'), 'utf8')) as Record<string, unknown>;
  await c.remove();
  const p = spawn('sleep', ['0.05']);
  const start = await new Promise<string>((resolve) => setTimeout(() => resolve(processStartTime(p.pid!)!), 10));
  await new Promise((r) => p.once('exit', r));
  dead = { pid: p.pid!, start };
});
afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

function nsbox(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, '--root', root, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** containers/<entry> holding a record (fields over the template's), a write layer, and a name. */
function plant(fields: Record<string, unknown>, opts: { entry?: (id: string) => string; name?: string } = {}): { id: string; dir: string } {
  const id = newId();
  const dir = path.join(root, 'containers', opts.entry ? opts.entry(id) : id);
  fs.mkdirSync(path.join(dir, 'upper', 'etc'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'upper', 'etc', 'written'), 'x');
  fs.mkdirSync(path.join(dir, 'work'));
  fs.mkdirSync(path.join(dir, 'merged'));
  fs.writeFileSync(path.join(dir, 'container.json'), JSON.stringify({ ...template, id, name: opts.name ?? null, ...fields }));
  if (opts.name) fs.symlinkSync(id, path.join(root, 'names', opts.name));
  return { id, dir };
}

const deadSupervisor = () => ({ supervisor: dead.pid, supervisorStart: dead.start });

describe('what a killed create or remove leaves', () => {
  it('is finished by the next Runtime at its first list: half made, half removed, recordless, names of nothing, --rm never removed', async () => {
    const creating = plant({ status: 'creating', pid: null, pidStart: null, pidNamespace: null, ...deadSupervisor() }, { name: 'half-made' });
    const tomb = plant({}, { entry: (id) => `${id}.removing-${dead.pid}-${dead.start}`, name: 'half-removed' });
    const recordless = newId();
    fs.mkdirSync(path.join(root, 'containers', recordless, 'upper'), { recursive: true });
    fs.symlinkSync(newId(), path.join(root, 'names', 'dangling'));
    const rmLeft = plant({ status: 'exited', remove: true, exitCode: 0, ...deadSupervisor() }, { name: 'rm-left' });
    const kept = plant({ status: 'exited', exitCode: 3, ...deadSupervisor() }, { name: 'kept' });

    const rt = new Runtime({ root });
    const listed = rt.list({ all: true });
    expect(listed.map((c) => c.id)).toEqual([kept.id]);
    expect(listed[0]).toMatchObject({ status: 'exited', exitCode: 3, name: 'kept' });
    expect(fs.readdirSync(path.join(root, 'containers'))).toEqual([kept.id]);
    expect(fs.readdirSync(path.join(root, 'names'))).toEqual(['kept']);
    for (const x of [creating, tomb, rmLeft]) expect(fs.existsSync(x.dir)).toBe(false);
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
    await rt.prune();
    expect(fs.readdirSync(path.join(root, 'containers'))).toEqual([]);
  });

  it("a SIGKILLed supervisor's --rm container is removed by the next Runtime (not only by prune)", async () => {
    const script = `
      const { Runtime } = require(${JSON.stringify(path.join(__dirname, '..', 'dist'))});
      new Runtime({ root: ${JSON.stringify(root)} }).run({ image: 'busybox', command: ['sleep', '1000'], stdio: 'ignore', name: 'rm-orphan', remove: true })
        .then((c) => console.log(c.id + ' ' + c.pid));`;
    const sup = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [id, pid] = (await new Promise<string>((resolve) => sup.stdout.once('data', (d: Buffer) => resolve(d.toString())))).trim().split(' ');
    sup.kill('SIGKILL');
    await until('the container to die with its supervisor', () => !fs.existsSync(`/proc/${pid}`), 5000);
    expect(fs.existsSync(path.join(root, 'containers', id!, 'upper'))).toBe(true);
    const rt = new Runtime({ root });
    expect(rt.list({ all: true })).toEqual([]);
    expect(fs.existsSync(path.join(root, 'containers', id!))).toBe(false);
    expect(fs.existsSync(path.join(root, 'names', 'rm-orphan'))).toBe(false);
    const again = await rt.run({ image: 'busybox', command: ['true'], name: 'rm-orphan', stdio: 'ignore', remove: true });
    await again.wait();
  });

  it('what cannot be finished is listed as Dead, and rm -f NAME removes it once it can be', () => {
    const stuck = plant({ status: 'creating', pid: null, pidStart: null, pidNamespace: null, ...deadSupervisor() }, { name: 'stuck' });
    // A mount on the host inside it: recovery refuses to delete through it.
    expect(spawnSync('mount', ['-t', 'tmpfs', 'none', path.join(stuck.dir, 'merged')]).status).toBe(0);
    try {
      const ps = nsbox(['ps', '-a']);
      expect(ps.out).toMatch(new RegExp(`${stuck.id} +stuck .*Dead`));
      const rm = nsbox(['rm', '-f', 'stuck']);
      expect(rm.code).toBe(125);
      expect(rm.err).toMatch(/merged is a mount point on the host/);
      expect(fs.existsSync(stuck.dir)).toBe(true);
    } finally {
      spawnSync('umount', [path.join(stuck.dir, 'merged')]);
    }
    expect(nsbox(['rm', '-f', 'stuck'])).toMatchObject({ code: 0, out: 'stuck\n' });
    expect(fs.existsSync(stuck.dir)).toBe(false);
    expect(fs.existsSync(path.join(root, 'names', 'stuck'))).toBe(false);
  });

  it('rm -f NAME works on a dangling name, a tombstone and a recordless directory', () => {
    fs.symlinkSync(newId(), path.join(root, 'names', 'nothing'));
    expect(nsbox(['rm', '-f', 'nothing'])).toMatchObject({ code: 0, out: 'nothing\n' });
    expect(fs.existsSync(path.join(root, 'names', 'nothing'))).toBe(false);
    // Made after the Runtime of each command below did its recovery: left to rm itself.
    const rt = new Runtime({ root });
    rt.list();
    const tomb = plant({}, { entry: (id) => `${id}.removing-${dead.pid}-${dead.start}`, name: 'tomb' });
    const bare = newId();
    fs.mkdirSync(path.join(root, 'containers', bare, 'upper'), { recursive: true });
    fs.symlinkSync(bare, path.join(root, 'names', 'bare'));
    expect(
      rt
        .list({ all: true })
        .map((c) => [c.name, c.status])
        .sort(),
    ).toEqual([
      ['bare', 'dead'],
      ['tomb', 'dead'],
    ]);
    return Promise.all([rt.remove('tomb', { force: true }), rt.remove('bare')]).then(() => {
      expect(fs.existsSync(tomb.dir)).toBe(false);
      expect(fs.readdirSync(path.join(root, 'containers'))).toEqual([]);
      expect(fs.readdirSync(path.join(root, 'names'))).toEqual([]);
    });
  });

  it('a container being created by a live process is shown as Creating, and neither rm nor prune touch it', () => {
    const live = plant(
      { status: 'creating', pid: null, pidStart: null, pidNamespace: null, supervisor: process.pid, supervisorStart: ownStartTime() },
      { name: 'in-making' },
    );
    expect(nsbox(['ps', '-a']).out).toMatch(/in-making .*Creating/);
    const rm = nsbox(['rm', '-f', 'in-making']);
    expect(rm.code).toBe(125);
    expect(rm.err).toMatch(/being created by process/);
    expect(nsbox(['prune']).code).toBe(0);
    expect(fs.existsSync(live.dir)).toBe(true);
    fs.rmSync(live.dir, { recursive: true });
    fs.rmSync(path.join(root, 'names', 'in-making'));
  });

  it("a name conflict's hint is true: rm -f NAME frees a name a running container holds", async () => {
    const rt = new Runtime({ root });
    const c = await rt.run({ image: 'busybox', command: ['sleep', '100'], name: 'taken', stdio: 'ignore' });
    const clash = nsbox(['run', '--name', 'taken', 'busybox', 'true']);
    expect(clash.code).toBe(125);
    expect(clash.err).toMatch(/nsbox rm -f taken frees it/);
    expect(nsbox(['rm', '-f', 'taken']).code).toBe(0);
    expect((await c.wait()).signal).toBe('SIGKILL');
    expect(nsbox(['run', '--rm', '--name', 'taken', 'busybox', 'true']).code).toBe(0);
  });
});
