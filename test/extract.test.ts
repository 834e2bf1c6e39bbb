// extractTarball: a faithful copy of what GNU tar extracts, and nothing outside the image root
// whatever the archive says. Every hostile archive is checked against the host: /etc and a
// canary file next to the destination must be exactly as before.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { extractTarball } from '../src/image/extract';
import { BLOCK_SIZE, encodeHeader, endOfArchive, paxRecord, type TarHeaderInput } from '../src/image/tar';
import { TARBALL, openFds } from './helpers';

const isRoot = process.getuid?.() === 0;

type Spec = Partial<TarHeaderInput> & { name: string; data?: string | Buffer };

function member(spec: Spec): Buffer {
  const data = typeof spec.data === 'string' ? Buffer.from(spec.data) : (spec.data ?? Buffer.alloc(0));
  const { data: _data, ...fields } = spec;
  void _data;
  const header = encodeHeader({ type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1_600_000_000, ...fields, size: data.length });
  const body = Buffer.alloc(Math.ceil(data.length / BLOCK_SIZE) * BLOCK_SIZE);
  data.copy(body);
  return Buffer.concat([header, body]);
}

function archive(specs: Spec[]): Buffer {
  return Buffer.concat([...specs.map(member), endOfArchive()]);
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Listing with metadata, like GNU tar would have made it (atime aside). */
function describeTree(root: string): string[] {
  const out = execFileSync('find', ['.', '-printf', '%p %y %m %U %G %T@ %s %l %n\\n'], { cwd: root, encoding: 'utf8' });
  return out.trim().split('\n').sort();
}

let base: string;
let dest: string;
let canary: string;
let hostBefore: string;

/** What a hostile archive must not change: /etc, and everything next to the destination. */
function hostState(): string {
  return JSON.stringify({
    passwd: sha256('/etc/passwd'),
    etc: fs.readdirSync('/etc').sort(),
    canary: sha256(canary),
    base: fs.readdirSync(base).sort(),
    outside: fs.readdirSync(path.join(base, 'outside')).sort(),
  });
}

function writeTar(data: Buffer, name = 'image.tar'): string {
  const file = path.join(base, name);
  fs.writeFileSync(file, data);
  return file;
}

async function refused(tar: Buffer, code: string, entry: string, pattern?: RegExp): Promise<NsboxError> {
  const err = await extractTarball(writeTar(tar), dest).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NsboxError);
  const e = err as NsboxError;
  expect(e.code).toBe(code);
  expect(e.message).toContain(`"${entry}"`);
  if (pattern) expect(e.message).toMatch(pattern);
  fs.rmSync(path.join(base, 'image.tar'));
  expect(hostState()).toBe(hostBefore);
  return e;
}

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-extract-'));
  dest = path.join(base, 'root');
  fs.mkdirSync(dest);
  fs.mkdirSync(path.join(base, 'outside'));
  canary = path.join(base, 'canary');
  fs.writeFileSync(canary, 'do not touch\n');
  hostBefore = hostState();
});

