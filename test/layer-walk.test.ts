// The layer walk a commit reads a container through (src/image/layer-walk.ts) and the fd-based
// calls under it: symlinks to host paths planted at every level, layers changed between the
// listing and the read (the window a running container has), names that are not UTF-8,
// trees deeper than any stack, whiteout names of the other driver, and removeTree.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { removeTree } from '../src/fsat';
import { MergedWalker, type MergedVisitor, type WalkEntry } from '../src/image/layer-walk';
import { writeMergedTar } from '../src/image/merged-tar';
import { MergedTreeBuilder, writeMergedTree } from '../src/image/merged-tree';
import { openFds, treeContains } from './helpers';

const SECRET = `host-secret-${process.pid}-${Math.random().toString(36).slice(2)}`;

let base: string;
let hostDir: string;
let lower: string;
let upper: string;

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-walk-'));
  // A host directory a container must never get into an image: 0700, a secret inside.
  hostDir = path.join(base, 'host');
  fs.mkdirSync(hostDir, { mode: 0o700 });
  fs.writeFileSync(path.join(hostDir, 'secret'), SECRET);
  lower = path.join(base, 'lower');
  upper = path.join(base, 'upper');
  fs.mkdirSync(lower);
  fs.mkdirSync(upper);
});

afterEach(() => {
  execFileSync('rm', ['-rf', base]);
});

function write(root: string, rel: string, content = rel): void {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), content);
}

const treeHasSecret = (dir: string): boolean => treeContains(dir, SECRET);

function tarHasSecret(tar: string): boolean {
  return fs.existsSync(tar) && fs.readFileSync(tar).includes(SECRET);
}

async function commitBoth(layers: string[], driver: 'overlay' | 'aufs' | 'vfs' = 'overlay'): Promise<{ tar: string; tree: string }> {
  const tar = path.join(base, `out-${Math.random().toString(36).slice(2)}.tar`);
  const tree = path.join(base, `tree-${Math.random().toString(36).slice(2)}`);
  fs.mkdirSync(tree);
  const builder = new MergedTreeBuilder(tree, [lower]);
  await writeMergedTar({ layers, driver }, tar, builder);
  return { tar, tree };
}

function tarNames(tar: string): string[] {
  return execFileSync('tar', ['-tf', tar], { encoding: 'utf8' }).trim().split('\n');
}

describe('symlinks to host paths in the layers', () => {
  it('are written as symlinks at every level and never followed, in the tarball and the tree', async () => {
    write(lower, 'a/b/c/file');
    write(upper, 'a/b/c/mine');
    // In the write layer, at the root, in a merged directory, deep down, over a lower
    // directory, and over a lower file.
    const links: Record<string, string> = {
      rootdir: hostDir,
      rootfile: path.join(hostDir, 'secret'),
      'a/dirlink': hostDir,
      'a/b/c/deep': hostDir,
      'a/b/c/deepfile': path.join(hostDir, 'secret'),
      'a/b/c/file': path.join(hostDir, 'secret'),
      relative: `../../${path.relative(base, hostDir)}`,
    };
    for (const [rel, target] of Object.entries(links)) fs.symlinkSync(target, path.join(upper, rel));
    fs.symlinkSync(hostDir, path.join(lower, 'lowerlink'));

    const { tar, tree } = await commitBoth([upper, lower]);
    expect(tarHasSecret(tar)).toBe(false);
    expect(treeHasSecret(tree)).toBe(false);
    const listing = execFileSync('tar', ['-tvf', tar], { encoding: 'utf8' });
    for (const [rel, target] of Object.entries(links)) {
      expect(listing).toContain(`${rel} -> ${target}`);
      expect(fs.readlinkSync(path.join(tree, rel))).toBe(target);
    }
    expect(fs.readlinkSync(path.join(tree, 'lowerlink'))).toBe(hostDir);
    expect(tarNames(tar)).not.toContain('a/b/c/deep/secret');
    expect(fs.readFileSync(path.join(tree, 'a/b/c/mine'), 'utf8')).toBe('a/b/c/mine');
  });

  it('refuses a layer root that is a symlink', async () => {
    const link = path.join(base, 'layerlink');
    fs.symlinkSync(hostDir, link);
    const err = await writeMergedTar({ layers: [link], driver: 'vfs' }, path.join(base, 'x.tar')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NsboxError);
    expect((err as NsboxError).code).toMatch(/^(ELOOP|ENOTDIR)$/);
    expect(fs.existsSync(path.join(base, 'x.tar'))).toBe(false);
  });
});

