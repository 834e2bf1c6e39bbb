// The batched import's data path: file data starts and ends everywhere relative to the 1 MiB
// reads and batches (and the ring of read buffers the batches refer to), on the tarball's own
// file system and from another one; headers that claim more data than the file holds, and
// files cut in the middle of an entry, must be a clear BAD_ARCHIVE with nothing left (no
// temporary directory, no fd, the image name still free).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { extractTarball } from '../src/image/extract';
import { BLOCK_SIZE, encodeHeader, endOfArchive, paxRecord, type TarHeaderInput } from '../src/image/tar';
import { Runtime } from '../src/runtime';
import { openFds } from './helpers';

const isRoot = process.getuid?.() === 0;

type Spec = Partial<TarHeaderInput> & { name: string; data?: Buffer };

function member(spec: Spec): Buffer {
  const data = spec.data ?? Buffer.alloc(0);
  const { data: _data, ...fields } = spec;
  void _data;
  const header = encodeHeader({ type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_000, ...fields, size: data.length });
  const body = Buffer.alloc(Math.ceil(data.length / BLOCK_SIZE) * BLOCK_SIZE);
  data.copy(body);
  return Buffer.concat([header, body]);
}

const archive = (specs: Spec[]): Buffer => Buffer.concat([...specs.map(member), endOfArchive()]);
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Bytes that differ at every offset, so that a copy from the wrong place shows. */
function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

function describeTree(root: string): string[] {
  const out = execFileSync('find', ['.', '-printf', '%p %y %m %U %G %T@ %s %l %n\\n'], { cwd: root, encoding: 'utf8' });
  // The root is the test's, made before the extraction: its times are not the archive's.
  return out
    .trim()
    .split('\n')
    .filter((l) => !l.startsWith('. '))
    .sort();
}

let base: string;
let dest: string;
let tmpfs: string | undefined;

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-extract-copy-'));
  dest = path.join(base, 'root');
  fs.mkdirSync(dest);
});

afterEach(() => {
  if (tmpfs) execFileSync('umount', [tmpfs]);
  tmpfs = undefined;
  fs.rmSync(base, { recursive: true, force: true });
});

// Sizes around the block, 64 KiB and the 1 MiB read and batch, many small ones between them,
// a hardlink and a symlink: file data starts and ends everywhere relative to the reads.
function mixedSpecs(): Spec[] {
  const specs: Spec[] = [{ name: 'd/', type: 'directory', mode: 0o755 }];
  const sizes = [0, 1, 511, 512, 513, 4095, 65535, 65536, 65537, 100_000, (1 << 20) - 1, (1 << 20) + 3, (3 << 20) + 7];
  sizes.forEach((size, i) => specs.push({ name: `d/f${i}`, data: pattern(size, i) }));
  specs.push({ name: 'd/small/', type: 'directory', mode: 0o750 });
  for (let i = 0; i < 300; i++) specs.push({ name: `d/small/s${i}`, data: pattern(1 + ((i * 7919) % 9000), 1000 + i) });
  specs.push({ name: 'd/hard', type: 'hardlink', linkname: 'd/f9' });
  specs.push({ name: 'd/sym', type: 'symlink', linkname: 'f9', mode: 0o777 });
  specs.push({ name: 'd/last', data: pattern(70_000, 99) });
  return specs;
}

describe('file data across reads and batches', () => {
  it('matches GNU tar with data across read and batch boundaries', async () => {
    const tar = archive(mixedSpecs());
    const file = path.join(base, 'mixed.tar');
    fs.writeFileSync(file, tar);
    const r = await extractTarball(file, dest);
    expect(r.digest).toBe(`sha256:${sha256(tar)}`);
    const byTar = path.join(base, 'by-tar');
    fs.mkdirSync(byTar);
    execFileSync('tar', ['-xf', file, '-C', byTar]);
    expect(describeTree(dest)).toEqual(describeTree(byTar));
    for (const spec of mixedSpecs()) {
      if (spec.data) expect(sha256(fs.readFileSync(path.join(dest, spec.name))), spec.name).toBe(sha256(spec.data));
    }
  });

  it.skipIf(!isRoot)('matches GNU tar with the tarball on another file system (a tmpfs)', async () => {
    tmpfs = path.join(base, 'src-fs');
    fs.mkdirSync(tmpfs);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'nsbox-test-extract-copy', tmpfs]);
    const tar = archive(mixedSpecs());
    const file = path.join(tmpfs, 'mixed.tar');
    fs.writeFileSync(file, tar);
    const fds = openFds();
    const r = await extractTarball(file, dest);
    expect(openFds()).toEqual(fds);
    expect(r.digest).toBe(`sha256:${sha256(tar)}`);
    const byTar = path.join(base, 'by-tar');
    fs.mkdirSync(byTar);
    execFileSync('tar', ['-xf', file, '-C', byTar]);
    expect(describeTree(dest)).toEqual(describeTree(byTar));
    for (const spec of mixedSpecs()) {
      if (spec.data) expect(sha256(fs.readFileSync(path.join(dest, spec.name))), spec.name).toBe(sha256(spec.data));
    }
  });
});

