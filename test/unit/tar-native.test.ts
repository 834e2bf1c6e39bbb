// What moving the tar parser into C++ (src-cc/core/tar.cc) newly risks: reads past a buffer,
// integer overflow, a length believed. Archives cut at every byte, sizes and numbers at and
// beyond every limit (negative, 2^53, base-256 of every width), pax records whose lengths lie,
// long names at and over the 1 MiB cap, every header byte flipped. Each must be read exactly
// or refused with a BAD_ARCHIVE naming the offset; never a crash, a hang or a silent misread.
import { describe, expect, it } from 'vitest';

import { NsboxError } from '../../src/errors';
import { BLOCK_SIZE, TarReader, encodeHeader, endOfArchive, paxRecord, parseNumber, type TarEntry, type TarHeaderInput } from '../../src/image/tar';

interface Read {
  entries: Array<TarEntry & { data: Buffer }>;
  error?: NsboxError;
}

/** Reads an archive fed in `chunk`-byte pieces; a refusal is returned, anything else thrown. */
function read(archive: Buffer, chunk = archive.length || 1): Read {
  const entries: Read['entries'] = [];
  let parts: Buffer[] = [];
  let open = false;
  const reader = new TarReader(
    {
      onEntry: (e) => {
        expect(open).toBe(false);
        open = true;
        parts = [];
        entries.push({ ...e, data: Buffer.alloc(0) });
      },
      onData: (c) => {
        expect(open).toBe(true);
        parts.push(Buffer.from(c));
      },
      onEntryEnd: () => {
        expect(open).toBe(true);
        open = false;
        const last = entries[entries.length - 1]!;
        last.data = Buffer.concat(parts);
        // Exactly the bytes the header announced, never more or fewer.
        expect(last.data.length).toBe(last.size);
      },
    },
    'test',
  );
  try {
    for (let i = 0; i < archive.length; i += chunk) reader.write(archive.subarray(i, i + chunk));
    reader.end();
  } catch (err) {
    if (!(err instanceof NsboxError)) throw err;
    expect(err.code).toBe('BAD_ARCHIVE');
    return { entries, error: err };
  }
  return { entries };
}

function padded(data: Buffer): Buffer {
  const out = Buffer.alloc(Math.ceil(data.length / BLOCK_SIZE) * BLOCK_SIZE);
  data.copy(out);
  return out;
}

function member(h: Partial<TarHeaderInput> & { name: string }, data = Buffer.alloc(0)): Buffer {
  return Buffer.concat([encodeHeader({ type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, ...h, size: data.length }), padded(data)]);
}

function fixChecksum(b: Buffer, at = 0): void {
  b.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = at; i < at + BLOCK_SIZE; i++) sum += b[i]!;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, at + 148, 'latin1');
}

/** A ustar header made by hand; `edit` changes fields before the checksum is computed. */
function header(name: string, typeflag: string, size: number, edit?: (b: Buffer) => void): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE);
  b.write(name, 0, 100, 'utf8');
  b.write('0000644\0', 100, 'latin1');
  b.write('0000000\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  b.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  b.write('14544676400\0', 136, 'latin1');
  b.write(typeflag, 156, 'latin1');
  b.write('ustar\x0000', 257, 'latin1');
  edit?.(b);
  fixChecksum(b);
  return b;
}

/** A GNU base-256 field of `len` bytes: 0x80 (or 0xff, negative) then big-endian bytes. */
function base256(b: Buffer, at: number, len: number, bytes: number[], negative = false): void {
  b.fill(negative ? 0xff : 0, at, at + len);
  b[at] = negative ? 0xff : 0x80;
  bytes.forEach((v, i) => (b[at + len - bytes.length + i] = v));
}

/** A pax 'x' header with the given body, then the entry it describes. */
function pax(body: string | Buffer, entry: Buffer): Buffer {
  const data = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  return Buffer.concat([header('PaxHeaders/x', 'x', data.length), padded(data), entry]);
}

const END = endOfArchive();

