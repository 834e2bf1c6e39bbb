// Issue 10, items 2, 3 and 6. A commit racing a removal of its container from another process:
// the remover waits for the commit (or fails IN_USE after a bounded wait), and a commit whose
// layers vanished or were replaced during its walk publishes nothing; every image published
// is the container's root (its deleted file absent, its new files present). rmi -f of an image
// a running container uses is refused; of one only stopped containers use it is allowed, and a
// commit of them then fails clearly. A commit -o killed mid-way leaves no truncated tarball
// under the final name.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ContainerLock } from '../src/lock';
import { Runtime } from '../src/runtime';
import { newId } from '../src/layout';
import { ownStartTime, processStartTime } from '../src/proc';
import { distModule, until } from './helpers';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');

let base: string;
let root: string;
let rt: Runtime;

beforeAll(() => {
  distModule('container');
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-locks-'));
  root = path.join(base, 'root');
  rt = new Runtime({ root });
});
afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

/** The CLI in another process, asynchronously (the test process must keep running its commit). */
function nsbox(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string; ms: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, [MAIN, '--root', root, ...args], { env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err, ms: Date.now() - started })));
}

/** A stopped container with many new files (a long commit walk) and /etc/passwd deleted. */
async function bigContainer(files = 4000): Promise<string> {
  const c = await rt.run({
    image: 'busybox',
    command: ['sh', '-c', `mkdir /new && cd /new && i=0; while [ $i -lt ${files} ]; do echo $i > f$i; i=$((i+1)); done; rm /etc/passwd`],
    stdio: 'ignore',
  });
  expect((await c.wait()).exitCode).toBe(0);
  return c.id!;
}

/** The image is the container's root: its deleted file absent, every new file present. */
function expectTheContainersRoot(image: string, files: number): void {
  const rootfs = rt.images.get(image).rootfs;
  expect(fs.existsSync(path.join(rootfs, 'etc', 'passwd'))).toBe(false);
  expect(fs.existsSync(path.join(rootfs, 'bin', 'busybox'))).toBe(true);
  const names = fs.readdirSync(path.join(rootfs, 'new'));
  expect(names.length).toBe(files);
  expect(fs.readFileSync(path.join(rootfs, 'new', `f${files - 1}`), 'utf8')).toBe(`${files - 1}\n`);
}

/** Resolves once a commit's walk is under way: its temp image has content. */
async function walkStarted(): Promise<void> {
  await until(
    'the commit walk to start',
    () =>
      fs.readdirSync(path.join(root, 'tmp')).some((t) => {
        if (!t.startsWith('commit-')) return false;
        try {
          return fs.readdirSync(path.join(root, 'tmp', t, 'rootfs')).length > 0;
        } catch {
          return false;
        }
      }),
    20_000,
    2,
  );
}

describe('the container lock', () => {
  it('is held against everyone while its owner lives, and broken once the owner is dead (pid gone or reused)', async () => {
    rt.layout.ensure();
    const id = newId();
    const file = path.join(root, 'locks', id);
    // Owned by this (live) process: nobody else gets it.
    fs.symlinkSync(`${process.pid}-${ownStartTime()}-commit`, file);
    expect(ContainerLock.tryAcquire(rt.layout, id, 'remove')).toBeUndefined();
    // The same pid with another start time: a reused pid, its owner is dead.
    fs.rmSync(file);
    fs.symlinkSync(`${process.pid}-1-commit`, file);
    const broken = ContainerLock.tryAcquire(rt.layout, id, 'remove')!;
    expect(broken).toBeDefined();
    expect(fs.readlinkSync(file)).toBe(`${process.pid}-${ownStartTime()}-remove`);
    broken.release();
    // A process that has exited.
    const p = spawn('sleep', ['0.05']);
    const start = await new Promise<string>((resolve) => setTimeout(() => resolve(processStartTime(p.pid!)!), 10));
    await new Promise((r) => p.once('exit', r));
    fs.symlinkSync(`${p.pid}-${start}-remove`, file);
    const again = ContainerLock.tryAcquire(rt.layout, id, 'commit')!;
    expect(again).toBeDefined();
    again.release();
    expect(fs.readdirSync(path.join(root, 'locks'))).toEqual([]);
  });
});

