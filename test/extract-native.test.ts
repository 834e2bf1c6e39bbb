// What the import newly does in C++ (src-cc/core/tar_import.cc), against a real file system:
// gzip inflated by the addon with Node's gunzip rules (members one after another, zero
// padding after the last, garbage refused, a cut anywhere refused), names kept as their bytes
// (as GNU tar keeps them; the TypeScript reader made U+FFFD of bytes that were not UTF-8), and
// the digest of exactly the file's bytes, trailing ones included. Failures leave no fd open.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { extractTarball } from '../src/image/extract';
import { BLOCK_SIZE, encodeHeader, endOfArchive, type TarHeaderInput } from '../src/image/tar';
import { openFds } from './helpers';

type Spec = Partial<TarHeaderInput> & { name: string | Buffer; data?: Buffer };

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
const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let base: string;
let n = 0;

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-native-'));
});
afterEach(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

/** Imports `bytes` into a fresh directory: the result or the error, and that directory. */
async function importBytes(bytes: Buffer): Promise<{ result?: Awaited<ReturnType<typeof extractTarball>>; error?: NsboxError; dest: string }> {
  const file = path.join(base, `t${n}.tar`);
  const dest = path.join(base, `d${n++}`);
  fs.writeFileSync(file, bytes);
  fs.mkdirSync(dest);
  try {
    return { result: await extractTarball(file, dest), dest };
  } catch (e) {
    expect(e).toBeInstanceOf(NsboxError);
    return { error: e as NsboxError, dest };
  } finally {
    fs.rmSync(file);
  }
}

describe('the import in the addon', () => {
  const files = Array.from({ length: 12 }, (_, i) => ({ name: `f${i}`, data: Buffer.alloc(700 * i + 1, i + 1) }));
  const tar = archive([{ name: 'd/', type: 'directory', mode: 0o755 }, ...files.map((f) => ({ ...f, name: `d/${f.name}` }))]);

  it('reads gzip members one after another and zero padding after them, as Node gunzip does; refuses garbage', async () => {
    const half = tar.length / 2 - ((tar.length / 2) % BLOCK_SIZE);
    const members = Buffer.concat([gzipSync(tar.subarray(0, half)), gzipSync(tar.subarray(half))]);
    expect(gunzipSync(members).equals(tar)).toBe(true);
    for (const bytes of [members, Buffer.concat([members, Buffer.alloc(4096)])]) {
      const { result, dest } = await importBytes(bytes);
      expect(result).toMatchObject({ entries: 13, digest: sha256(bytes) });
      for (const f of files) expect(fs.readFileSync(path.join(dest, 'd', f.name)).equals(f.data)).toBe(true);
    }
    const { error } = await importBytes(Buffer.concat([gzipSync(tar), Buffer.from('garbage')]));
    expect(error?.code).toBe('BAD_ARCHIVE');
    expect(error?.message).toMatch(/gzip: incorrect header check \(at offset \d+ of the tar/);
  });

  it('refuses gzip input cut anywhere, naming where in the tar it stopped, and leaves no fd or thread', async () => {
    const gz = gzipSync(tar);
    await importBytes(gz); // the pool's threads started
    const fds = openFds();
    const threads = fs.readdirSync('/proc/self/task').length;
    for (let cut = 1; cut < gz.length; cut += 1 + (cut % 37)) {
      const { error } = await importBytes(gz.subarray(0, cut));
      expect(error?.code, `cut at ${cut}`).toBe('BAD_ARCHIVE');
      // Either the inflated tar stopped early or gzip's own end is missing.
      expect(error?.message).toMatch(/gzip: unexpected end of file \(at offset \d+ of the tar|truncated|without the end-of-archive/);
    }
    // Bytes flipped inside the deflate stream: refused by zlib or by the tar's checksums, never read past.
    for (let at = 20; at < gz.length - 8; at += 53) {
      const bad = Buffer.from(gz);
      bad[at] ^= 0x5a;
      const { error, result } = await importBytes(bad);
      if (result) continue; // a flip zlib and tar both accept is possible, rarely
      expect(error?.code).toBe('BAD_ARCHIVE');
    }
    expect(openFds()).toEqual(fds);
    // Each import's reading thread is joined, failed or not.
    expect(fs.readdirSync('/proc/self/task').length).toBe(threads);
  });

  it('keeps names as their bytes, as GNU tar does, UTF-8 or not', async () => {
    const raw = Buffer.from([0x6e, 0xe9, 0xff, 0x2e, 0x74, 0x78, 0x74]); // "n\xe9\xff.txt": latin1, not UTF-8
    const bytes = archive([
      { name: raw, data: Buffer.from('raw') },
      { name: 'ünï', data: Buffer.from('utf8') },
    ]);
    const { result, dest } = await importBytes(bytes);
    expect(result?.entries).toBe(2);
    const byTar = path.join(base, 'by-tar');
    fs.mkdirSync(byTar);
    const file = path.join(base, 'raw.tar');
    fs.writeFileSync(file, bytes);
    execFileSync('tar', ['-xf', file, '-C', byTar]);
    const names = (dir: string) => (fs.readdirSync(dir, { encoding: 'buffer' }) as Buffer[]).map((b) => b.toString('hex')).sort();
    expect(names(dest)).toEqual(names(byTar));
    expect(names(dest)).toContain(raw.toString('hex'));
  });

  it('hashes every byte of the file, also after the end-of-archive blocks, with data across every buffer of the ring', async () => {
    const trailing = Buffer.concat([tar, Buffer.alloc(3 << 20, 0x55)]);
    const { result } = await importBytes(trailing);
    expect(result?.digest).toBe(sha256(trailing));
    // Data spanning the 1 MiB reads of the ring, 5 times round it.
    const big = Buffer.alloc(5 * 4 * (1 << 20) + 12345);
    for (let i = 0; i + 4 <= big.length; i += 4) big.writeUInt32LE(i, i);
    const bigTar = archive([
      { name: 'big', data: big },
      { name: 'after', data: Buffer.from('y') },
    ]);
    const r = await importBytes(bigTar);
    expect(r.result?.digest).toBe(sha256(bigTar));
    expect(fs.readFileSync(path.join(r.dest, 'big')).equals(big)).toBe(true);
  });
});