afterEach(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

describe('hostile archives', () => {
  it('refuses ".." components', async () => {
    for (const name of ['../canary', 'a/../../canary', '..', 'ok/../../outside/x']) {
      const e = await refused(
        archive([
          { name: 'ok/', type: 'directory', mode: 0o755 },
          { name, data: 'pwned' },
        ]),
        'UNSAFE_PATH',
        name,
        /leaves the image root/,
      );
      expect(e.path).toBe(name);
    }
    await refused(archive([{ name: '../outside/d/', type: 'directory', mode: 0o755 }]), 'UNSAFE_PATH', '../outside/d/');
    await refused(archive([{ name: '../outside/l', type: 'symlink', linkname: '/' }]), 'UNSAFE_PATH', '../outside/l');
  });

  it('keeps absolute names inside the root', async () => {
    const abs = `${base}/outside/abs-file`;
    const r = await extractTarball(
      writeTar(
        archive([
          { name: '/etc/nsbox-evil', data: 'x' },
          { name: abs, data: 'y' },
          { name: '//./etc//./evil-dir/', type: 'directory', mode: 0o755 },
        ]),
      ),
      dest,
    );
    expect(r.entries).toBe(3);
    expect(fs.readFileSync(path.join(dest, 'etc/nsbox-evil'), 'utf8')).toBe('x');
    expect(fs.readFileSync(path.join(dest, abs), 'utf8')).toBe('y');
    expect(fs.statSync(path.join(dest, 'etc/evil-dir')).isDirectory()).toBe(true);
    expect(fs.existsSync('/etc/nsbox-evil')).toBe(false);
    expect(fs.existsSync(abs)).toBe(false);
    fs.rmSync(path.join(base, 'image.tar'));
    expect(hostState()).toBe(hostBefore);
  });

  it('never writes through a symlink it extracted', async () => {
    const link = (name: string, target: string): Spec => ({ name, type: 'symlink', linkname: target, mode: 0o777 });
    await refused(
      archive([link('evil', '/etc'), { name: 'evil/passwd', data: 'root::0:0::/:/bin/sh\n' }]),
      'UNSAFE_PATH',
      'evil/passwd',
      /parent "evil" is a symlink/,
    );
    await refused(archive([link('evil', '/etc'), { name: 'evil/nsbox-new/', type: 'directory', mode: 0o755 }]), 'UNSAFE_PATH', 'evil/nsbox-new/');
    await refused(archive([link('evil', '/etc'), link('evil/nsbox-link', '/')]), 'UNSAFE_PATH', 'evil/nsbox-link');
    await refused(archive([link('up', '../outside'), { name: 'up/x', data: 'x' }]), 'UNSAFE_PATH', 'up/x');
    await refused(archive([link('up', '../outside'), { name: './up/./x', data: 'x' }]), 'UNSAFE_PATH', './up/./x');
    // Deeper: a real directory, then a symlink inside it, then a path through both.
    await refused(
      archive([{ name: 'a/', type: 'directory', mode: 0o755 }, link('a/b', '/'), { name: 'a/b/etc/passwd', data: 'x' }]),
      'UNSAFE_PATH',
      'a/b/etc/passwd',
      /parent "a\/b" is a symlink/,
    );
    await refused(
      archive([
        { name: 'f', data: 'real' },
        { name: 'in/', type: 'directory', mode: 0o755 },
        link('in/l', '/etc'),
        { name: 'in/l/hl', type: 'hardlink', linkname: 'f' },
      ]),
      'UNSAFE_PATH',
      'in/l/hl',
    );
  });

  it('replaces an earlier symlink of the same name instead of writing through it', async () => {
    const before = sha256('/etc/passwd');
    const tar = archive([
      { name: 'passwd', type: 'symlink', linkname: '/etc/passwd', mode: 0o777 },
      { name: 'passwd', data: 'root:x:0:0:replaced:/root:/bin/sh\n', mode: 0o600 },
      { name: 'canary', type: 'symlink', linkname: canary, mode: 0o777 },
      { name: 'canary/', type: 'directory', mode: 0o700 },
      { name: 'dangling', type: 'symlink', linkname: `${base}/outside/created-by-tar`, mode: 0o777 },
      { name: 'dangling', data: 'x' },
    ]);
    await extractTarball(writeTar(tar), dest);
    expect(sha256('/etc/passwd')).toBe(before);
    const st = fs.lstatSync(path.join(dest, 'passwd'));
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o600);
    expect(fs.readFileSync(path.join(dest, 'passwd'), 'utf8')).toContain('replaced');
    expect(fs.lstatSync(path.join(dest, 'canary')).isDirectory()).toBe(true);
    expect(fs.lstatSync(path.join(dest, 'dangling')).isFile()).toBe(true);
    fs.rmSync(path.join(base, 'image.tar'));
    expect(hostState()).toBe(hostBefore);
  });

  it('refuses hardlinks to anything but a regular file it extracted', async () => {
    const hard = (name: string, target: string): Spec => ({ name, type: 'hardlink', linkname: target });
    await refused(archive([hard('pw', '/etc/passwd')]), 'UNSAFE_PATH', 'pw', /hardlink to a host file/);
    await refused(archive([hard('pw', '../../etc/passwd')]), 'UNSAFE_PATH', 'pw', /hardlink to a host file/);
    await refused(archive([hard('pw', 'etc/passwd')]), 'UNSAFE_PATH', 'pw');
    await refused(archive([hard('c', '../canary')]), 'UNSAFE_PATH', 'c');
    // Through a symlink the archive made, to a symlink, to a directory: all refused.
    await refused(archive([{ name: 'etc', type: 'symlink', linkname: '/etc', mode: 0o777 }, hard('pw', 'etc/passwd')]), 'UNSAFE_PATH', 'pw');
    await refused(archive([{ name: 'l', type: 'symlink', linkname: '/etc/passwd', mode: 0o777 }, hard('pw', 'l')]), 'UNSAFE_PATH', 'pw');
    await refused(archive([{ name: 'd/', type: 'directory', mode: 0o755 }, hard('pw', 'd')]), 'UNSAFE_PATH', 'pw');
    // A target that comes later, the entry itself, and the root as the link.
    await refused(archive([hard('h', 'f'), { name: 'f', data: 'x' }]), 'UNSAFE_PATH', 'h');
    await refused(archive([hard('h', 'h')]), 'UNSAFE_PATH', 'h');
    await refused(archive([{ name: 'f', data: 'x' }, hard('./', 'f')]), 'UNSAFE_PATH', './', /replaces the image root/);
    // A file replaced by a symlink is no longer a target.
    await refused(
      archive([{ name: 'f', data: 'x' }, { name: 'f', type: 'symlink', linkname: '/etc/passwd', mode: 0o777 }, hard('pw', 'f')]),
      'UNSAFE_PATH',
      'pw',
    );
  });

  it('keeps only user.* (not user.overlay.*) and security.capability of the extended attributes', async () => {
    const x = (name: string): [string, Buffer] => [name, Buffer.from('y')];
    const xattrs = ['trusted.overlay.opaque', 'trusted.overlay.redirect', 'user.overlay.opaque', 'system.posix_acl_access', 'security.selinux', 'user.ok'];
    await extractTarball(writeTar(archive([{ name: 'f', data: 'x', xattrs: xattrs.map(x) }])), dest);
    const listed = execFileSync('python3', ['-c', 'import os,sys; print(" ".join(sorted(os.listxattr(sys.argv[1]))))', path.join(dest, 'f')], {
      encoding: 'utf8',
    });
    expect(listed.trim()).toBe('user.ok');
  });

  it('refuses damaged archives, naming where', async () => {
    const good = archive([
      { name: 'first', data: 'a'.repeat(2000) },
      { name: 'second', data: 'b' },
    ]);
    const e = await refused(good.subarray(0, 1200), 'BAD_ARCHIVE', 'first', /truncated at offset 1200/);
    expect(e.path).toBe('first');
    const bad = Buffer.from(good);
    bad[2560 + 3] ^= 0x20;
    await refused(bad, 'BAD_ARCHIVE', 'first', /bad header checksum at offset 2560/);
    await refused(good.subarray(0, 3072), 'BAD_ARCHIVE', 'second', /truncated at offset 3072/);
    await refused(good.subarray(0, 3584), 'BAD_ARCHIVE', 'second', /without the end-of-archive blocks/);
    const gz = gzipSync(good);
    await refused(gz.subarray(0, gz.length - 30), 'BAD_ARCHIVE', 'first');
  });

  it('refuses to replace a directory that is not empty', async () => {
    await refused(
      archive([
        { name: 'd/', type: 'directory', mode: 0o755 },
        { name: 'd/f', data: 'x' },
        { name: 'd', type: 'symlink', linkname: '/etc', mode: 0o777 },
      ]),
      'ENOTEMPTY',
      'd',
    );
  });

  it('closes what it opened when it fails', async () => {
    const fds = openFds();
    const tar = archive([{ name: 'big', data: Buffer.alloc(3 << 20, 1) }]);
    await expect(extractTarball(writeTar(tar.subarray(0, 2 << 20)), dest)).rejects.toThrow(/truncated/);
    expect(openFds()).toEqual(fds);
  });
});