describe('layers changed during the walk (a running container)', () => {
  /** The tree builder, with `before` run on each entry before the builder sees it. */
  function hooked(tree: string, before: (e: WalkEntry) => void): MergedVisitor {
    const builder = new MergedTreeBuilder(tree, [lower]);
    return {
      entry: (e) => {
        before(e);
        return builder.entry(e);
      },
      leave: (e) => builder.leave(e),
    };
  }

  function swapForSymlink(rel: string, target: string): void {
    fs.rmSync(path.join(upper, rel), { recursive: true, force: true });
    fs.symlinkSync(target, path.join(upper, rel));
  }

  it('a directory swapped for a symlink after it was listed fails the commit, never followed', async () => {
    write(upper, 'd/inner');
    write(upper, 'e');
    const tar = path.join(base, 'out.tar');
    const tree = path.join(base, 'tree');
    fs.mkdirSync(tree);
    const also = hooked(tree, (e) => {
      if (e.path.toString() === 'd') swapForSymlink('d', hostDir);
    });
    const err = await writeMergedTar({ layers: [upper, lower], driver: 'overlay' }, tar, also).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(NsboxError);
    expect((err as NsboxError).code).toMatch(/^(ELOOP|ENOTDIR)$/);
    expect((err as NsboxError).message).toMatch(/\/d changed while the layers were read/);
    expect(fs.existsSync(tar)).toBe(false);
    expect(treeHasSecret(tree)).toBe(false);
  });

  it('a file swapped for a symlink before it is read (tarball) or copied (tree) fails the commit', async () => {
    write(upper, 'a');
    write(upper, 'b');
    for (const when of ['sibling', 'self'] as const) {
      fs.rmSync(path.join(upper, 'b'), { force: true });
      write(upper, 'b');
      const tar = path.join(base, `out-${when}.tar`);
      const tree = path.join(base, `tree-${when}`);
      fs.mkdirSync(tree);
      // 'sibling': after the listing, before the tarball reads b; 'self': after the tarball
      // read b, before the tree copies it.
      const also = hooked(tree, (e) => {
        const name = e.path.toString();
        if ((when === 'sibling' && name === 'a') || (when === 'self' && name === 'b')) swapForSymlink('b', path.join(hostDir, 'secret'));
      });
      const err = await writeMergedTar({ layers: [upper, lower], driver: 'overlay' }, tar, also).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).code).toBe('ELOOP');
      expect(fs.existsSync(tar)).toBe(false);
      expect(treeHasSecret(tree)).toBe(false);
    }
  });

  it('a file swapped for a fifo or a device is never opened (no hang, no device read)', async () => {
    write(upper, 'a');
    write(upper, 'b');
    write(upper, 'c');
    const tar = path.join(base, 'out.tar');
    const err = await writeMergedTar({ layers: [upper, lower], driver: 'overlay' }, tar, {
      entry: (e) => {
        if (e.path.toString() !== 'a') return;
        fs.rmSync(path.join(upper, 'b'));
        execFileSync('mkfifo', [path.join(upper, 'b')]);
      },
    }).catch((x: unknown) => x);
    expect((err as NsboxError).code).toBe('ENXIO');

    const tree = path.join(base, 'tree');
    fs.mkdirSync(tree);
    // b is a fifo now: skipped as such, not opened.
    expect(await writeMergedTree({ layers: [upper, lower], driver: 'vfs', shared: [] }, tree)).toMatchObject({ skipped: 1 });
    fs.rmSync(path.join(upper, 'b'));
    write(upper, 'b');
    const tree2 = path.join(base, 'tree2');
    fs.mkdirSync(tree2);
    const err3 = await new MergedWalker(
      { layers: [upper, lower], driver: 'overlay' },
      hooked(tree2, (e) => {
        if (e.path.toString() !== 'b') return;
        fs.rmSync(path.join(upper, 'b'));
        execFileSync('mknod', [path.join(upper, 'b'), 'b', '7', '0']);
      }),
    )
      .run()
      .catch((x: unknown) => x);
    expect((err3 as NsboxError).code).toBe('ENXIO');
  });

  it('a failed tree is emptied, its fds closed', async () => {
    const fdsBefore = openFds().length;
    for (let i = 0; i < 50; i++) write(upper, `deep/${'x/'.repeat(i)}f`);
    write(upper, 'z');
    const tree = path.join(base, 'tree');
    fs.mkdirSync(tree);
    const builder = new MergedTreeBuilder(tree, [lower]);
    const walk = new MergedWalker(
      { layers: [upper, lower], driver: 'overlay' },
      {
        entry: (e) => {
          if (e.path.toString() === 'z') swapForSymlink('z', path.join(hostDir, 'secret'));
          return builder.entry(e);
        },
        leave: (e) => builder.leave(e),
      },
    );
    await expect(walk.run()).rejects.toMatchObject({ code: 'ELOOP' });
    await builder.abort();
    expect(fs.readdirSync(tree)).toEqual([]);
    expect(openFds().length).toBe(fdsBefore);
  });
});