describe('commit racing rm -f', () => {
  it('rm -f from another process during the walk waits for the commit, which publishes the right image', async () => {
    const id = await bigContainer();
    // The commit runs in another process (its walk would hold up this one's event loop).
    const commit = nsbox(['commit', id, 'raced-rm']);
    await walkStarted();
    expect(fs.readlinkSync(path.join(root, 'locks', id))).toMatch(/^\d+-\d+-commit$/);
    const rm = await nsbox(['rm', '-f', id]);
    const committed = await commit;
    // The remover waited for the commit to end, then removed the container.
    expect(rm).toMatchObject({ code: 0 });
    expect(committed).toMatchObject({ code: 0, out: 'raced-rm\n' });
    expectTheContainersRoot('raced-rm', 4000);
    expect(fs.existsSync(path.join(root, 'containers', id))).toBe(false);
    await rt.removeImage('raced-rm');
  });

  it('rm -f fails with IN_USE once its bounded wait is over, and the container stays whole', async () => {
    const c = await rt.run({ image: 'busybox', command: ['true'], name: 'held', stdio: 'ignore' });
    await c.wait();
    const lock = ContainerLock.tryAcquire(rt.layout, c.id!, 'commit')!;
    expect(lock).toBeDefined();
    try {
      const rm = await nsbox(['rm', '-f', 'held'], { NSBOX_LOCK_WAIT_MS: '300' });
      expect(rm.code).toBe(125);
      expect(rm.err).toMatch(new RegExp(`IN_USE|cannot remove it: process ${process.pid} is busy with it \\(commit\\)`));
      expect(rm.ms).toBeGreaterThanOrEqual(300);
      expect(rt.inspect('held').status).toBe('exited');
    } finally {
      lock.release();
    }
    expect((await nsbox(['rm', 'held'])).code).toBe(0);
  });

  it('a commit whose container directory is renamed away (a remover ignoring the lock) during the walk publishes nothing', async () => {
    const id = await bigContainer();
    const dir = path.join(root, 'containers', id);
    const commit = nsbox(['commit', id, 'raced-mv']);
    await walkStarted();
    fs.renameSync(dir, `${dir}-elsewhere`);
    const result = await commit;
    if (result.code === 0) {
      // Only if the walk had finished before the rename: then it must be the container's root.
      expectTheContainersRoot('raced-mv', 4000);
    } else {
      expect(result.err).toMatch(/removed or replaced during the commit: no image made|ENOENT/);
      expect(rt.images.find('raced-mv')).toBeUndefined();
    }
    fs.renameSync(`${dir}-elsewhere`, dir);
    await rt.remove(id);
  });

  it('a commit whose write layer is replaced during the walk publishes nothing', async () => {
    const id = await bigContainer();
    const upper = path.join(root, 'containers', id, rt.inspect(id).driver === 'vfs' ? 'rootfs' : 'upper');
    // A copy made of hard links: the same files in a new directory tree.
    expect(spawnSync('cp', ['-al', upper, `${upper}-copy`]).status).toBe(0);
    const commit = nsbox(['commit', id, 'raced-upper']);
    await walkStarted();
    // The layer replaced under the walk (two renames: the walk itself never notices).
    fs.renameSync(upper, `${upper}-old`);
    fs.renameSync(`${upper}-copy`, upper);
    const result = await commit;
    expect(result.code).toBe(125);
    expect(result.err).toMatch(/its layers were removed or replaced during the commit: no image made/);
    expect(rt.images.find('raced-upper')).toBeUndefined();
    expect(fs.readdirSync(path.join(root, 'tmp')).filter((t) => t.startsWith('commit-'))).toEqual([]);
    await rt.remove(id);
  });
});

