// commit against a container that fights it: swapping directories and files of its write
// layer for symlinks to a private host directory while it is committed, names that are not
// UTF-8, 5,000 nested directories, and whiteout names of the other driver.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { removeTree } from '../src/fsat';
import { Runtime } from '../src/runtime';
import { collect, treeContains, unionMounts } from './helpers';

const SECRET = `host-secret-${process.pid}-${Math.random().toString(36).slice(2)}`;

let root: string;
let host: string;
let rt: Runtime;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-commit-walk-'));
  host = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-commit-walk-host-'));
  rt = new Runtime({ root });
});
afterAll(() => {
  // An image of 5,000 nested directories is beyond fs.rmSync's recursion.
  removeTree(root, { force: true });
  removeTree(host, { force: true });
});
afterEach(() => expect(unionMounts().filter((l) => l.includes(root))).toEqual([]));

const treeHasSecret = (dir: string): boolean => treeContains(dir, SECRET);

async function output(image: string, script: string): Promise<string> {
  const c = await rt.run({ image, command: ['sh', '-c', script], remove: true });
  const out = collect(c.stdout);
  await c.wait();
  return out;
}

describe('commit of a container swapping its files for symlinks to the host', () => {
  it('never brings a host file into the image or the tarball', async () => {
    const priv = path.join(host, 'private');
    fs.mkdirSync(priv, { mode: 0o700 });
    fs.writeFileSync(path.join(priv, 'secret'), SECRET);
    // Directories (at the root and deep down) and files each become a symlink to the host
    // directory (or its secret) and back, as fast as the shell can: a real directory is
    // renamed away and back, so that each name spends about as long as either. The
    // directories hold a file named like the host's: a walk that lists a directory and then
    // opens its entries by path would open the host's file once the symlink is in place.
    const script = `
      P=$1
      for n in 1 2 3 4 5 6 7 8; do
        mkdir -p /s$n /deep/a/b/s$n /held; echo inner > /s$n/secret; echo inner > /deep/a/b/s$n/secret
        echo plain > /f$n
      done
      echo ready
      while :; do
        for n in 1 2 3 4 5 6 7 8; do
          mv /s$n /held/s$n; ln -s "$P" /s$n
          mv /deep/a/b/s$n /held/d$n; ln -s "$P" /deep/a/b/s$n
          mv /f$n /held/f$n; ln -s "$P/secret" /f$n
        done
        for n in 1 2 3 4 5 6 7 8; do
          rm /s$n; mv /held/s$n /s$n
          rm /deep/a/b/s$n; mv /held/d$n /deep/a/b/s$n
          rm /f$n; mv /held/f$n /f$n
        done
      done`;
    const c = await rt.run({ image: 'busybox', command: ['sh', '-c', script, 'sh', priv] });
    await new Promise<void>((resolve) => c.stdout!.once('data', () => resolve()));
    const outcomes: string[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const tar = i % 4 === 3 ? path.join(host, `race-${i}.tar`) : undefined;
        try {
          const info = await c.commit(`race-${i}`, tar ? { output: tar } : {});
          expect(treeHasSecret(info.rootfs)).toBe(false);
          if (tar) expect(fs.readFileSync(tar).includes(SECRET)).toBe(false);
          outcomes.push('ok');
        } catch (err) {
          // Failing is allowed (the layers changed under the commit); leaking is not.
          expect(err).toBeInstanceOf(NsboxError);
          expect((err as NsboxError).message).toMatch(/changed/);
          if (tar) expect(fs.existsSync(tar)).toBe(false);
          outcomes.push((err as NsboxError).code);
        }
      }
      expect(c.running).toBe(true);
    } finally {
      await c.remove({ force: true });
    }
    // Nothing half-made is left in tmp/.
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
    // The container is frozen while its layers are read: every commit sees one moment of it
    // and succeeds (before the freezer, most of these failed as "changed").
    expect(outcomes).toEqual(Array(20).fill('ok'));
  });
});

