// commit: a container's merged root (image plus writes, deletions honoured, no volumes)
// becomes an image and a tarball, from a running or a stopped container.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { Runtime } from '../src/runtime';
import { collect, unionMounts } from './helpers';

let root: string;
let host: string;
let rt: Runtime;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-commit-'));
  host = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-commit-host-'));
  rt = new Runtime({ root });
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
  fs.rmSync(host, { recursive: true, force: true });
});
afterEach(() => expect(unionMounts().filter((l) => l.includes(root))).toEqual([]));

const listing = (tar: string) => execFileSync('tar', ['-tvf', tar]).toString();
const names = (tar: string) =>
  execFileSync('tar', ['-tf', tar])
    .toString()
    .split('\n')
    .map((n) => n.replace(/^\.\//, '').replace(/\/$/, ''));

async function output(image: string, script: string): Promise<string> {
  const c = await rt.run({ image, command: ['sh', '-c', script], remove: true });
  const out = collect(c.stdout);
  await c.wait();
  return out;
}

describe('commit', () => {
  it('of a stopped container: new file in, deleted file out, no volume data', async () => {
    const vol = path.join(host, 'vol');
    fs.mkdirSync(vol);
    fs.writeFileSync(path.join(vol, 'secret'), 'volume data\n');
    const c = await rt.run({
      image: 'busybox',
      volumes: [`${vol}:/data`],
      stdio: 'ignore',
      command: ['sh', '-c', 'echo new > /etc/added && rm /bin/ls && mkdir -p /opt/app && echo v1 > /opt/app/version && echo more > /data/written'],
    });
    expect((await c.wait()).exitCode).toBe(0);
    const tar = path.join(host, 'stopped.tar');
    const info = await c.commit('snap-stopped', { output: tar });
    expect(info).toMatchObject({ name: 'snap-stopped', source: 'commit' });

    const n = names(tar);
    expect(n).toContain('etc/added');
    expect(n).toContain('opt/app/version');
    expect(n).not.toContain('bin/ls');
    expect(n).toContain('bin/sh');
    expect(n).toContain('data'); // the mount point stays, empty
    expect(n.filter((x) => x.startsWith('data/'))).toEqual([]);
    // no whiteout devices in the result
    expect(
      listing(tar)
        .split('\n')
        .filter((l) => l.startsWith('c')),
    ).toEqual([]);

    const seen = await output('snap-stopped', 'cat /etc/added /opt/app/version; test -e /bin/ls || echo no-ls; ls /data | wc -l');
    expect(seen).toBe('new\nv1\nno-ls\n0\n');

    // and the tarball imports as the same image
    await rt.import(tar, 'snap-imported');
    expect(await output('snap-imported', 'cat /etc/added; test -e /bin/ls || echo no-ls')).toBe('new\nno-ls\n');
    await c.remove();
    expect(fs.readFileSync(path.join(vol, 'written'), 'utf8')).toBe('more\n');
  });

  it('shares unchanged files with the parent image and copies what the container wrote', async () => {
    const c = await rt.run({
      image: 'busybox',
      stdio: 'ignore',
      command: ['sh', '-c', 'echo mine > /etc/mine && chown 12:34 /etc/mine && chmod 4750 /etc/mine && echo x >> /etc/passwd'],
    });
    expect((await c.wait()).exitCode).toBe(0);
    const info = await c.commit('snap-shared');
    const base = rt.images.get('busybox').rootfs;
    const ino = (p: string) => fs.statSync(p).ino;
    // unchanged: the same inode as in the parent image
    expect(ino(path.join(info.rootfs, 'bin/busybox'))).toBe(ino(path.join(base, 'bin/busybox')));
    // changed or new: a file of its own, with the owner and mode the container gave it
    expect(ino(path.join(info.rootfs, 'etc/passwd'))).not.toBe(ino(path.join(base, 'etc/passwd')));
    expect(fs.readFileSync(path.join(base, 'etc/passwd'), 'utf8')).not.toMatch(/\nx\n$/);
    const mine = fs.statSync(path.join(info.rootfs, 'etc/mine'));
    expect({ mode: (mine.mode & 0o7777).toString(8), uid: mine.uid, gid: mine.gid }).toEqual({ mode: '4750', uid: 12, gid: 34 });
    // a container of the new image writing to a shared file leaves both images as they were
    const before = fs.readFileSync(path.join(base, 'etc/group'), 'utf8');
    expect(await output('snap-shared', 'echo y >> /etc/group && tail -1 /etc/group')).toBe('y\n');
    expect(fs.readFileSync(path.join(base, 'etc/group'), 'utf8')).toBe(before);
    expect(fs.readFileSync(path.join(info.rootfs, 'etc/group'), 'utf8')).toBe(before);
    await c.remove();
  });

  it('of a running container', async () => {
    const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'echo live > /state && rm /bin/cat && echo ready && exec sleep 1000'] });
    await new Promise<void>((resolve) => c.stdout!.once('data', () => resolve()));
    const info = await c.commit('snap-running');
    expect(c.running).toBe(true);
    const seen = await output(info.name, 'busybox cat /state; test -e /bin/cat || echo no-cat');
    expect(seen).toBe('live\nno-cat\n');
    await c.remove({ force: true });
  });

  it('refuses an existing image name and leaves nothing behind', async () => {
    const c = await rt.run({ image: 'busybox', command: ['true'], stdio: 'ignore' });
    await c.wait();
    const tmpBefore = fs.readdirSync(path.join(root, 'tmp'));
    await expect(c.commit('busybox')).rejects.toMatchObject({ code: 'CONFLICT' });
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual(tmpBefore);
    await c.remove();
  });
});

describe('images', () => {
  it('refuses to remove an image in use, unless forced', async () => {
    const c = await rt.run({ image: 'busybox', command: ['true'], stdio: 'ignore' });
    await c.wait();
    await c.commit('doomed');
    const user = await rt.run({ image: 'doomed', command: ['true'], stdio: 'ignore' });
    await user.wait();
    expect(() => rt.removeImage('doomed')).toThrow(/used by container/);
    await user.remove();
    await rt.removeImage('doomed');
    expect(rt.images.list().map((i) => i.name)).not.toContain('doomed');
    await c.remove();
  });

  it('names the entry of a crafted tarball it refuses, host untouched', async () => {
    const evil = path.join(host, 'evil-src');
    fs.mkdirSync(path.join(evil, 'a'), { recursive: true });
    fs.writeFileSync(path.join(evil, 'a', 'x'), 'x');
    const tar = path.join(host, 'evil.tar');
    // GNU tar keeps the ../ in the name with -P; the entry would land above the image root
    execFileSync('tar', ['-C', path.join(evil, 'a'), '-P', '-cf', tar, '../a/x']);
    const before = fs.readdirSync(path.join(root, 'images'));
    await expect(rt.import(tar, 'evil')).rejects.toMatchObject({ code: 'UNSAFE_PATH', message: expect.stringMatching(/\.\.\/a\/x/) });
    expect(fs.readdirSync(path.join(root, 'images'))).toEqual(before);
  });
});
