// writeMergedTar: layers built by hand (overlayfs whiteouts need mknod, hence root), the result
// listed by GNU tar and extracted both by GNU tar and by extractTarball.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { extractTarball } from '../src/image/extract';
import { writeMergedTar } from '../src/image/merged-tar';
import { native } from '../src/native';
import { overlayLowerdir } from '../src/plan';

const isRoot = process.getuid?.() === 0;

let base: string;

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-merged-'));
});

afterEach(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

/** Makes files from a map of relative path → content ('/' at the end: directory; '->x': symlink). */
function layer(name: string, files: Record<string, string>): string {
  const root = path.join(base, name);
  fs.mkdirSync(root, { recursive: true });
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    if (rel.endsWith('/')) fs.mkdirSync(p, { recursive: true });
    else if (content.startsWith('->')) fs.symlinkSync(content.slice(2), p);
    else fs.writeFileSync(p, content);
  }
  return root;
}

function whiteout(root: string, rel: string): void {
  execFileSync('mknod', [path.join(root, rel), 'c', '0', '0']);
}

/**
 * Makes `rel` an opaque directory of `upper` the way the kernel does: through an overlay of
 * upper on lower, removing the directory and making it again (with `files` in it).
 */
let mounts = 0;
function opaque(upper: string, lower: string, rel: string, files: Record<string, string>): void {
  const work = path.join(base, `work-${mounts}`);
  const merged = path.join(base, `merged-${mounts++}`);
  fs.mkdirSync(work);
  fs.mkdirSync(merged);
  const err = native().mountOverlay({ lowerdir: overlayLowerdir([lower]), upper, work, target: merged });
  if (err) throw new Error(`mount overlay: ${err.code}`);
  try {
    fs.rmSync(path.join(merged, rel), { recursive: true, force: true });
    fs.mkdirSync(path.join(merged, rel));
    for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(merged, rel, name), content);
  } finally {
    native().unmount(merged);
  }
  const v = native().getXattr(path.join(upper, rel), 'trusted.overlay.opaque');
  expect(Buffer.isBuffer(v) && v.toString()).toBe('y');
  fs.rmSync(work, { recursive: true, force: true });
}

/** `tar -tvf` as [type char, name, rest] per line. */
function listing(tarball: string): string[] {
  return execFileSync('tar', ['--numeric-owner', '-tvf', tarball], { encoding: 'utf8' }).trim().split('\n');
}

function names(tarball: string): string[] {
  return execFileSync('tar', ['-tf', tarball], { encoding: 'utf8' }).trim().split('\n');
}

function tree(root: string): string[] {
  const out = execFileSync('find', ['.', '-printf', '%p %y %m %U %G %T@ %s %l\\n'], { cwd: root, encoding: 'utf8' });
  return out.trim().split('\n').sort();
}

function gnuExtract(tarball: string, name: string): string {
  const dir = path.join(base, name);
  fs.mkdirSync(dir);
  execFileSync('tar', ['--numeric-owner', '-xpf', tarball, '-C', dir]);
  return dir;
}