describe('commit of names and trees the old walk broke on', () => {
  it('keeps a name that is not UTF-8, in the image and in the tarball', async () => {
    const c = await rt.run({ image: 'busybox', stdio: 'ignore', command: ['sh', '-c', 'echo bytes > "/tmp/$(printf \'bad\\377\\376name\')"'] });
    expect((await c.wait()).exitCode).toBe(0);
    const tar = path.join(host, 'bytes.tar');
    const info = await c.commit('bytes', { output: tar });
    const bad = Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0x6e, 0x61, 0x6d, 0x65]);
    const names = (dir: string) => (fs.readdirSync(dir, { encoding: 'buffer' }) as Buffer[]).map((b) => b.toString('hex'));
    expect(names(path.join(info.rootfs, 'tmp'))).toEqual([bad.toString('hex')]);
    const x = path.join(host, 'bytes-x');
    fs.mkdirSync(x);
    execFileSync('tar', ['-xf', tar, '-C', x, 'tmp']);
    expect(names(path.join(x, 'tmp'))).toEqual([bad.toString('hex')]);
    expect(fs.readFileSync(Buffer.concat([Buffer.from(`${x}/tmp/`), bad]), 'utf8')).toBe('bytes\n');
    await c.remove();
  });

  it('commits 5,000 nested directories and removes the container, leaving nothing', async () => {
    // ash cannot cd below PATH_MAX: five chains of 1,000 are nested from the inside out.
    const script = `
      D=d; i=1; while [ $i -lt 1000 ]; do D=$D/d; i=$((i+1)); done
      for n in 1 2 3 4 5; do mkdir -p /c$n/$D || exit 1; done
      echo bottom > /c5/$D/f
      for n in 5 4 3 2; do mv /c$n /c$((n-1))/$D/ || exit 1; done`;
    const c = await rt.run({ image: 'busybox', name: 'deep', stdio: 'ignore', command: ['sh', '-c', script] });
    expect((await c.wait()).exitCode).toBe(0);
    const tar = path.join(host, 'deep.tar');
    const info = await c.commit('deep', { output: tar });
    const listed = execFileSync('tar', ['-tf', tar], { maxBuffer: 1 << 30 })
      .toString()
      .trim()
      .split('\n');
    const deepest = listed.filter((n) => n.startsWith('c1/')).sort((a, b) => b.length - a.length)[0]!;
    expect(deepest.split('/').length).toBe(5000 + 4 + 1 + 1); // c1, 5,000 d, c2..c5, f
    expect(deepest.endsWith('/f')).toBe(true);
    expect(fs.existsSync(path.join(info.rootfs, 'c1', 'd'))).toBe(true);

    const dir = path.join(root, 'containers', c.id!);
    expect(fs.existsSync(dir)).toBe(true);
    await c.remove();
    expect(fs.existsSync(dir)).toBe(false);
    // The name is free again.
    const again = await rt.run({ image: 'busybox', name: 'deep', command: ['true'], stdio: 'ignore' });
    await again.wait();
    await again.remove();
  });
});

describe("whiteouts are the driver's", () => {
  it('overlay: .wh. names are ordinary files in the image', async (ctx) => {
    if (rt.storageDriver !== 'overlay') ctx.skip();
    const c = await rt.run({
      image: 'busybox',
      stdio: 'ignore',
      command: ['sh', '-c', 'echo a > /.wh.etc && mkdir -p /tmp && echo b > /tmp/.wh..wh..opq && echo c > /tmp/kept'],
    });
    expect((await c.wait()).exitCode).toBe(0);
    const tar = path.join(host, 'wh.tar');
    await c.commit('whiteout-names', { output: tar });
    const seen = await output('whiteout-names', 'cat /.wh.etc /tmp/.wh..wh..opq /tmp/kept; test -f /etc/passwd && echo etc');
    expect(seen).toBe('a\nb\nc\netc\n');
    const names = execFileSync('tar', ['-tf', tar], { encoding: 'utf8' }).split('\n');
    for (const n of ['.wh.etc', 'etc/', 'etc/passwd', 'tmp/.wh..wh..opq', 'tmp/kept']) expect(names).toContain(n);
    await c.remove();
  });
});
