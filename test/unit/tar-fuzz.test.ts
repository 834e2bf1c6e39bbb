// The tar reader against damaged and hostile input: valid archives, mutated at random (bytes
// flipped, header fields overwritten with extreme values, blocks cut, repeated or swapped),
// fed in random chunkings. Whatever comes in, the reader either reads it or refuses it with a
// BAD_ARCHIVE NsboxError; it never throws anything else, never calls its handler out of order,
// never passes more or fewer data bytes than the entry it announced, never announces a value
// an extractor could not use, and reads the same whatever the chunking.
//
// Deterministic: the seed is fixed (NSBOX_FUZZ_SEED changes it, NSBOX_FUZZ_RUNS runs longer).
import { describe, expect, it } from 'vitest';

import { NsboxError } from '../../src/errors';
import { BLOCK_SIZE, TarReader, encodeHeader, endOfArchive, paxRecord, type TarEntry, type TarHeaderInput } from '../../src/image/tar';

const SEED = Number(process.env.NSBOX_FUZZ_SEED ?? 0x5eed);
const RUNS = Number(process.env.NSBOX_FUZZ_RUNS ?? 3000);

/** xorshift32: small, fast, and the same sequence on every machine. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

function padded(data: Buffer): Buffer {
  const out = Buffer.alloc(Math.ceil(data.length / BLOCK_SIZE) * BLOCK_SIZE);
  data.copy(out);
  return out;
}

function member(h: Partial<TarHeaderInput> & { name: string | Buffer }, data = Buffer.alloc(0)): Buffer {
  const header: TarHeaderInput = { type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, ...h, size: data.length };
  return Buffer.concat([encodeHeader(header), padded(data)]);
}

function paxMember(records: string, entry: Buffer): Buffer {
  const body = Buffer.from(records, 'utf8');
  const head = encodeHeader({ type: 'file', name: 'PaxHeaders/x', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: body.length });
  head[156] = 'x'.charCodeAt(0);
  fixChecksum(head);
  return Buffer.concat([head, padded(body), entry]);
}

function fixChecksum(b: Buffer): void {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) sum += b[i]!;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

/** The seeds the mutations start from: every entry type, long names, pax records, xattrs. */
function corpus(): Buffer[] {
  const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
  return [
    Buffer.concat([
      member({ name: 'dir/', type: 'directory', mode: 0o755 }),
      member({ name: 'dir/file', mode: 0o4755, uid: 1000, gid: 100 }, Buffer.from('hello\n')),
      member({ name: 'dir/link', type: 'symlink', linkname: 'file' }),
      member({ name: 'dir/hard', type: 'hardlink', linkname: 'dir/file' }),
      member({ name: 'dev/null', type: 'char', devmajor: 1, devminor: 3 }),
      member({ name: 'fifo', type: 'fifo' }),
      endOfArchive(),
    ]),
    Buffer.concat([member({ name: long }, Buffer.alloc(1500, 7)), member({ name: 'x', type: 'symlink', linkname: long }), endOfArchive()]),
    Buffer.concat([
      paxMember(
        paxRecord('path', 'p/äöü') + paxRecord('mtime', '1700000000.123456789') + paxRecord('SCHILY.xattr.user.a', 'v'),
        member({ name: 'ignored' }, Buffer.from('data')),
      ),
      member({ name: Buffer.from([0x61, 0xff, 0xfe]) }, Buffer.alloc(BLOCK_SIZE, 1)),
      endOfArchive(),
    ]),
  ];
}

interface Outcome {
  events: string[];
  error: NsboxError | null;
}

/**
 * Reads an archive in the given chunking, checking the handler's contract as it goes. Returns
 * the events (for comparing chunkings) and the refusal, if any; any other throw fails the test.
 */
