// A plain tarball's file data goes from the tarball to the new files in the kernel: the
// reader hands out offsets and skips what it did not read, the addon copies by
// copy_file_range (same file system) or splice (across), and the hash reads the file by
// itself. These attack that path: data across read and batch boundaries, headers that claim
// more data than the file holds, files cut in the middle of an entry, a tarball changed or
// truncated while it is imported. Each failure must be a clear BAD_ARCHIVE with nothing left.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { openDir } from '../src/fsat';
import { extractTarball } from '../src/image/extract';
import { BLOCK_SIZE, TarReader, encodeHeader, endOfArchive, paxRecord, type TarHeaderInput } from '../src/image/tar';
import { TreeWriter } from '../src/image/tree-writer';
import { native } from '../src/native';
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
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

function describeTree(root: string): string[] {
  const out = execFileSync('find', ['.', '-printf', '%p %y %m %U %G %T@ %s %l %n\\n'], { cwd: root, encoding: 'utf8' });
  // The root is the test's, made before the extraction: its times are not the archive's.
  return out.trim().split('\n').filter((l) => !l.startsWith('. ')).sort();
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

// Sizes around the block, the 64 KiB read and the 1 MiB batch, many small ones between them,
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

describe('file data copied in the kernel', () => {
  it('matches GNU tar with data across read and batch boundaries, the tarball on the same file system', async () => {
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

  it.skipIf(!isRoot)('matches GNU tar with the tarball on another file system (splice instead of copy_file_range)', async () => {
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
    const err = await rt.import(file, 'cut').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(NsboxError);
    expect(err).toMatchObject({ code: 'BAD_ARCHIVE' });
    expect((err as Error).message).toMatch(pattern);
    expect(openFds()).toEqual(fds);
    // Nothing left: no temporary directory, and the name is free.
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
    fs.writeFileSync(file, archive([{ name: 'ok', data: Buffer.from('x') }]));
    await expect(rt.import(file, 'cut')).resolves.toMatchObject({ name: expect.stringMatching(/^cut/) });
  }

  it('refuses one cut in the middle of a big file (the part the reader skips)', async () => {
    const tar = archive([{ name: 'a', data: pattern(1000, 1) }, { name: 'big', data: pattern(5 << 20, 2) }, { name: 'z', data: pattern(10, 3) }]);
    await refusedByImport(tar.subarray(0, 3 << 20), /truncated at offset 3145728 in or after entry "big"/);
  });

  it('refuses one cut in the middle of a small file inside a read', async () => {
    const tar = archive([{ name: 'a', data: pattern(1000, 1) }, { name: 'b', data: pattern(3000, 2) }]);
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

describe('a tarball changed while it is imported', () => {
  const big = (): Buffer => archive([{ name: 'a', data: pattern(1000, 1) }, { name: 'big', data: pattern(6 << 20, 2) }, { name: 'b', data: pattern(1000, 3) }]);

  it('refuses one that grows, and one rewritten in place, naming the file', async () => {
    for (const change of ['append', 'rewrite'] as const) {
      const file = path.join(base, `${change}.tar`);
      fs.writeFileSync(file, big());
      let changed = false;
      const into = path.join(base, `into-${change}`);
      fs.mkdirSync(into);
      const fds = openFds();
      const err = await extractTarball(file, into, {
        onProgress: () => {
          if (changed) return;
          changed = true;
          if (change === 'append') fs.appendFileSync(file, Buffer.alloc(BLOCK_SIZE));
          else {
            const fd = fs.openSync(file, 'r+');
            fs.writeSync(fd, Buffer.from([0x42]), 0, 1, 700);
            fs.closeSync(fd);
          }
        },
      }).then(() => undefined, (e: unknown) => e);
      expect(changed).toBe(true);
      expect(err, change).toMatchObject({ code: 'BAD_ARCHIVE', message: expect.stringMatching(/changed while it was imported/) });
      expect(openFds()).toEqual(fds);
    }
  });

  it('refuses data the tarball no longer holds when the addon copies it (truncated under the reader)', async () => {
    const data = pattern(3 << 20, 7);
    const tar = archive([{ name: 'f', data }]);
    const file = path.join(base, 'shrinks.tar');
    fs.writeFileSync(file, tar);
    const fd = fs.openSync(file, 'r');
    const rootFd = openDir(dest);
    const writer = new TreeWriter(rootFd, { what: 'import', sourceFd: fd });
    try {
      const reader = new TarReader(writer, 'import: shrinks.tar', true);
      reader.write(tar.subarray(0, BLOCK_SIZE));
      // The reader saw the header; the file is cut before the addon copies its data.
      fs.truncateSync(file, BLOCK_SIZE + 1000);
      reader.skip(reader.skippable);
      reader.write(tar.subarray(BLOCK_SIZE + data.length));
      reader.end();
      const err = await writer.finish().then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ code: 'BAD_ARCHIVE', path: 'f', message: expect.stringMatching(/truncated while it was read/) });
    } finally {
      await writer.close();
      fs.closeSync(rootFd);
      fs.closeSync(fd);
    }
  });

  it('the addon refuses a copy step without a source fd, and a negative or inexact offset', async () => {
    const rootFd = openDir(dest);
    const writer = new (native().ExtractWriter)(rootFd);
    const step = (op: number, name: string, len: number, offset: number): Buffer => {
      const h = Buffer.alloc(40 + name.length);
      h[0] = op;
      h.writeUInt32LE(0o644, 4);
      h.writeDoubleLE(offset, 16);
      h.writeUInt32LE(op === 8 ? len : name.length, 28);
      h.write(name, 40);
      return op === 8 ? h.subarray(0, 40) : h;
    };
    try {
      const ops = Buffer.concat([step(1, 'f', 0, 0), step(8, '', 10, 0)]);
      const e = await new Promise((resolve) => writer.run(ops, ops.length, [], resolve));
      expect(e).toMatchObject({ code: 'EINVAL', kind: 5, op: 1 });
    } finally {
      writer.close();
    }
    const fd = fs.openSync(__filename, 'r');
    for (const offset of [-1, 0.5, 2 ** 60]) {
      const w = new (native().ExtractWriter)(rootFd, fd);
      try {
        const ops = Buffer.concat([step(1, `g${String(offset).replace('.', '_')}`, 0, 0), step(8, '', 10, offset)]);
        const e = await new Promise((resolve) => w.run(ops, ops.length, [], resolve));
        expect(e, String(offset)).toMatchObject({ code: 'EINVAL', kind: 5, op: 1 });
      } finally {
        w.close();
      }
    }
    fs.closeSync(fd);
    fs.closeSync(rootFd);
  });
});