describe('a tarball shorter than its headers say', () => {
  async function refusedByImport(tar: Buffer, pattern: RegExp): Promise<void> {
    const root = path.join(base, 'state');
    const rt = new Runtime({ root });
    const file = path.join(base, 'cut.tar');
    fs.writeFileSync(file, tar);
    const fds = openFds();
    const err = await rt.import(file, 'cut').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NsboxError);
    expect(err).toMatchObject({ code: 'BAD_ARCHIVE' });
    expect((err as Error).message).toMatch(pattern);
    expect(openFds()).toEqual(fds);
    // Nothing left: no temporary directory, and the name is free.
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
    fs.writeFileSync(file, archive([{ name: 'ok', data: Buffer.from('x') }]));
    await expect(rt.import(file, 'cut')).resolves.toMatchObject({ name: expect.stringMatching(/^cut/) });
  }

  it('refuses one cut in the middle of a file bigger than a read', async () => {
    const tar = archive([
      { name: 'a', data: pattern(1000, 1) },
      { name: 'big', data: pattern(5 << 20, 2) },
      { name: 'z', data: pattern(10, 3) },
    ]);
    await refusedByImport(tar.subarray(0, 3 << 20), /truncated at offset 3145728 in or after entry "big"/);
  });

  it('refuses one cut in the middle of a small file inside a read', async () => {
    const tar = archive([
      { name: 'a', data: pattern(1000, 1) },
      { name: 'b', data: pattern(3000, 2) },
    ]);
    await refusedByImport(tar.subarray(0, 2048), /truncated at offset 2048 in or after entry "b"/);
  });

  it('refuses a header whose (pax) size is far beyond the file, without reading or writing it', async () => {
    const header = encodeHeader({ name: 'huge', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 0 });
    const pax = Buffer.from(paxRecord('size', String(2 ** 52)));
    const paxHeader = encodeHeader({ name: 'PaxHeaders/huge', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: pax.length });
    paxHeader[156] = 'x'.charCodeAt(0);
    // The checksum again, for the type flag changed after encoding.
    paxHeader.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < BLOCK_SIZE; i++) sum += paxHeader[i]!;
    paxHeader.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    const body = Buffer.alloc(BLOCK_SIZE);
    pax.copy(body);
    const tar = Buffer.concat([paxHeader, body, header, pattern(100_000, 5)]);
    await refusedByImport(tar, /truncated at offset \d+ in or after entry "huge"/);
  });
});

// Directories nested deeper than a recursive removal in JS reaches (node's fs.rmSync recursed
// once a level and overflowed the stack near 2000 levels): a failed import must still leave
// nothing, and an image that deep must still be removable.
describe('a tree nested thousands of directories deep', () => {
  const nested = (depth: number): Buffer => {
    const specs: Spec[] = [];
    let name = '';
    for (let i = 0; i < depth; i++) {
      name = name ? `${name}/d` : 'd';
      specs.push({ name, type: 'directory', mode: 0o755 });
    }
    specs.push({ name: `${name}/f`, data: Buffer.from('x') });
    return archive(specs);
  };

  it('leaves no temporary directory when the import fails deep down (the name beyond PATH_MAX)', async () => {
    const root = path.join(base, 'state');
    const rt = new Runtime({ root });
    const file = path.join(base, 'deep.tar');
    fs.writeFileSync(file, nested(3000));
    const fds = openFds();
    const err = await rt.import(file, 'deep').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NsboxError);
    expect(err).toMatchObject({ code: 'ENAMETOOLONG' });
    expect(openFds()).toEqual(fds);
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
  });

  it('imports a tree 2000 directories deep and removes the image again', async () => {
    const root = path.join(base, 'state');
    const rt = new Runtime({ root });
    const file = path.join(base, 'deep.tar');
    fs.writeFileSync(file, nested(2000));
    const info = await rt.import(file, 'deep');
    expect(fs.readFileSync(path.join(info.rootfs, ...Array<string>(2000).fill('d'), 'f'), 'utf8')).toBe('x');
    await rt.removeImage('deep');
    expect(fs.existsSync(path.dirname(info.rootfs))).toBe(false);
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
  });
});
