// Issue 14: a start's and a `--rm` removal's file system steps run as batches, one job of the
// pool each (src/fsbatch.ts). The batch keeps the order, stops at the first failure (nothing
// after it runs), goes on only where an op says so, and tolerates only the errnos named. The
// batched removal keeps every refusal of the step-by-step one: a mount on the host inside a
// container stops it before anything changes, and what it removes is the whole container
// (directory, names, lock, cgroup directories), nothing else.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { containerCgroupDirs } from '../src/cgroup';
import { NsboxError } from '../src/errors';
import { fsBatch, isBatchError } from '../src/fsbatch';
import { ownStartTime } from '../src/proc';
import { Runtime } from '../src/runtime';
import { distModule } from './helpers';

let base: string;
let root: string;
let rt: Runtime;

beforeAll(() => {
  distModule('container');
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-fsbatch-'));
  root = path.join(base, 'root');
  rt = new Runtime({ root });
});
afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

describe('fsBatch', () => {
  it('runs the ops in order and stops at the first failure: nothing after it runs', async () => {
    const d = fs.mkdtempSync(path.join(base, 'b-'));
    const r = await fsBatch([
      { op: 'mkdir', path: path.join(d, 'a'), mode: 0o700 },
      {
        op: 'write',
        path: path.join(d, 'a', 'f'),
        data: 'hello',
        flags: fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL,
        mode: 0o640,
        setMode: true,
      },
      { op: 'rename', path: path.join(d, 'a'), to: path.join(d, 'b') },
      // Fails: 'a' is gone. The mkdir after it must not run.
      { op: 'rmdir', path: path.join(d, 'a') },
      { op: 'mkdir', path: path.join(d, 'c'), mode: 0o700 },
    ]);
    expect(r.slice(0, 3)).toEqual([null, null, null]);
    expect(r[3]).toMatchObject({ code: 'ENOENT', syscall: 'rmdir' });
    expect(r[4]).toBeUndefined();
    expect(fs.readFileSync(path.join(d, 'b', 'f'), 'utf8')).toBe('hello');
    expect(fs.statSync(path.join(d, 'b', 'f')).mode & 0o777).toBe(0o640);
    expect(fs.existsSync(path.join(d, 'c'))).toBe(false);
  });

  it('goes on after a failure only where the op says so, and tolerates only the errnos named', async () => {
    const d = fs.mkdtempSync(path.join(base, 'b-'));
    fs.mkdirSync(path.join(d, 'full'));
    fs.writeFileSync(path.join(d, 'full', 'x'), '');
    const r = await fsBatch([
      { op: 'rmdir', path: path.join(d, 'none'), tolerate: ['ENOENT'] },
      { op: 'rmdir', path: path.join(d, 'full'), tolerate: ['ENOENT'], goOn: true },
      { op: 'exists', path: path.join(d, 'full', 'x') },
      { op: 'exists', path: path.join(d, 'none') },
      { op: 'read', path: path.join(d, 'full', 'x') },
      { op: 'symlink', path: path.join(d, 'link'), to: 'target' },
      { op: 'readLinks', path: d },
      { op: 'stat', path: d },
      { op: 'removeTree', path: path.join(d, 'full') },
      { op: 'unlink', path: path.join(d, 'link') },
    ]);
    expect(r[0]).toBeNull();
    expect(r[1]).toMatchObject({ code: 'ENOTEMPTY' });
    expect(r.slice(2, 6)).toEqual([true, false, '', null]);
    expect(r[6]).toEqual({ link: 'target' });
    expect(r[7]).toMatchObject({ ino: fs.statSync(d).ino });
    expect(r.slice(8)).toEqual([null, null]);
    expect(fs.readdirSync(d)).toEqual([]);
  });

  it('refuses a malformed op before running any', async () => {
    const d = path.join(base, 'never');
    await expect(
      fsBatch([
        { op: 'mkdir', path: d },
        { op: 'chmod' as 'mkdir', path: d },
      ]),
    ).rejects.toThrow(/op 1 is not a valid op/);
    await expect(fsBatch([{ op: 'rename', path: d }])).rejects.toThrow(/op 0/);
    await expect(fsBatch([{ op: 'mkdir', path: `${d}\0x` }])).rejects.toThrow(/op 0/);
    expect(fs.existsSync(d)).toBe(false);
  });

  it('reports the failure of a write with its syscall', async () => {
    const [r] = await fsBatch([
      { op: 'write', path: path.join(base, 'no', 'such', 'f'), data: 'x', flags: fs.constants.O_WRONLY | fs.constants.O_CREAT, mode: 0o600 },
    ]);
    expect(isBatchError(r)).toBe(true);
    expect(r).toMatchObject({ code: 'ENOENT', syscall: 'open' });
  });
});