function read(archive: Buffer, chunks: number[]): Outcome {
  const events: string[] = [];
  let open: TarEntry | null = null;
  let got = 0;
  let data: Buffer[] = [];
  const reader = new TarReader(
    {
      onEntry: (e) => {
        expect(open, 'onEntry before the previous entry ended').toBeNull();
        checkEntry(e);
        open = e;
        got = 0;
        data = [];
        events.push(`entry ${JSON.stringify(e, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : v))}`);
      },
      onData: (c) => {
        expect(open, 'onData outside an entry').not.toBeNull();
        got += c.length;
        expect(got).toBeLessThanOrEqual(open!.size);
        data.push(Buffer.from(c));
      },
      onEntryEnd: () => {
        expect(open, 'onEntryEnd outside an entry').not.toBeNull();
        expect(got, 'data bytes passed for the entry').toBe(open!.size);
        // Compared whole: how data is sliced into calls follows the chunking, what it is must not.
        events.push(`data ${Buffer.concat(data).toString('hex')}`);
        open = null;
      },
    },
    'fuzz',
  );
  try {
    let at = 0;
    for (const n of chunks) {
      reader.write(archive.subarray(at, at + n));
      at += n;
    }
    reader.write(archive.subarray(at));
    reader.end();
    expect(open, 'an entry left open at a clean end').toBeNull();
    return { events, error: null };
  } catch (e) {
    if (!(e instanceof NsboxError)) throw e;
    expect(e.code).toBe('BAD_ARCHIVE');
    expect(e.message).toMatch(/^fuzz: /);
    return { events, error: e };
  }
}

/** What an extractor relies on: values it can pass to the kernel as they are. */
function checkEntry(e: TarEntry): void {
  expect(Number.isSafeInteger(e.size) && e.size >= 0, `size ${e.size}`).toBe(true);
  expect(e.mode & ~0o7777).toBe(0);
  for (const id of [e.uid, e.gid]) expect(Number.isInteger(id) && id >= 0 && id < 0xffffffff, `id ${id}`).toBe(true);
  for (const n of [e.devmajor, e.devminor]) expect(Number.isInteger(n) && n >= 0, `device number ${n}`).toBe(true);
  expect(Number.isFinite(e.mtime), `mtime ${e.mtime}`).toBe(true);
  expect(Number.isInteger(e.mtimeNsec) && e.mtimeNsec >= 0 && e.mtimeNsec < 1e9, `mtimeNsec ${e.mtimeNsec}`).toBe(true);
  expect(e.name.includes('\0') || e.linkname.includes('\0')).toBe(false);
}

const FIELDS: Array<[number, number]> = [
  [0, 100],
  [100, 8],
  [108, 8],
  [116, 8],
  [124, 12],
  [136, 12],
  [148, 8],
  [156, 1],
  [157, 100],
  [329, 8],
  [337, 8],
  [345, 155],
];
const EXTREMES = [
  '',
  '7'.repeat(20),
  '-1',
  '99999999999',
  ' \0',
  '0x10',
  '\x80\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff',
  '\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff',
  '\x80\0\0\0\0\0\0\x01\0\0\0\0',
];
const PAX_NASTY = [
  'path=',
  'size=99999999999999999999',
  'size=-1',
  'uid=4294967295',
  'gid=1e3',
  'mtime=-1.5',
  'mtime=1e309',
  'GNU.sparse.map=0',
  'linkpath=\0x',
  'SCHILY.xattr.=x',
  'mtime=.',
];