describe.skipIf(!isRoot)('overlayfs layers', () => {
  function build(): { upper: string; lower: string } {
    const lower = layer('lower', {
      'bin/sh': 'shell',
      'bin/ls': '->sh',
      'etc/passwd': 'root:x:0:0::/root:/bin/sh\n',
      'etc/hosts': 'lower hosts',
      gone: 'deleted in upper',
      'gonedir/x': 'x',
      'gonedir/sub/y': 'y',
      'opq/old': 'hidden by opacity',
      'opq/sub/deep': 'hidden too',
      'merge/a': 'from lower',
      'merge/both': 'lower version',
      'data/content': 'volume data must not be written',
      thing: 'a file below a directory',
      'replaced/y': 'below a file',
      h1: 'hardlinked',
      'tmp/': '',
    });
    fs.linkSync(path.join(lower, 'h1'), path.join(lower, 'h2'));
    fs.linkSync(path.join(lower, 'h1'), path.join(lower, 'bin/h3'));
    fs.mkdirSync(path.join(lower, 'dev'));
    execFileSync('mknod', [path.join(lower, 'dev/null'), 'c', '1', '3']);
    execFileSync('mknod', [path.join(lower, 'dev/loop0'), 'b', '7', '0']);
    execFileSync('mkfifo', [path.join(lower, 'dev/fifo')]);
    fs.chmodSync(path.join(lower, 'tmp'), 0o1777);
    fs.chmodSync(path.join(lower, 'bin/sh'), 0o4755);
    fs.chownSync(path.join(lower, 'etc/hosts'), 1000, 1001);
    fs.utimesSync(path.join(lower, 'etc/hosts'), 1_000_000_000, 1_000_000_000);

    const upper = layer('upper', {
      'etc/hosts': 'upper hosts',
      'merge/b': 'from upper',
      'merge/both': 'upper version',
      'thing/inner': 'dir over a file',
      replaced: 'file over a dir',
      'new/deep/file': 'new',
      [`long/${'n'.repeat(120)}/${'m'.repeat(120)}`]: 'long name',
      'ünïcødé/файл': 'non-ASCII',
      'data/written-by-container': 'under a volume',
    });
    whiteout(upper, 'gone');
    whiteout(upper, 'gonedir');
    whiteout(upper, 'etc/passwd');
    opaque(upper, lower, 'opq', { new: 'in the opaque dir' });
    return { upper, lower };
  }

  it('writes the merged view: whiteouts, opacity, merges, excludes, links and devices', async () => {
    const { upper, lower } = build();
    const out = path.join(base, 'out.tar');
    const r = await writeMergedTar({ layers: [upper, lower], driver: 'overlay', exclude: ['/data/'] }, out);
    expect(r.bytes).toBe(fs.statSync(out).size);

    const listed = names(out);
    expect(r.entries).toBe(listed.length);
    for (const gone of [
      'gone',
      'gonedir/',
      'gonedir/x',
      'etc/passwd',
      'opq/old',
      'opq/sub/',
      'data/content',
      'data/written-by-container',
      'replaced/y',
      'merge/.wh.x',
    ]) {
      expect(listed).not.toContain(gone);
    }
    for (const kept of [
      './',
      'bin/',
      'bin/sh',
      'bin/ls',
      'etc/hosts',
      'opq/new',
      'merge/a',
      'merge/b',
      'merge/both',
      'data/',
      'thing/',
      'thing/inner',
      'replaced',
      'new/deep/file',
      'ünïcødé/файл',
      'h1',
      'h2',
      'bin/h3',
      'dev/null',
      'dev/loop0',
      'dev/fifo',
      'tmp/',
    ]) {
      expect(listed).toContain(kept);
    }
    // Sorted, each directory before what is in it.
    expect(listed.slice(0, 6)).toEqual(['./', 'bin/', 'bin/h3', 'bin/ls', 'bin/sh', 'data/']);
    for (const [i, name] of listed.entries()) {
      const parent = name.replace(/[^/]+\/?$/, '');
      if (parent !== '') expect(listed.indexOf(parent)).toBeLessThan(i);
    }

    const verbose = listing(out);
    const line = (name: string) => verbose.find((l) => l.endsWith(` ${name}`) || l.includes(` ${name} `))!;
    expect(line('bin/sh')).toMatch(/^-rwsr-xr-x 0\/0 /);
    expect(line('tmp/')).toMatch(/^drwxrwxrwt /);
    expect(line('etc/hosts')).toMatch(/^-rw-r--r-- 0\/0 +11 /); // the upper copy
    expect(line('h2')).toMatch(/^hrw-r--r-- .* h2 link to bin\/h3$/); // bin/h3 is written first
    expect(line('dev/null')).toMatch(/^crw-r--r-- 0\/0 +1,3 /);
    expect(line('dev/loop0')).toMatch(/^brw-r--r-- 0\/0 +7,0 /);
    expect(line('dev/fifo')).toMatch(/^prw-r--r-- /);
    expect(line('bin/ls')).toMatch(/bin\/ls -> sh$/);

    // GNU tar extracts what the container saw.
    const byTar = gnuExtract(out, 'by-tar');
    const read = (rel: string) => fs.readFileSync(path.join(byTar, rel), 'utf8');
    expect(read('etc/hosts')).toBe('upper hosts');
    expect(read('merge/both')).toBe('upper version');
    expect(read('merge/a')).toBe('from lower');
    expect(read(`long/${'n'.repeat(120)}/${'m'.repeat(120)}`)).toBe('long name');
    expect(read('ünïcødé/файл')).toBe('non-ASCII');
    expect(fs.readdirSync(path.join(byTar, 'data'))).toEqual([]);
    expect(fs.readdirSync(path.join(byTar, 'opq'))).toEqual(['new']);
    expect(fs.statSync(path.join(byTar, 'h2')).ino).toBe(fs.statSync(path.join(byTar, 'bin/h3')).ino);

    // And extractTarball agrees with GNU tar, devices aside (it skips them).
    const dest = path.join(base, 'by-nsbox');
    fs.mkdirSync(dest);
    const x = await extractTarball(out, dest);
    expect(x).toMatchObject({ entries: r.entries, skipped: 3 });
    for (const dev of ['null', 'loop0', 'fifo']) fs.rmSync(path.join(byTar, 'dev', dev));
    // (to the nanosecond: both sides keep them)
    execFileSync('touch', ['-r', path.join(dest, 'dev'), path.join(byTar, 'dev')]);
    expect(tree(dest)).toEqual(tree(byTar));
  });

  it('is deterministic, and writes the same bytes to a stream as to a file', async () => {
    const { upper, lower } = build();
    const source = { layers: [upper, lower], driver: 'overlay' as const };
    const a = path.join(base, 'a.tar');
    const b = path.join(base, 'b.tar');
    await writeMergedTar(source, a);
    await writeMergedTar(source, b);
    expect(fs.readFileSync(a).equals(fs.readFileSync(b))).toBe(true);
    const stream = new PassThrough({ highWaterMark: 1024 });
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    const r = await writeMergedTar(source, stream);
    stream.end();
    expect(Buffer.concat(chunks).equals(fs.readFileSync(a))).toBe(true);
    expect(r.bytes).toBe(fs.statSync(a).size);
  });

  it('merges three layers: a whiteout or an opaque directory in the middle hides the bottom', async () => {
    const bottom = layer('bottom', { f: 'bottom', g: 'bottom', 'm/bottom': 'x', 'n/bottom': 'x', keep: 'bottom' });
    const middle = layer('middle', { 'n/middle': 'x' });
    whiteout(middle, 'f');
    whiteout(middle, 'g');
    opaque(middle, bottom, 'm', { middle: 'x' });
    const top = layer('top', { g: 'top', 'm/top': 'x', 'n/top': 'x' });
    const out = path.join(base, 'out.tar');
    await writeMergedTar({ layers: [top, middle, bottom], driver: 'overlay' }, out);
    expect(names(out)).toEqual(['./', 'g', 'keep', 'm/', 'm/middle', 'm/top', 'n/', 'n/bottom', 'n/middle', 'n/top']);
    expect(fs.readFileSync(path.join(gnuExtract(out, 'x'), 'g'), 'utf8')).toBe('top');
  });

  it('matches tar -cf of a single tree', async () => {
    const { lower } = build();
    const ours = path.join(base, 'ours.tar');
    const theirs = path.join(base, 'theirs.tar');
    await writeMergedTar({ layers: [lower], driver: 'vfs' }, ours);
    // pax, which keeps times to the nanosecond as nsbox does (GNU's own format keeps seconds).
    execFileSync('tar', ['--numeric-owner', '--format=posix', '-C', lower, '-cf', theirs, '.']);
    expect(tree(gnuExtract(ours, 'ours'))).toEqual(tree(gnuExtract(theirs, 'theirs')));
  });
});