describe('faithful extraction', () => {
  it.skipIf(!isRoot)('restores owners, modes with setuid/setgid/sticky, and mtimes', async () => {
    const tar = archive([
      { name: './', type: 'directory', mode: 0o755, mtime: 1_500_000_000 },
      { name: './tmp/', type: 'directory', mode: 0o1777, mtime: 1_500_000_001 },
      { name: './usr/bin/', type: 'directory', mode: 0o755, mtime: 1_500_000_002 },
      { name: './usr/bin/su', mode: 0o4755, uid: 0, gid: 0, data: 'su' },
      { name: './usr/bin/wall', mode: 0o2755, uid: 0, gid: 5, data: 'wall', mtime: 1_234_567_890 },
      { name: './var/mail/', type: 'directory', mode: 0o2775, uid: 0, gid: 8, mtime: 1_500_000_003 },
      { name: './var/mail/u', mode: 0o600, uid: 1000, gid: 1000, data: 'mail' },
      { name: './home/u/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000 },
      { name: './home/u/link', type: 'symlink', linkname: '../../var/mail/u', uid: 1000, gid: 1000, mtime: 1_400_000_000 },
      { name: './home/u/hard', type: 'hardlink', linkname: './var/mail/u' },
      { name: './secret', mode: 0o000, data: 'shh' },
      { name: './old', data: 'before 1970', mtime: -86_400 * 365 },
      { name: './dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: './dev/fifo', type: 'fifo', mode: 0o644 },
    ]);
    const r = await extractTarball(writeTar(tar), dest);
    expect(r).toMatchObject({ entries: 14, skipped: 2, bytes: 2 + 4 + 4 + 3 + 11 });
    const stat = (p: string) => fs.lstatSync(path.join(dest, p));
    const mode = (p: string) => (stat(p).mode & 0o7777).toString(8);
    expect(mode('tmp')).toBe('1777');
    expect(mode('usr/bin/su')).toBe('4755');
    expect(mode('usr/bin/wall')).toBe('2755');
    expect(stat('usr/bin/wall').gid).toBe(5);
    expect(mode('var/mail')).toBe('2775');
    expect(stat('var/mail').gid).toBe(8);
    expect(stat('var/mail/u')).toMatchObject({ uid: 1000, gid: 1000 });
    expect(stat('home/u/link')).toMatchObject({ uid: 1000, gid: 1000 });
    expect(stat('home/u/link').mtimeMs).toBe(1_400_000_000_000);
    expect(stat('home/u/hard').ino).toBe(stat('var/mail/u').ino);
    expect(mode('secret')).toBe('0');
    expect(stat('usr/bin/wall').mtimeMs).toBe(1_234_567_890_000);
    expect(stat('old').mtimeMs).toBe(-86_400 * 365 * 1000);
    // Directory times survive the entries added to them afterwards.
    expect(stat('tmp').mtimeMs).toBe(1_500_000_001_000);
    expect(stat('usr/bin').mtimeMs).toBe(1_500_000_002_000);
    expect(stat('var/mail').mtimeMs).toBe(1_500_000_003_000);
    expect(fs.statSync(dest).mtimeMs).toBe(1_500_000_000_000);
    expect(fs.existsSync(path.join(dest, 'dev/null'))).toBe(false);
    // Parents the archive does not list are made.
    expect(stat('var').isDirectory()).toBe(true);
  });

  it('extracts long names from GNU L/K headers and pax records', async () => {
    const longDir = `${'d'.repeat(80)}/${'e'.repeat(80)}`;
    const longFile = `${longDir}/${'f'.repeat(120)}`;
    const linkTarget = `/${'t'.repeat(150)}`;
    const gnuHeader = (name: string, flag: string, size: number): Buffer => {
      const b = Buffer.alloc(BLOCK_SIZE);
      b.write(name, 0);
      b.write('0000644\x000000000\x000000000\x00', 100, 'latin1');
      b.write(`${size.toString(8).padStart(11, '0')}\x00`, 124, 'latin1');
      b.write('13000000000\x00', 136, 'latin1');
      b.write(flag, 156, 'latin1');
      b.write('ustar  \x00', 257, 'latin1');
      b.fill(0x20, 148, 156);
      let sum = 0;
      for (const byte of b) sum += byte;
      b.write(`${sum.toString(8).padStart(6, '0')}\x00 `, 148, 'latin1');
      return b;
    };
    const long = (flag: string, value: string): Buffer => {
      const data = Buffer.from(`${value}\0`);
      const body = Buffer.alloc(Math.ceil(data.length / BLOCK_SIZE) * BLOCK_SIZE);
      data.copy(body);
      return Buffer.concat([gnuHeader('././@LongLink', flag, data.length), body]);
    };
    const content = Buffer.from('gnu long name\n');
    const paxName = `pax/${'p'.repeat(200)}/ünïcødé`;
    const tar = Buffer.concat([
      long('L', longFile),
      gnuHeader('truncated', '0', content.length),
      content,
      Buffer.alloc(BLOCK_SIZE - content.length),
      long('L', `${longDir}/link`),
      long('K', linkTarget),
      gnuHeader('truncated2', '2', 0),
      member({ name: paxName, data: 'pax' }),
      member({ name: 'pax/hard', type: 'hardlink', linkname: paxName }),
      endOfArchive(),
    ]);
    await extractTarball(writeTar(tar), dest);
    expect(fs.readFileSync(path.join(dest, longFile), 'utf8')).toBe('gnu long name\n');
    expect(fs.readlinkSync(path.join(dest, longDir, 'link'))).toBe(linkTarget);
    expect(fs.readFileSync(path.join(dest, paxName), 'utf8')).toBe('pax');
    expect(fs.statSync(path.join(dest, 'pax/hard')).nlink).toBe(2);
    expect(fs.existsSync(path.join(dest, 'truncated'))).toBe(false);
    expect(paxRecord('path', paxName)).toContain(paxName);
  });

  it('matches GNU tar on the busybox image, plain and gzipped, with the digest of the file as stored', async () => {
    const byTar = path.join(base, 'by-tar');
    fs.mkdirSync(byTar);
    execFileSync('tar', ['--numeric-owner', '-xpf', TARBALL, '-C', byTar]);
    const plain = await extractTarball(TARBALL, dest);
    expect(plain.digest).toBe(`sha256:${sha256(TARBALL)}`);
    expect(plain.entries).toBe(execFileSync('tar', ['-tf', TARBALL], { encoding: 'utf8' }).trim().split('\n').length);
    expect(describeTree(dest)).toEqual(describeTree(byTar));
    execFileSync('diff', ['-r', '--no-dereference', byTar, dest]);

    const gz = writeTar(gzipSync(fs.readFileSync(TARBALL)), 'busybox.tar.gz');
    const dest2 = path.join(base, 'root2');
    fs.mkdirSync(dest2);
    const progress: Array<[number, number]> = [];
    const zipped = await extractTarball(gz, dest2, { onProgress: (done, total) => progress.push([done, total]) });
    expect(zipped.digest).toBe(`sha256:${sha256(gz)}`);
    expect(zipped.entries).toBe(plain.entries);
    expect(describeTree(dest2)).toEqual(describeTree(byTar));
    const size = fs.statSync(gz).size;
    expect(progress.at(-1)).toEqual([size, size]);
    for (let i = 1; i < progress.length; i++) expect(progress[i]![0]).toBeGreaterThanOrEqual(progress[i - 1]![0]);
  });

  it('handles files bigger than a read chunk', async () => {
    const big = Buffer.alloc(17 << 20);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    const specs: Spec[] = [
      { name: 'small', data: 'x' },
      { name: 'big', data: big },
      { name: 'after', data: 'y' },
    ];
    const file = writeTar(archive(specs));
    let calls = 0;
    const started = performance.now();
    const r = await extractTarball(file, dest, {
      onProgress: () => {
        calls++;
      },
    });
    const elapsed = performance.now() - started;
    expect(r.digest).toBe(`sha256:${sha256(file)}`);
    expect(r.bytes).toBe(big.length + 2);
    expect(fs.readFileSync(path.join(dest, 'big')).equals(big)).toBe(true);
    expect(fs.readFileSync(path.join(dest, 'after'), 'utf8')).toBe('y');
    // At most one report per 50 ms, plus the final one.
    expect(calls).toBeLessThanOrEqual(Math.ceil(elapsed / 50) + 2);
    expect(calls).toBeGreaterThanOrEqual(1);
  });

  it('fails with the error a progress callback throws, once the import has stopped, leaving no fd', async () => {
    const file = writeTar(archive([{ name: 'big', data: Buffer.alloc(64 << 20, 3) }]));
    const fds = openFds();
    const boom = new Error('progress callback failed');
    await expect(
      extractTarball(file, dest, {
        onProgress: () => {
          throw boom;
        },
      }),
    ).rejects.toBe(boom);
    expect(openFds()).toEqual(fds);
  });

  it('refuses a destination that is not a directory', async () => {
    const file = writeTar(archive([{ name: 'a', data: 'x' }]));
    await expect(extractTarball(file, file)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(extractTarball(path.join(base, 'missing.tar'), dest)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