function mutate(seed: Buffer, next: () => number): Buffer {
  let b = Buffer.from(seed);
  const blocks = () => Math.max(1, Math.floor(b.length / BLOCK_SIZE));
  /** The offset of a whole block of the archive, or -1 when it was cut below one. */
  const wholeBlock = () => (b.length < BLOCK_SIZE ? -1 : (next() % Math.floor(b.length / BLOCK_SIZE)) * BLOCK_SIZE);
  const count = 1 + (next() % 4);
  for (let k = 0; k < count; k++) {
    const at = next() % b.length;
    switch (next() % 8) {
      case 0: // a flipped byte
        b[at] ^= 1 << (next() % 8);
        break;
      case 1: {
        // a header field set to an extreme value, checksum kept right
        const block = wholeBlock();
        if (block < 0) break;
        const [off, len] = FIELDS[next() % FIELDS.length]!;
        const v = Buffer.from(EXTREMES[next() % EXTREMES.length]!, 'latin1');
        b.fill(0, block + off, block + off + len);
        v.copy(b, block + off, 0, Math.min(len, v.length));
        if (next() % 4) fixChecksum(b.subarray(block, block + BLOCK_SIZE));
        break;
      }
      case 2: // cut short
        b = b.subarray(0, at);
        break;
      case 3: {
        // a block repeated
        const block = (next() % blocks()) * BLOCK_SIZE;
        b = Buffer.concat([b.subarray(0, block), b.subarray(block, block + BLOCK_SIZE), b.subarray(block)]);
        break;
      }
      case 4: {
        // a block dropped
        const block = (next() % blocks()) * BLOCK_SIZE;
        b = Buffer.concat([b.subarray(0, block), b.subarray(block + BLOCK_SIZE)]);
        break;
      }
      case 5: {
        // a hostile pax header in front
        const rec = PAX_NASTY[next() % PAX_NASTY.length]!;
        const [key, ...rest] = rec.split('=');
        b = Buffer.concat([paxMember(paxRecord(key!, rest.join('=')), Buffer.alloc(0)), b]);
        break;
      }
      case 6: {
        // a type flag changed, checksum kept right
        const block = wholeBlock();
        if (block < 0) break;
        b[block + 156] = '0123456LKxgSV\0A'.charCodeAt(next() % 15);
        fixChecksum(b.subarray(block, block + BLOCK_SIZE));
        break;
      }
      default: // random bytes over a stretch
        for (let i = at; i < Math.min(b.length, at + 1 + (next() % 64)); i++) b[i] = next() & 0xff;
        break;
    }
    if (b.length === 0) return b;
  }
  return b;
}

function chunking(length: number, next: () => number): number[] {
  const out: number[] = [];
  let left = length;
  while (left > 0) {
    const n = 1 + (next() % (next() % 2 ? 700 : 7));
    out.push(n);
    left -= n;
  }
  return out;
}

describe('TarReader under fuzzing', () => {
  it(
    `reads or refuses ${RUNS} mutated archives, the same in any chunking (seed ${SEED})`,
    () => {
      const next = rng(SEED);
      const seeds = corpus();
      let refused = 0;
      for (let run = 0; run < RUNS; run++) {
        const archive = mutate(seeds[run % seeds.length]!, next);
        const whole = read(archive, []);
        const split = read(archive, chunking(archive.length, next));
        expect(split.events, `run ${run}: the chunking changed what was read`).toEqual(whole.events);
        expect(split.error?.message ?? null).toBe(whole.error?.message ?? null);
        if (whole.error) refused++;
      }
      // Both sides must be exercised, or the mutations are not doing their job.
      expect(refused).toBeGreaterThan(RUNS / 10);
      expect(refused).toBeLessThan(RUNS);
    },
    60_000 + RUNS * 10,
  );

  it('reads every unmutated seed without a refusal', () => {
    for (const s of corpus()) expect(read(s, []).error).toBeNull();
  });
});

describe('what the fuzzing found', () => {
  it('refuses an owner of (uid_t)-1, which chown reads as "unchanged"', () => {
    const archive = Buffer.concat([paxMember(paxRecord('uid', '4294967295'), member({ name: 'f' })), endOfArchive()]);
    expect(read(archive, []).error?.message).toMatch(/owner 4294967295:0 is not a valid id/);
  });

  it('refuses a negative base-256 device number or mode', () => {
    for (const off of [329, 100]) {
      const head = encodeHeader({ type: 'char', name: 'dev', mode: 0o600, uid: 0, gid: 0, mtime: 0, size: 0, devmajor: 1, devminor: 3 });
      head.fill(0xff, off, off + 8);
      fixChecksum(head);
      expect(read(Buffer.concat([head, endOfArchive()]), []).error?.message).toMatch(/mode or device number out of range/);
    }
  });
});