describe('names are bytes', () => {
  const bad = Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0x6e]); // "bad\xff\xfen"
  const longBad = Buffer.concat([Buffer.from('l'.repeat(120)), Buffer.from([0xff])]);

  function joinBytes(...parts: (string | Buffer)[]): Buffer {
    return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
  }

  it('a name that is not UTF-8 reaches the tarball and the tree with the same bytes', async () => {
    const dir = joinBytes(upper, '/', bad);
    fs.mkdirSync(dir);
    fs.writeFileSync(joinBytes(dir, '/', bad), 'bytes');
    fs.writeFileSync(joinBytes(upper, '/', longBad), 'long');
    fs.symlinkSync(joinBytes('/target/', bad), joinBytes(upper, '/link'));
    fs.writeFileSync(joinBytes(lower, '/', bad, 'lower'), 'shared');

    const { tar, tree } = await commitBoth([upper, lower]);
    const names = (dir_: string | Buffer) => (fs.readdirSync(dir_, { encoding: 'buffer' }) as Buffer[]).map((b) => b.toString('hex')).sort();
    const expected = [bad, longBad, Buffer.from('link'), joinBytes(bad, 'lower')].map((b) => b.toString('hex')).sort();
    expect(names(tree)).toEqual(expected);
    expect(names(joinBytes(tree, '/', bad))).toEqual([bad.toString('hex')]);
    expect(fs.readFileSync(joinBytes(tree, '/', bad, '/', bad), 'utf8')).toBe('bytes');
    expect((fs.readlinkSync(joinBytes(tree, '/link'), { encoding: 'buffer' }) as Buffer).equals(joinBytes('/target/', bad))).toBe(true);

    const byTar = path.join(base, 'by-tar');
    fs.mkdirSync(byTar);
    execFileSync('tar', ['-xpf', tar, '-C', byTar]);
    expect(names(byTar)).toEqual(expected);
    expect(fs.readFileSync(joinBytes(byTar, '/', bad, '/', bad), 'utf8')).toBe('bytes');
    expect(fs.readFileSync(joinBytes(byTar, '/', longBad), 'utf8')).toBe('long');
    expect((fs.readlinkSync(joinBytes(byTar, '/link'), { encoding: 'buffer' }) as Buffer).equals(joinBytes('/target/', bad))).toBe(true);
  });
});

describe('deep trees', () => {
  /** Runs `at` in the directory `depth` levels of d/ below root: the full path is far beyond PATH_MAX. */
  function down<T>(root: string, depth: number, make: boolean, at: () => T): T {
    const cwd = process.cwd();
    try {
      process.chdir(root);
      for (let i = 0; i < depth; i++) {
        if (make) fs.mkdirSync('d');
        process.chdir('d');
      }
      return at();
    } finally {
      process.chdir(cwd);
    }
  }

  it('walks 5,000 nested directories with a bounded number of fds, and removes them', async () => {
    down(upper, 5000, true, () => fs.writeFileSync('f', 'bottom\n'));
    const fdsBefore = openFds().length;
    let most = 0;
    const tar = path.join(base, 'deep.tar');
    const tree = path.join(base, 'tree');
    fs.mkdirSync(tree);
    const builder = new MergedTreeBuilder(tree, [lower]);
    await writeMergedTar({ layers: [upper, lower], driver: 'overlay' }, tar, {
      entry: (e) => {
        if (e.path.length % 1000 === 1) most = Math.max(most, openFds().length);
        return builder.entry(e);
      },
      leave: (e) => builder.leave(e),
    });
    expect(most - fdsBefore).toBeLessThan(150);
    expect(openFds().length).toBe(fdsBefore);
    const listed = execFileSync('tar', ['-tf', tar], { maxBuffer: 1 << 30 })
      .toString()
      .trim()
      .split('\n');
    expect(listed.length).toBe(5002); // ./, 5000 directories, f
    expect(listed[listed.length - 1]).toBe(`${'d/'.repeat(5000)}f`);
    expect(down(tree, 5000, false, () => fs.readFileSync('f', 'utf8'))).toBe('bottom\n');

    removeTree(tree);
    removeTree(upper);
    expect(fs.existsSync(tree)).toBe(false);
    expect(fs.existsSync(upper)).toBe(false);
    expect(openFds().length).toBe(fdsBefore);
  });
});