describe('rmi -f of an image containers use', () => {
  it('is refused while a running container uses it, even forced; allowed for stopped ones, whose commit then fails clearly', async () => {
    const src = await rt.run({ image: 'busybox', command: ['true'], stdio: 'ignore' });
    await src.wait();
    await src.commit('shared-img');
    await src.remove();
    const running = await rt.run({ image: 'shared-img', command: ['sleep', '100'], name: 'user-running', stdio: 'ignore' });
    const stopped = await rt.run({ image: 'shared-img', command: ['true'], name: 'user-stopped', stdio: 'ignore' });
    await stopped.wait();
    const layer = rt.images.get('shared-img').rootfs;

    const forced = await nsbox(['rmi', '-f', 'shared-img']);
    expect(forced.code).toBe(125);
    expect(forced.err).toMatch(/used by running container user-running/);
    expect(fs.existsSync(path.join(layer, 'bin', 'busybox'))).toBe(true);
    expect(() => rt.removeImage('shared-img', { force: true })).toThrow(expect.objectContaining({ code: 'IN_USE' }));
    // The running container's root is still there: it can run a program from it.
    expect(fs.readlinkSync(`/proc/${running.pid}/root`)).toBeTruthy();
    expect(fs.existsSync(`/proc/${running.pid}/root/bin/busybox`)).toBe(true);

    await running.remove({ force: true });
    expect(() => rt.removeImage('shared-img')).toThrow(/used by container user-stopped/);
    await rt.removeImage('shared-img', { force: true });
    expect(fs.existsSync(layer)).toBe(false);
    // The stopped container's record stays; committing it says why it cannot be.
    expect(rt.inspect('user-stopped')).toMatchObject({ status: 'exited', image: 'shared-img' });
    await expect(rt.commit('user-stopped', 'from-orphan')).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/its image shared-img was removed/),
    });
    expect(rt.images.find('from-orphan')).toBeUndefined();
    await rt.remove('user-stopped');
  });
});

describe('commit -o killed mid-way', () => {
  it('leaves the tarball absent or complete under its final name, never truncated', async () => {
    const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'dd if=/dev/urandom of=/big bs=1M count=48 2>/dev/null'], stdio: 'ignore' });
    expect((await c.wait()).exitCode).toBe(0);
    const file = path.join(base, 'out.tar');
    let killedMidWay = 0;
    for (let i = 0; i < 6; i++) {
      const child = spawn(process.execPath, [MAIN, '--root', root, 'commit', '-o', file, c.id!, `killed-${i}`], { stdio: 'ignore' });
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      const temp = path.join(base, `.out.tar.nsbox-tmp-${child.pid}`);
      // Killed while the temp tarball grows (the first rounds), or at a random moment.
      if (i < 3) {
        await until(
          'the tarball to be half written',
          () => {
            try {
              return fs.statSync(temp).size > 4 << 20;
            } catch {
              return false;
            }
          },
          20_000,
          2,
        );
        killedMidWay++;
      } else {
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 500));
      }
      child.kill('SIGKILL');
      await exited;
      if (fs.existsSync(file)) {
        expect(spawnSync('tar', ['-tf', file]).status).toBe(0);
        expect(fs.statSync(file).size).toBeGreaterThan(48 << 20);
      }
      fs.rmSync(temp, { force: true });
    }
    expect(killedMidWay).toBe(3);
    // Run to its end, it renames a complete tarball into place and leaves no temp file.
    fs.rmSync(file, { force: true });
    await c.commit('whole', { output: file });
    expect(spawnSync('tar', ['-tf', file]).stdout.toString()).toMatch(/big/);
    expect(fs.readdirSync(base).filter((f) => f.includes('nsbox-tmp'))).toEqual([]);
    // A failed commit -o leaves neither the file nor its temp.
    const again = path.join(base, 'again.tar');
    await expect(c.commit('whole', { output: again })).rejects.toMatchObject({ code: 'CONFLICT' });
    expect(fs.existsSync(again)).toBe(false);
    await c.remove();
  });
});
