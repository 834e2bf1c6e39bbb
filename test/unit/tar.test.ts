// The tar format on its own: headers written by encodeHeader read back by TarReader, archives
// from GNU tar in its gnu and pax formats, and the damage a reader must refuse.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { NsboxError } from '../../src/errors';
import { BLOCK_SIZE, TarReader, encodeHeader, endOfArchive, paxRecord, parseNumber, type TarEntry, type TarHeaderInput } from '../../src/image/tar';

interface ReadEntry extends TarEntry {
  data: Buffer;
}

/** Reads a whole archive, fed in chunks of `chunk` bytes. */
function readAll(archive: Buffer, chunk = archive.length): ReadEntry[] {
  const out: ReadEntry[] = [];
  let parts: Buffer[] = [];
  const reader = new TarReader(
    {
      onEntry: (e) => {
        parts = [];
        out.push({ ...e, data: Buffer.alloc(0) });
      },
      onData: (c) => {
        parts.push(Buffer.from(c));
      },
      onEntryEnd: () => {
        out[out.length - 1]!.data = Buffer.concat(parts);
      },
    },
    'test',
  );
  for (let i = 0; i < archive.length; i += chunk) reader.write(archive.subarray(i, i + chunk));
  reader.end();
  return out;
}

function padded(data: Buffer): Buffer {
  const out = Buffer.alloc(Math.ceil(data.length / BLOCK_SIZE) * BLOCK_SIZE);
  data.copy(out);
  return out;
}

function member(h: Partial<TarHeaderInput> & { name: string }, data = Buffer.alloc(0)): Buffer {
  const header: TarHeaderInput = { type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, ...h, size: data.length };
  return Buffer.concat([encodeHeader(header), padded(data)]);
}

/** A header block made by hand, for the GNU extensions encodeHeader never writes. */
function rawHeader(name: string, typeflag: string, size: number): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE);
  b.write(name, 0, 100, 'utf8');
  b.write('0000644\0', 100, 'latin1');
  b.write('0000000\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  b.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  b.write('14544676400\0', 136, 'latin1');
  b.write(typeflag, 156, 'latin1');
  b.write('ustar  \0', 257, 'latin1');
  fixChecksum(b);
  return b;
}