// The CLI's run has its batches run on the JS thread (runBatchesInline): the same results as
// the pool's, the same refusal of a bad op, and no pool thread started for them. Each way in
// a fresh process: the switch is for the whole process, and the pool, once started, stays.
describe('batches run inline', () => {
  const script = `
    const fs = require('node:fs');
    const path = require('node:path');
    const { fsBatch, runBatchesInline } = require(process.env.FSBATCH);
    const threads = () => fs.readdirSync('/proc/self/task').length;
    const before = threads();
    if (process.env.INLINE) runBatchesInline();
    const d = process.env.DIR;
    fs.mkdirSync(path.join(d, 'full'));
    fs.writeFileSync(path.join(d, 'full', 'x'), 'x');
    (async () => {
      const r = await fsBatch([
        { op: 'mkdir', path: path.join(d, 'a'), mode: 0o700 },
        { op: 'write', path: path.join(d, 'a', 'f'), data: 'hello', flags: fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode: 0o640, setMode: true },
        { op: 'rename', path: path.join(d, 'a'), to: path.join(d, 'b') },
        { op: 'rmdir', path: path.join(d, 'full'), tolerate: ['ENOENT'], goOn: true },
        { op: 'read', path: path.join(d, 'b', 'f') },
        { op: 'exists', path: path.join(d, 'a') },
        { op: 'symlink', path: path.join(d, 'link'), to: 'target' },
        { op: 'readLinks', path: d },
        { op: 'stat', path: path.join(d, 'b') },
        { op: 'removeTree', path: path.join(d, 'full') },
        { op: 'rmdir', path: path.join(d, 'a') },
        { op: 'mkdir', path: path.join(d, 'never'), mode: 0o700 },
      ]);
      let refused = '';
      await fsBatch([{ op: 'mkdir', path: path.join(d, 'never') }, { op: 'chmod', path: d }]).catch((e) => (refused = e.message));
      const stat = r[8];
      if (stat) stat.ino = stat.ino === fs.statSync(path.join(d, 'b')).ino;
      console.log(JSON.stringify({ r: r.map((x) => (x === undefined ? 'not run' : x)), refused, left: fs.readdirSync(d).sort(), grew: threads() - before }));
    })();
  `;
  const runWay = async (inline: boolean) => {
    const dir = fs.mkdtempSync(path.join(base, 'inline-'));
    const r = spawnSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      env: { ...process.env, FSBATCH: distModule('fsbatch'), DIR: dir, UV_THREADPOOL_SIZE: '8', ...(inline ? { INLINE: '1' } : {}) },
    });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout) as { r: unknown[]; refused: string; left: string[]; grew: number };
  };

  it('gives what the pool gives, refuses what it refuses, and starts no pool thread', async () => {
    const pool = await runWay(false);
    const inline = await runWay(true);
    expect(inline.r).toEqual(pool.r);
    expect(inline.r[3]).toMatchObject({ code: 'ENOTEMPTY' });
    expect(inline.r[10]).toMatchObject({ code: 'ENOENT', syscall: 'rmdir' });
    expect(inline.r[11]).toBe('not run');
    expect(inline.r[8]).toMatchObject({ ino: true });
    expect(inline.refused).toMatch(/op 1 is not a valid op/);
    expect(inline.left).toEqual(['b', 'link']);
    expect(inline.left).toEqual(pool.left);
    // The pool's way starts its 8 threads; the inline way none.
    expect(pool.grew).toBeGreaterThanOrEqual(8);
    expect(inline.grew).toBe(0);
  });
});