describe("whiteouts are the driver's own", () => {
  it('overlay: .wh. names are ordinary files; aufs: a 0:0 device is an ordinary device', async () => {
    write(lower, 'etc/passwd');
    write(lower, 'tmp/keep');
    write(upper, '.wh.etc', 'not a whiteout');
    write(upper, 'tmp/.wh..wh..opq', 'not opaque');
    execFileSync('mknod', [path.join(upper, 'dev0'), 'c', '0', '0']);
    write(lower, 'dev0', 'hidden by the overlay whiteout');

    const overlay = path.join(base, 'overlay.tar');
    await writeMergedTar({ layers: [upper, lower], driver: 'overlay' }, overlay);
    expect(tarNames(overlay)).toEqual(['./', '.wh.etc', 'etc/', 'etc/passwd', 'tmp/', 'tmp/.wh..wh..opq', 'tmp/keep']);

    const aufs = path.join(base, 'aufs.tar');
    await writeMergedTar({ layers: [upper, lower], driver: 'aufs' }, aufs);
    expect(tarNames(aufs)).toEqual(['./', 'dev0', 'tmp/']);
    expect(execFileSync('tar', ['-tvf', aufs], { encoding: 'utf8' })).toMatch(/^c.* 0,0 .*dev0$/m);

    const vfs = path.join(base, 'vfs.tar');
    await writeMergedTar({ layers: [upper], driver: 'vfs' }, vfs);
    expect(tarNames(vfs)).toEqual(['./', '.wh.etc', 'dev0', 'tmp/', 'tmp/.wh..wh..opq']);
  });
});

describe('removeTree', () => {
  it('never follows a symlink and never enters a mount', () => {
    const tree = path.join(base, 'tree');
    write(tree, 'a/b/c');
    fs.symlinkSync(hostDir, path.join(tree, 'a/tohost'));
    fs.symlinkSync(path.join(hostDir, 'secret'), path.join(tree, 'a/b/tosecret'));
    const volume = path.join(base, 'volume');
    write(volume, 'data', 'volume data');
    fs.mkdirSync(path.join(tree, 'a/mnt'));
    execFileSync('mount', ['--bind', volume, path.join(tree, 'a/mnt')]);
    try {
      let err: unknown;
      try {
        removeTree(tree);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).code).toBe('EBUSY');
      expect((err as NsboxError).path).toBe(path.join(tree, 'a/mnt'));
      expect(fs.readFileSync(path.join(volume, 'data'), 'utf8')).toBe('volume data');
      // Everything else went; the mount point and its parents stay.
      expect(fs.readdirSync(tree)).toEqual(['a']);
      expect(fs.readdirSync(path.join(tree, 'a'))).toEqual(['mnt']);
    } finally {
      execFileSync('umount', [path.join(tree, 'a/mnt')]);
    }
    expect(fs.readFileSync(path.join(hostDir, 'secret'), 'utf8')).toBe(SECRET);
    removeTree(tree);
    expect(fs.existsSync(tree)).toBe(false);
    // The tree itself a mount point: refused, nothing of the mount removed.
    execFileSync('mount', ['--bind', volume, hostDir]);
    try {
      expect(() => removeTree(hostDir)).toThrow(expect.objectContaining({ code: 'EBUSY' }));
      expect(fs.readFileSync(path.join(hostDir, 'data'), 'utf8')).toBe('volume data');
    } finally {
      execFileSync('umount', [hostDir]);
    }
    expect(() => removeTree(path.join(base, 'missing'))).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    removeTree(path.join(base, 'missing'), { force: true });
  });
});