function fixChecksum(b: Buffer): void {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

function expectBadArchive(fn: () => unknown, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(NsboxError);
  expect((caught as NsboxError).code).toBe('BAD_ARCHIVE');
  expect((caught as NsboxError).message).toMatch(pattern);
}

describe('encodeHeader and TarReader', () => {
  it('round-trip every type, in any chunking', () => {
    const archive = Buffer.concat([
      member({ name: 'dir/', type: 'directory', mode: 0o1777 }),
      member({ name: 'dir/file', mode: 0o4755, uid: 1000, gid: 100 }, Buffer.from('hello\n')),
      member({ name: 'dir/link', type: 'symlink', linkname: '/bin/busybox', mode: 0o777 }),
      member({ name: 'dir/hard', type: 'hardlink', linkname: 'dir/file' }),
      member({ name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 }),
      member({ name: 'dev/sda', type: 'block', mode: 0o660, devmajor: 8, devminor: 0 }),
      member({ name: 'run/fifo', type: 'fifo' }),
      member({ name: 'empty' }),
      member({ name: 'big', mode: 0o600 }, Buffer.alloc(3 * BLOCK_SIZE + 7, 0x61)),
      endOfArchive(),
    ]);
    const whole = readAll(archive);
    expect(whole.map((e) => [e.name, e.type, e.mode.toString(8), e.size])).toEqual([
      ['dir/', 'directory', '1777', 0],
      ['dir/file', 'file', '4755', 6],
      ['dir/link', 'symlink', '777', 0],
      ['dir/hard', 'hardlink', '644', 0],
      ['dev/null', 'char', '666', 0],
      ['dev/sda', 'block', '660', 0],
      ['run/fifo', 'fifo', '644', 0],
      ['empty', 'file', '644', 0],
      ['big', 'file', '600', 3 * BLOCK_SIZE + 7],
    ]);
    expect(whole[1]).toMatchObject({ uid: 1000, gid: 100, mtime: 1_700_000_000, data: Buffer.from('hello\n') });
    expect(whole[2]!.linkname).toBe('/bin/busybox');
    expect(whole[3]!.linkname).toBe('dir/file');
    expect(whole[4]).toMatchObject({ devmajor: 1, devminor: 3 });
    expect(whole[8]!.data.equals(Buffer.alloc(3 * BLOCK_SIZE + 7, 0x61))).toBe(true);
    for (const chunk of [1, 7, 511, 513, 4096]) expect(readAll(archive, chunk)).toEqual(whole);
  });

  it('use the ustar prefix, then pax, for long and non-ASCII names', () => {
    const split = `${'d'.repeat(120)}/${'f'.repeat(90)}`;
    const long = `${'x'.repeat(150)}/${'y'.repeat(150)}`;
    const unicode = 'etc/ünïcødé-ファイル';
    const longLink = `/${'l'.repeat(200)}`;
    const headers = [split, long, unicode].map((name) => encodeHeader({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 }));
    expect(headers[0]!.length).toBe(BLOCK_SIZE); // fits ustar prefix + name
    expect(headers[1]!.length).toBeGreaterThan(BLOCK_SIZE);
    expect(headers[2]!.length).toBeGreaterThan(BLOCK_SIZE);
    const archive = Buffer.concat([
      ...headers,
      member({ name: 'ln', type: 'symlink', linkname: longLink }),
      member({ name: 'ids', uid: 3_000_000_000, gid: 4_000_000 }),
      member({ name: 'old', mtime: -86_400 }),
      endOfArchive(),
    ]);
    const entries = readAll(archive);
    expect(entries.map((e) => e.name)).toEqual([split, long, unicode, 'ln', 'ids', 'old']);
    expect(entries[3]!.linkname).toBe(longLink);
    expect(entries[4]).toMatchObject({ uid: 3_000_000_000, gid: 4_000_000 });
    expect(entries[5]!.mtime).toBe(-86_400);
  });

  it('write Buffer names as their bytes: in ustar fields when not UTF-8, else in pax records', () => {
    const raw = Buffer.from([0x62, 0xff, 0xfe]);
    const utf8 = Buffer.from('ünï', 'utf8');
    const longRaw = Buffer.concat([Buffer.from('d'.repeat(150)), raw]);
    const h = (name: Buffer, linkname?: Buffer) =>
      encodeHeader({ name, linkname, type: linkname ? 'symlink' : 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 });
    // Short bytes that are not UTF-8: one ustar block, the name field holding them as they are.
    const short = h(raw, raw);
    expect(short.length).toBe(BLOCK_SIZE);
    expect(short.subarray(0, 4).equals(Buffer.concat([raw, Buffer.from([0])]))).toBe(true);
    expect(short.subarray(157, 161).equals(Buffer.concat([raw, Buffer.from([0])]))).toBe(true);
    // UTF-8 goes into a pax path record, as a string name would.
    const named = h(utf8);
    expect(named.length).toBeGreaterThan(BLOCK_SIZE);
    expect(named.includes(Buffer.concat([Buffer.from('path='), utf8, Buffer.from('\n')]))).toBe(true);
    expect(named.includes('hdrcharset')).toBe(false);
    expect(readAll(Buffer.concat([named, endOfArchive()]))[0]!.name).toBe('ünï');
    // Too long for ustar and not UTF-8: a pax path record of the bytes, marked binary.
    const long = h(longRaw);
    expect(long.includes(Buffer.concat([Buffer.from('path='), longRaw, Buffer.from('\n')]))).toBe(true);
    expect(long.includes('hdrcharset=BINARY\n')).toBe(true);
  });

  it('pax records count their own length', () => {
    for (let n = 0; n < 300; n++) {
      const record = paxRecord('path', 'a'.repeat(n));
      expect(Number(record.slice(0, record.indexOf(' ')))).toBe(Buffer.byteLength(record));
    }
  });

  it('read GNU long names (L, K) and pax records, and ignore global headers', () => {
    const name = `long/${'n'.repeat(180)}`;
    const link = `target/${'t'.repeat(180)}`;
    const L = Buffer.from(`${name}\0`);
    const K = Buffer.from(`${link}\0`);
    const pax = Buffer.from(paxRecord('path', 'from/pax') + paxRecord('mtime', '1700000000.25') + paxRecord('uid', '70000'));
    const global = Buffer.from(paxRecord('comment', 'ignored') + paxRecord('path', 'not/applied'));
    const archive = Buffer.concat([
      rawHeader('pax_global_header', 'g', global.length),
      padded(global),
      rawHeader('././@LongLink', 'L', L.length),
      padded(L),
      rawHeader('././@LongLink', 'K', K.length),
      padded(K),
      rawHeader('short', '1', 0),
      rawHeader('PaxHeaders/x', 'x', pax.length),
      padded(pax),
      rawHeader('short2', '0', 0),
      rawHeader('after', '0', 0),
      endOfArchive(),
    ]);
    const entries = readAll(archive, 100);
    expect(entries.map((e) => [e.name, e.type, e.linkname])).toEqual([
      [name, 'hardlink', link],
      ['from/pax', 'file', ''],
      ['after', 'file', ''],
    ]);
    expect(entries[1]).toMatchObject({ mtime: 1_700_000_000.25, uid: 70000 });
    expect(entries[2]).toMatchObject({ mtime: 0o14544676400, uid: 0 });
  });

  it('accept signed-byte checksums and pre-POSIX directory entries', () => {
    const signed = rawHeader('caf\u00e9', '0', 0);
    signed.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of signed) sum += byte > 127 ? byte - 256 : byte;
    signed.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    const v7dir = rawHeader('olddir/', '\0', 0);
    expect(readAll(Buffer.concat([signed, v7dir, endOfArchive()])).map((e) => [e.name, e.type])).toEqual([
      ['caf\u00e9', 'file'],
      ['olddir/', 'directory'],
    ]);
  });

  it('read base-256 numbers', () => {
    const b = Buffer.alloc(12);
    b[0] = 0x80;
    b.writeUInt32BE(0x12345678, 8);
    expect(parseNumber(b, 0, 12)).toBe(0x12345678);
    const neg = Buffer.alloc(12, 0xff);
    expect(parseNumber(neg, 0, 12)).toBe(-1);
    expect(parseNumber(Buffer.from(' 0755 \0'), 0, 7)).toBe(0o755);
    expect(parseNumber(Buffer.from('09'), 0, 2)).toBeNaN();
  });
});