describe('the batched removal', () => {
  it('refuses a container with a mount on the host inside it, changing nothing; removes all of it once unmounted', async () => {
    const c = await rt.run({ image: 'busybox', command: ['true'], name: 'mounted-in', stdio: 'ignore' });
    await c.wait();
    const dir = path.join(root, 'containers', c.id!);
    // Deeper than merged/: only the host's mount table shows it before the rename.
    const mountPoint = path.join(dir, 'upper', 'etc');
    expect(spawnSync('mount', ['-t', 'tmpfs', 'none', mountPoint]).status).toBe(0);
    try {
      const err = await rt.remove(c.id!).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).code).toBe('EBUSY');
      expect((err as NsboxError).message).toMatch(/upper\/etc is a mount point on the host/);
      expect(fs.existsSync(path.join(dir, 'container.json'))).toBe(true);
      expect(fs.readlinkSync(path.join(root, 'names', 'mounted-in'))).toBe(c.id);
      expect(fs.readdirSync(path.join(root, 'locks'))).toEqual([]);
    } finally {
      spawnSync('umount', [mountPoint]);
    }
    await rt.remove(c.id!);
    expect(fs.readdirSync(path.join(root, 'containers'))).toEqual([]);
    expect(fs.existsSync(path.join(root, 'names', 'mounted-in'))).toBe(false);
    expect(fs.readdirSync(path.join(root, 'locks'))).toEqual([]);
    for (const cg of containerCgroupDirs(c.id!)) expect(fs.existsSync(cg)).toBe(false);
  });

  it('a --rm container with a name leaves nothing once wait() resolves, and releases only its own name', async () => {
    fs.symlinkSync('000000000000', path.join(root, 'names', 'someone-else'));
    try {
      const c = await rt.run({ image: 'busybox', command: ['true'], name: 'gone-after', stdio: 'ignore', remove: true });
      const cgroups = containerCgroupDirs(c.id!);
      expect((await c.wait()).exitCode).toBe(0);
      expect(fs.readdirSync(path.join(root, 'containers'))).toEqual([]);
      expect(fs.readdirSync(path.join(root, 'names'))).toEqual(['someone-else']);
      expect(fs.readdirSync(path.join(root, 'locks'))).toEqual([]);
      expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
      for (const cg of cgroups) expect(fs.existsSync(cg)).toBe(false);
    } finally {
      fs.unlinkSync(path.join(root, 'names', 'someone-else'));
    }
  });

  it('a --rm container whose lock another holder has at its exit is removed only once that holder lets go', async () => {
    const c = await rt.run({ image: 'busybox', command: ['sleep', '0.2'], stdio: 'ignore', remove: true });
    const dir = path.join(root, 'containers', c.id!);
    const lock = path.join(root, 'locks', c.id!);
    // A live holder (this process, as a commit would be): the removal must wait for it.
    fs.symlinkSync(`${process.pid}-${ownStartTime()}-commit`, lock);
    let waited = false;
    const done = c.wait().then(() => (waited = true));
    await new Promise((r) => c.once('exit', r));
    await new Promise((r) => setTimeout(r, 300));
    expect(waited).toBe(false);
    expect(fs.existsSync(path.join(dir, 'container.json'))).toBe(true);
    expect(fs.readlinkSync(lock)).toBe(`${process.pid}-${ownStartTime()}-commit`);
    fs.unlinkSync(lock);
    await done;
    expect(fs.existsSync(dir)).toBe(false);
    expect(fs.readdirSync(path.join(root, 'containers'))).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'locks'))).toEqual([]);
  });
});