describe('the C++ tar parser at every boundary', () => {
  it('refuses an archive cut at any byte, naming the offset it stopped at', () => {
    // Long name, long link, pax records with an xattr, a file across several blocks, a hardlink.
    const longName = `${'n'.repeat(300)}/file`;
    const archive = Buffer.concat([
      header('././@LongLink', 'L', longName.length + 1),
      padded(Buffer.from(`${longName}\0`)),
      header('x', '0', 1300, (b) => b.fill(0, 0, 100)),
      padded(Buffer.alloc(1300, 0x41)),
      header('././@LongLink', 'K', 201),
      padded(Buffer.from(`${'t'.repeat(200)}\0`)),
      header('s', '2', 0),
      pax(paxRecord('SCHILY.xattr.user.k', 'value') + paxRecord('path', 'pax/named'), member({ name: 'ignored' }, Buffer.from('abc'))),
      END,
    ]);
    const whole = read(archive);
    expect(whole.error).toBeUndefined();
    expect(whole.entries.map((e) => e.name)).toEqual([longName, 's', 'pax/named']);
    expect(whole.entries[1]!.linkname).toBe('t'.repeat(200));
    expect(whole.entries[2]!.xattrs).toEqual([['user.k', Buffer.from('value')]]);
    const endAt = archive.length - END.length;
    for (let cut = 0; cut < archive.length; cut++) {
      for (const chunk of [cut || 1, 1 + (cut % 511)]) {
        const r = read(archive.subarray(0, cut), chunk);
        // One zero block is enough to end an archive (GNU tar agrees); anything before it is refused.
        if (cut >= endAt + BLOCK_SIZE) {
          expect(r.error, `cut at ${cut}`).toBeUndefined();
          continue;
        }
        expect(r.error, `cut at ${cut}`).toBeDefined();
        const m = /(?:truncated at offset|ends at offset) (\d+)/.exec(r.error!.message);
        expect(m, r.error!.message).not.toBeNull();
        expect(Number(m![1])).toBe(cut);
      }
    }
  }, 120_000);

  it('refuses negative, overflowing and malformed sizes, in octal and base-256', () => {
    const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
      ['negative base-256 size', (b) => base256(b, 124, 12, [1], true), /bad size field in the header at offset 0/],
      ['size beyond 2^53', (b) => base256(b, 124, 12, [0x20, 0, 0, 0, 0, 0, 0]), /bad size field/],
      ['size of 11 bytes of 0xff', (b) => b.fill(0xff, 125, 136).writeUInt8(0x80, 124), /bad size field/],
      ['a non-octal digit', (b) => b.write('0000000009\0', 124, 'latin1'), /bad size field/],
      ['a digit 8', (b) => b.write('00000000018', 124, 'latin1'), /bad size field/],
    ];
    for (const [what, edit, pattern] of cases) {
      const r = read(Buffer.concat([header('f', '0', 0, edit), END]));
      expect(r.error?.message, what).toMatch(pattern);
      expect(r.entries).toEqual([]);
    }
    // The largest size the parser takes (2^53 - 1): announced, then refused as truncated, never
    // read past what was given, in any chunking.
    const huge = Buffer.concat([header('f', '0', 0, (b) => base256(b, 124, 12, [0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), Buffer.alloc(4096, 1)]);
    for (const chunk of [1, 511, 512, 4096 + 512]) {
      const r = read(huge, chunk);
      expect(r.entries[0]!.size).toBe(Number.MAX_SAFE_INTEGER);
      expect(r.error?.message).toMatch(/truncated at offset 4608 in or after entry "f"/);
    }
  });

  it('reads base-256 numbers of every width exactly, and refuses what an id, mode or device cannot be', () => {
    // uid 2^32 - 2 (the largest valid), in base-256.
    let r = read(Buffer.concat([header('f', '0', 0, (b) => base256(b, 108, 8, [0xff, 0xff, 0xff, 0xfe])), END]));
    expect(r.entries[0]!.uid).toBe(0xfffffffe);
    // (uid_t)-1 and 2^32: not ids.
    for (const bytes of [
      [0xff, 0xff, 0xff, 0xff],
      [1, 0, 0, 0, 0],
    ]) {
      r = read(Buffer.concat([header('f', '0', 0, (b) => base256(b, 108, 8, bytes)), END]));
      expect(r.error?.message).toMatch(/entry "f" at offset 0: owner \d+:0 is not a valid id/);
      expect(r.error?.path).toBe('f');
    }
    r = read(Buffer.concat([header('f', '0', 0, (b) => base256(b, 116, 8, [0xfe], true)), END]));
    expect(r.error?.message).toMatch(/owner 0:-2 is not a valid id/);
    r = read(Buffer.concat([header('f', '0', 0, (b) => base256(b, 100, 8, [0], true)), END]));
    expect(r.error?.message).toMatch(/a mode or device number out of range/);
    // An mtime of 2^53 - 1 is a number; one beyond is malformed, not rounded.
    r = read(Buffer.concat([header('f', '0', 0, (b) => base256(b, 136, 12, [0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), END]));
    expect(r.entries[0]!.mtime).toBe(Number.MAX_SAFE_INTEGER);
    r = read(Buffer.concat([header('f', '0', 0, (b) => base256(b, 136, 12, [0x20, 0, 0, 0, 0, 0, 0])), END]));
    expect(r.error?.message).toMatch(/a malformed numeric field in entry "f" at offset 0/);
    r = read(Buffer.concat([header('f', '0', 0, (b) => base256(b, 136, 12, [0xfe], true)), END]));
    expect(r.entries[0]!.mtime).toBe(-2);
    // Devices: 12 bits of major, 20 of minor.
    r = read(Buffer.concat([header('c', '3', 0, (b) => b.write('0007777\0', 329, 'latin1')), END]));
    expect(r.entries[0]).toMatchObject({ type: 'char', devmajor: 0o7777 });
    r = read(Buffer.concat([header('c', '3', 0, (b) => b.write('0010000\0', 329, 'latin1')), END]));
    expect(r.error?.message).toMatch(/out of range/);
    r = read(Buffer.concat([header('c', '4', 0, (b) => base256(b, 337, 8, [0x10, 0, 0])), END]));
    expect(r.error?.message).toMatch(/out of range/);
    // parseNumber itself, at the edges of every width.
    const field = (bytes: number[]) => Buffer.from(bytes);
    expect(parseNumber(field([0x80, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff].slice(0, 12)), 0, 12)).toBeNaN();
    expect(parseNumber(field([0x80, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 0, 12)).toBe(Number.MAX_SAFE_INTEGER);
    expect(parseNumber(field([0xff, 0xff, 0xff, 0xff, 0xff, 0xe0, 0, 0, 0, 0, 0, 0]), 0, 12)).toBe(-(2 ** 53));
    expect(parseNumber(field([0xff, 0xff, 0xff, 0xff, 0xff, 0xdf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 0, 12)).toBeNaN();
    expect(parseNumber(field([0x80]), 0, 1)).toBe(0);
    expect(parseNumber(Buffer.from('77777777777777777777'), 0, 20)).toBe(8 ** 20 - 1 > Number.MAX_SAFE_INTEGER ? NaN : 8 ** 20 - 1);
    expect(parseNumber(Buffer.from('   \0'), 0, 4)).toBe(0);
    expect(() => parseNumber(Buffer.alloc(4), 2, 4)).toThrow(RangeError);
  });

  it('refuses pax records whose lengths lie, and pax numbers out of range', () => {
    const entry = member({ name: 'e' }, Buffer.from('x'));
    const bad: Array<[string | Buffer, RegExp]> = [
      ['0 path=a\n', /malformed record at byte 0/],
      ['5 path=a\n', /malformed record at byte 0/],
      ['1 path=a\n', /malformed record at byte 0/],
      ['99 path=a\n', /malformed record at byte 0/],
      ['99999999999999999999999999 path=a\n', /malformed record at byte 0/],
      ['-9 path=a\n', /malformed record at byte 0/],
      ['0x0a path=a\n', /malformed record at byte 0/],
      ['11 path=ab\n11 path=abc', /malformed record at byte 11/],
      ['11 path=abX', /malformed record at byte 0/],
      ['path=a\n', /a record without a length/],
      ['9 pathab\n', /a record without '=' at byte 0/],
      [paxRecord('size', '-1'), /size "-1"/],
      [paxRecord('size', '1e3'), /size "1e3"/],
      [paxRecord('size', '9007199254740992'), /size "9007199254740992"/],
      [paxRecord('uid', '9007199254740992'), /uid "9007199254740992"/],
      [paxRecord('gid', '0x1'), /gid "0x1"/],
      ['15 mtime=1.2.3\n', /mtime "1.2.3"/],
      ['13 mtime=1e9\n', /mtime "1e9"/],
      ['12 mtime=-.\n', /mtime "-."/],
      [paxRecord('mtime', '999999999999999999999999'), /mtime "999999999999999999999999"/],
      [paxRecord('GNU.sparse.map', '0,1,2,3'), /GNU sparse files are not supported/],
    ];
    for (const [body, pattern] of bad) {
      const r = read(Buffer.concat([pax(body, entry), END]));
      expect(r.error?.message, String(body)).toMatch(pattern);
      expect(r.error?.message).toMatch(/pax header at offset 0/);
      expect(r.entries).toEqual([]);
    }
    // What the limits allow is read exactly: the largest safe uid is not an id, a size of
    // 0 overrides the header's, nanoseconds (negative times too) are kept to the digit.
    let r = read(Buffer.concat([pax('24 uid=9007199254740991\n', entry), END]));
    expect(r.error?.message).toMatch(/owner 9007199254740991:0 is not a valid id/);
    r = read(Buffer.concat([pax(paxRecord('size', '0'), header('e', '0', 0)), END]));
    expect(r.entries[0]!.size).toBe(0);
    r = read(Buffer.concat([pax(paxRecord('mtime', '-1.2500000009999999'), entry), END]));
    expect(r.entries[0]).toMatchObject({ mtime: -1.25, mtimeNsec: 750000000 });
    r = read(Buffer.concat([pax(paxRecord('mtime', '1.000000001'), entry), END]));
    expect(r.entries[0]!.mtimeNsec).toBe(1);
    // A pax size that claims more than the archive holds: truncated, nothing read past it.
    r = read(Buffer.concat([pax(paxRecord('size', '99999999'), header('e', '0', 0)), END]));
    expect(r.error?.message).toMatch(/truncated at offset 2560 in or after entry "e"/);
  });

  it('takes long names and pax headers up to 1 MiB and refuses one byte more', () => {
    const cap = 1 << 20;
    const name = Buffer.alloc(cap, 0x61);
    name[cap - 1] = 0;
    let r = read(Buffer.concat([header('././@LongLink', 'L', cap), name, member({ name: 'short' }), END]), 65536);
    expect(r.entries[0]!.name.length).toBe(cap - 1);
    for (const flag of ['L', 'K', 'x', 'g']) {
      r = read(Buffer.concat([header('././@LongLink', flag, cap + 1), Buffer.alloc(cap + 512), END]));
      expect(r.error?.message).toMatch(new RegExp(`a '${flag}' header of ${cap + 1} bytes at offset 0`));
    }
    // A NUL inside a pax path: refused, not cut short.
    r = read(Buffer.concat([pax(Buffer.from('12 path=a\0b\n', 'latin1'), member({ name: 'e' })), END]));
    expect(r.error?.message).toMatch(/a name holds a NUL byte/);
    // Many long-name headers in a row: only the last counts, memory does not grow with them.
    const many: Buffer[] = [];
    for (let i = 0; i < 200; i++) many.push(header('././@LongLink', 'L', 4096), padded(Buffer.from(`${'x'.repeat(4000)}${i}\0`)));
    r = read(Buffer.concat([...many, member({ name: 'e' }), END]));
    expect(r.entries[0]!.name).toBe(`${'x'.repeat(4000)}199`);
  });

  it('refuses a header with any byte changed (its checksum), in any chunking', () => {
    const archive = Buffer.concat([member({ name: 'first' }, Buffer.from('hello')), member({ name: 'second', type: 'directory' }), END]);
    const good = read(archive);
    for (let i = 0; i < BLOCK_SIZE; i++) {
      for (const at of [0, 1024]) {
        const bad = Buffer.from(archive);
        bad[at + i] ^= 0x01;
        const r = read(bad, 1 + ((i * 7) % 700));
        const inChecksum = i >= 148 && i < 156;
        // Past the checksum's terminating NUL the field is not read: that byte may change.
        if (inChecksum && !r.error) {
          expect(r.entries.map((e) => e.name)).toEqual(good.entries.map((e) => e.name));
          continue;
        }
        expect(r.error?.message, `byte ${i} of the header at ${at}`).toMatch(new RegExp(`bad header checksum at offset ${at}`));
      }
    }
    // Checksums summed over signed bytes (old writers) are accepted; any other sum is not.
    const signed = header('\u00e9', '0', 0);
    let sum = 8 * 0x20;
    for (let i = 0; i < BLOCK_SIZE; i++) if (i < 148 || i >= 156) sum += signed[i]! > 127 ? signed[i]! - 256 : signed[i]!;
    signed.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    expect(read(Buffer.concat([signed, END])).entries[0]!.name).toBe('\u00e9');
    signed.write(`${(sum + 1).toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    expect(read(Buffer.concat([signed, END])).error?.message).toMatch(/bad header checksum at offset 0/);
  });
});