describe('damaged archives', () => {
  const good = Buffer.concat([member({ name: 'a' }, Buffer.from('x'.repeat(1000))), member({ name: 'b' }), endOfArchive()]);

  it('a bad header checksum is refused, naming the offset', () => {
    const bad = Buffer.from(good);
    bad[1536 + 5] ^= 0x01; // in the name of the second entry
    expectBadArchive(() => readAll(bad), /bad header checksum at offset 1536 \(after entry "a"\)/);
  });

  it('an archive cut inside an entry is refused, naming it', () => {
    expectBadArchive(() => readAll(good.subarray(0, 700)), /truncated at offset 700 in or after entry "a"/);
    expectBadArchive(() => readAll(good.subarray(0, 1536 + 100)), /truncated .* entry "a"/);
  });

  it('an archive without its end blocks is refused', () => {
    expectBadArchive(() => readAll(good.subarray(0, 2048)), /without the end-of-archive blocks/);
    expectBadArchive(() => readAll(Buffer.alloc(0)), /ends at offset 0/);
  });

  it('malformed fields and oversized extension headers are refused', () => {
    const bad = Buffer.from(good);
    bad.write('9', 100, 'latin1'); // mode: not octal
    fixChecksum(bad.subarray(0, BLOCK_SIZE));
    expectBadArchive(() => readAll(bad), /malformed numeric field in entry "a"/);
    const huge = Buffer.concat([rawHeader('x', 'L', 2 << 20), Buffer.alloc(BLOCK_SIZE)]);
    expectBadArchive(() => readAll(huge), /'L' header of 2097152 bytes/);
    const pax = Buffer.from('5 a=b\n');
    expectBadArchive(() => readAll(Buffer.concat([rawHeader('p', 'x', pax.length), padded(pax), endOfArchive()])), /pax header at offset 0/);
  });
});

describe('archives from GNU tar', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-tar-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it.each(['gnu', 'pax', 'ustar'])('reads --format=%s', (format) => {
    const tree = path.join(dir, 'tree');
    const deep = path.join(tree, 'a'.repeat(60), 'b'.repeat(60));
    fs.mkdirSync(deep, { recursive: true });
    const fileName = format === 'ustar' ? 'c'.repeat(90) : `${'c'.repeat(120)}-ü`;
    fs.writeFileSync(path.join(deep, fileName), 'content');
    fs.symlinkSync(format === 'ustar' ? 'short' : 'z'.repeat(150), path.join(tree, 'link'));
    const archive = path.join(dir, 'out.tar');
    execFileSync('tar', [`--format=${format}`, '-C', tree, '-cf', archive, '.']);
    const entries = readAll(fs.readFileSync(archive), 333);
    const names = entries.map((e) => e.name).sort();
    const expected = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n').sort();
    expect(names).toEqual(expected);
    const file = entries.find((e) => e.name.endsWith(fileName))!;
    expect(file.data.toString()).toBe('content');
  });
});