describe('aufs layers', () => {
  it('honours .wh. whiteouts and .wh..wh..opq, and writes no .wh. name', async () => {
    const lower = layer('lower', { gone: 'x', 'dir2/z': 'z', 'opaqued/old': 'old', kept: 'kept', 'sub/gone2': 'x', 'sub/kept2': 'y' });
    const upper = layer('upper', {
      '.wh.gone': '',
      '.wh.dir2': '',
      'opaqued/.wh..wh..opq': '',
      'opaqued/new': 'new',
      '.wh..wh.plnk/': '',
      '.wh..wh.aufs': '',
      'sub/.wh.gone2': '',
      'dir3/': '',
    });
    const out = path.join(base, 'out.tar');
    const r = await writeMergedTar({ layers: [upper, lower], driver: 'aufs' }, out);
    const listed = names(out);
    expect(listed).toEqual(['./', 'dir3/', 'kept', 'opaqued/', 'opaqued/new', 'sub/', 'sub/kept2']);
    expect(r.entries).toBe(listed.length);
    const dest = path.join(base, 'x');
    fs.mkdirSync(dest);
    await extractTarball(out, dest);
    expect(fs.readFileSync(path.join(dest, 'opaqued/new'), 'utf8')).toBe('new');
  });

  it('excludes everything under a volume, whichever way its path is written', async () => {
    const lower = layer('lower', { 'srv/data/a': 'a', 'srv/data/sub/b': 'b', 'srv/other': 'o', 'vol/x': 'x' });
    const out = path.join(base, 'out.tar');
    await writeMergedTar({ layers: [lower], driver: 'aufs', exclude: ['/srv/data', 'vol/', '/missing'] }, out);
    expect(names(out)).toEqual(['./', 'srv/', 'srv/data/', 'srv/other', 'vol/']);
  });

  it('removes the output file when it fails', async () => {
    const out = path.join(base, 'out.tar');
    const err = await writeMergedTar({ layers: [path.join(base, 'missing')], driver: 'vfs' }, out).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NsboxError);
    expect((err as NsboxError).code).toBe('ENOENT');
    expect(fs.existsSync(out)).toBe(false);
  });
});
