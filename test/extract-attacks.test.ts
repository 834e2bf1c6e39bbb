// The extractor (src-cc/core/tar_import.cc's policy + src-cc/core/extract.cc) against archives
// that try to write outside the image root: through a symlink an earlier entry planted, through
// a parent made a symlink mid-archive, by hardlinks to host files, by '..' components. Each is
// refused (UNSAFE_PATH) or made safe as before this writer (an entry replaces what an earlier
// one put at its name); the host's canaries (a directory and a file in the system's tmpdir,
// /etc/passwd) must be exactly as before, and a failed import leaves no fd open. The addon's
// own checks are attacked too, with steps no policy filtered.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { openDir } from '../src/fsat';
import { extractTarball } from '../src/image/extract';
import { BLOCK_SIZE, encodeHeader, endOfArchive, type TarHeaderInput } from '../src/image/tar';
import { native, type NativeExtractError } from '../src/native';
import { openFds } from './helpers';

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

const archive = (specs: Spec[]): Buffer => Buffer.concat([...specs.map(member), endOfArchive()]);
const link = (name: string, target: string): Spec => ({ name, type: 'symlink', linkname: target, mode: 0o777 });
const hard = (name: string, target: string): Spec => ({ name, type: 'hardlink', linkname: target });
const dir = (name: string, mode = 0o755): Spec => ({ name, type: 'directory', mode, mtime: 1_000_000_000 });
const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

let base: string;
let dest: string;
/** Outside `base`: where a planted symlink points. */
let canaryDir: string;
let canaryFile: string;
let hostBefore: string;

/** Everything an escape could change: the canaries' contents, modes, times and link counts, and /etc/passwd. */
function hostState(): string {
  const st = (p: string) => {
    const s = fs.lstatSync(p);
    return [s.mode, s.uid, s.gid, s.nlink, s.mtimeMs, s.size];
  };
  return JSON.stringify({
    passwd: [sha256('/etc/passwd'), st('/etc/passwd')],
    etc: fs.readdirSync('/etc').sort(),
    canaryDir: [fs.readdirSync(canaryDir).sort(), st(canaryDir)],
    canaryFile: [sha256(canaryFile), st(canaryFile)],
    beside: fs
      .readdirSync(base)
      .filter((n) => n !== 'image.tar')
      .sort(),
  });
}

async function extract(specs: Spec[]): Promise<unknown> {
  const file = path.join(base, 'image.tar');
  fs.writeFileSync(file, archive(specs));
  return extractTarball(file, dest).then(
    () => undefined,
    (e: unknown) => e,
  );
}

/** Refused with `code`, naming `entry`; the host untouched and no fd left open. */
async function refused(specs: Spec[], code: string, entry: string, pattern?: RegExp): Promise<void> {
  const fds = openFds();
  const err = await extract(specs);
  expect(err).toBeInstanceOf(NsboxError);
  expect((err as NsboxError).code).toBe(code);
  expect((err as NsboxError).message).toContain(`"${entry}"`);
  if (pattern) expect((err as NsboxError).message).toMatch(pattern);
  expect(openFds()).toEqual(fds);
  expect(hostState()).toBe(hostBefore);
  // The next archive gets a fresh root, as the image store gives each import.
  fs.rmSync(dest, { recursive: true, force: true });
  fs.mkdirSync(dest);
}

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-attack-'));
  dest = path.join(base, 'root');
  fs.mkdirSync(dest);
  canaryDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-canary-dir-'));
  canaryFile = path.join(canaryDir, 'file');
  fs.writeFileSync(canaryFile, 'do not touch\n');
  fs.utimesSync(canaryDir, 1_000_000, 1_000_000);
  hostBefore = hostState();
});

afterEach(() => {
  fs.rmSync(base, { recursive: true, force: true });
  fs.rmSync(canaryDir, { recursive: true, force: true });
});

describe('the batched writer never leaves the root', () => {
  it('refuses every entry under a symlink an earlier entry planted (a -> the canary dir)', async () => {
    const plant = link('a', canaryDir);
    await refused([plant, { name: 'a/x', data: 'pwned' }], 'UNSAFE_PATH', 'a/x', /parent "a" is a symlink/);
    await refused([plant, dir('a/x/')], 'UNSAFE_PATH', 'a/x/');
    await refused([plant, link('a/x', '/')], 'UNSAFE_PATH', 'a/x');
    await refused([{ name: 'f', data: 'mine' }, plant, hard('a/x', 'f')], 'UNSAFE_PATH', 'a/x');
    // A missing directory under the symlink: never made there.
    await refused([plant, { name: 'a/new/deep/x', data: 'pwned' }], 'UNSAFE_PATH', 'a/new/deep/x', /parent "a" is a symlink/);
    // The same through a relative symlink that climbs out of the root.
    await refused([link('up', `../../../../../../../..${canaryDir}`), { name: 'up/x', data: 'pwned' }], 'UNSAFE_PATH', 'up/x');
    // Deeper in the tree, after many entries were written through cached parent fds.
    const many: Spec[] = [dir('d/'), dir('d/e/')];
    for (let i = 0; i < 50; i++) many.push({ name: `d/e/f${i}`, data: `${i}` });
    await refused([...many, link('d/e/l', canaryDir), { name: 'd/e/l/x', data: 'pwned' }], 'UNSAFE_PATH', 'd/e/l/x', /parent "d\/e\/l" is a symlink/);
  });

  it('refuses a parent made a symlink mid-archive, even where a directory of that name was used before', async () => {
    // "x" is a directory, is written into, then replaced (it is empty again? no: so refused as today).
    await refused([dir('x/'), { name: 'x/f', data: '1' }, link('x', canaryDir)], 'ENOTEMPTY', 'x');
    // An empty directory replaced by a symlink: what comes after goes nowhere.
    await refused([dir('x/'), dir('x/y/'), link('x/y', canaryDir), { name: 'x/y/f', data: 'pwned' }], 'UNSAFE_PATH', 'x/y/f', /parent "x\/y" is a symlink/);
    await refused([dir('x/'), link('x', canaryDir), dir('x/z/')], 'UNSAFE_PATH', 'x/z/');
    // A directory listed after its contents, replaced by a symlink later: still refused.
    await refused([{ name: 'p/q/f', data: '1' }, link('p/q/g', canaryDir), { name: 'p/q/g/h', data: 'pwned' }], 'UNSAFE_PATH', 'p/q/g/h');
  });

  it('refuses hardlinks to host files, by ".." or by an absolute name', async () => {
    const nlink = fs.statSync('/etc/passwd').nlink;
    await refused([hard('pw', '../../etc/passwd')], 'UNSAFE_PATH', 'pw', /hardlink to a host file/);
    await refused([hard('pw', '/etc/passwd')], 'UNSAFE_PATH', 'pw');
    await refused([hard('pw', canaryFile)], 'UNSAFE_PATH', 'pw');
    await refused([hard('pw', `../../../../../../..${canaryFile}`)], 'UNSAFE_PATH', 'pw');
    // To a file reached through a planted symlink: not a file this archive extracted.
    await refused([link('c', canaryDir), hard('pw', 'c/file')], 'UNSAFE_PATH', 'pw');
    expect(fs.statSync('/etc/passwd').nlink).toBe(nlink);
  });

  it('refuses ".." components wherever they are', async () => {
    for (const name of ['../x', 'a/../../x', '..', 'a/..', `../${path.basename(base)}/beside`]) {
      await refused([dir('a/'), { name, data: 'pwned' }], 'UNSAFE_PATH', name, /leaves the image root/);
    }
    await refused([dir('../d/')], 'UNSAFE_PATH', '../d/');
    await refused([link('../l', '/')], 'UNSAFE_PATH', '../l');
    await refused([{ name: 'f', data: 'x' }, hard('../h', 'f')], 'UNSAFE_PATH', '../h');
  });

  it('replaces a planted symlink by a directory entry, a file or a hardlink, never writing through it', async () => {
    const err = await extract([
      link('s', canaryDir),
      dir('s/', 0o700),
      { name: 's/file', data: 'inside' },
      link('t', canaryFile),
      { name: 't', data: 'replaced', mode: 0o600 },
      { name: 'real', data: 'real' },
      link('h', canaryFile),
      hard('h', 'real'),
      // The directory's attributes, set last, land on the directory that replaced the link.
      dir('s/', 0o555),
    ]);
    expect(err).toBeUndefined();
    expect(fs.lstatSync(path.join(dest, 's')).isDirectory()).toBe(true);
    expect(fs.statSync(path.join(dest, 's')).mode & 0o7777).toBe(0o555);
    expect(fs.readFileSync(path.join(dest, 's/file'), 'utf8')).toBe('inside');
    expect(fs.lstatSync(path.join(dest, 't')).isFile()).toBe(true);
    expect(fs.readFileSync(path.join(dest, 't'), 'utf8')).toBe('replaced');
    expect(fs.statSync(path.join(dest, 'h')).ino).toBe(fs.statSync(path.join(dest, 'real')).ino);
    expect(hostState()).toBe(hostBefore);
  });

  it('leaves no fd open when it fails with a file half written, in a batch still running or in the next one', async () => {
    const big = Buffer.alloc(3 << 20, 7);
    // Fails in the addon (ENOTEMPTY) after a file that spans batches.
    await refused([{ name: 'big', data: big }, dir('d/'), { name: 'd/f', data: '1' }, link('d', '/')], 'ENOTEMPTY', 'd');
    // Fails here (a hardlink refused) while the batch before may still be running.
    await refused([{ name: 'big', data: big }, hard('h', '/etc/passwd')], 'UNSAFE_PATH', 'h');
    // Fails in the reader (truncated) in the middle of a file.
    const fds = openFds();
    const file = path.join(base, 'image.tar');
    fs.writeFileSync(file, archive([{ name: 'big', data: big }]).subarray(0, 2 << 20));
    await expect(extractTarball(file, dest)).rejects.toMatchObject({ code: 'BAD_ARCHIVE' });
    expect(openFds()).toEqual(fds);
  });
});

describe('the addon checks what it is given', () => {
  /** One encoded step (layout: src-cc/core/extract.h), with no policy in front of it. */
  function step(op: number, pathName: string, link = ''): Buffer {
    const p = Buffer.from(pathName);
    const l = Buffer.from(link);
    const h = Buffer.alloc(40);
    h[0] = op;
    h.writeUInt32LE(0o755, 4);
    h.writeDoubleLE(1_000_000_000, 16);
    h.writeUInt32LE(p.length, 28);
    h.writeUInt32LE(l.length, 32);
    return Buffer.concat([h, p, l]);
  }

  async function run(ops: Buffer): Promise<NativeExtractError | null> {
    const rootFd = openDir(dest);
    const writer = new (native().ExtractWriter)(rootFd);
    try {
      return await new Promise((resolve) => writer.run(ops, ops.length, [], resolve));
    } finally {
      writer.close();
      fs.closeSync(rootFd);
    }
  }

  it('refuses "..", absolute and empty components and NUL bytes itself', async () => {
    const fds = openFds();
    const outside = path.relative(dest, canaryDir);
    for (const [op, name, target] of [
      [4, `${outside}/made-by-mkdir`],
      [1, `${outside}/made-by-open`],
      [5, `${outside}/made-by-symlink`, '/'],
      [4, '..'],
      [4, 'a/../..'],
      [1, `/${canaryDir.slice(1)}/x`],
      [4, 'a//b'],
      [4, 'a/./b'],
      [1, 'nul\0byte'],
      [6, 'h', '../../../../etc/passwd'],
      [6, 'h', '/etc/passwd'],
      [7, '..'],
    ] as Array<[number, string, string?]>) {
      const e = await run(step(op, name, target));
      expect(e, `${op} ${name}`).toMatchObject({ code: 'EINVAL' });
    }
    // A symlinked parent stops it even when nothing in TypeScript looked.
    fs.symlinkSync(canaryDir, path.join(dest, 'planted'));
    expect(await run(step(1, 'planted/x'))).toMatchObject({ code: 'ELOOP', kind: 1, at: Buffer.from('planted') });
    expect(await run(step(7, 'planted'))).toMatchObject({ code: 'ELOOP' });
    expect(await run(step(6, 'h', 'planted/file'))).toMatchObject({ code: 'ELOOP' });
    // A truncated or unknown step is refused, not read past its end.
    expect(await run(step(4, 'ok').subarray(0, 41))).toMatchObject({ code: 'EINVAL', kind: 5 });
    expect(await run(step(99, 'x'))).toMatchObject({ code: 'EINVAL', kind: 5 });
    expect(hostState()).toBe(hostBefore);
    expect(openFds()).toEqual(fds);
  });

  it('runs a whole import under a root given by its fd, and fails cleanly when that fd is not a directory (ImportJob)', async () => {
    const file = path.join(base, 'image.tar');
    fs.writeFileSync(file, archive([dir('etc/'), { name: 'etc/motd', data: 'hi\n' }, link('etc/l', 'motd')]));
    const job = (rootFd: number) => {
      // The job takes both fds and closes them once it ran.
      const tarFd = fs.openSync(file, 'r');
      const j = new (native().ImportJob)(tarFd, rootFd, { tarball: file, label: `import: ${file}`, what: 'import', umask: 0o22, alwaysChown: false });
      return new Promise<unknown>((resolve) => j.run((e, r) => resolve(e ?? r)));
    };
    const fds = openFds();
    expect(await job(openDir(dest))).toMatchObject({ entries: 3, bytes: 3, digest: sha256(file) });
    expect(openFds()).toEqual(fds);
    expect(fs.readFileSync(path.join(dest, 'etc/motd'), 'utf8')).toBe('hi\n');
    expect(fs.readlinkSync(path.join(dest, 'etc/l'))).toBe('motd');
    expect(fs.statSync(path.join(dest, 'etc')).mtimeMs).toBe(1_000_000_000_000);
    // A regular file as the root: every step fails in the kernel (ENOTDIR), nothing is made beside it.
    expect(await job(fs.openSync(canaryFile, 'r'))).toMatchObject({ kind: 'write', code: 'ENOTDIR', entry: 'etc/' });
    expect(openFds()).toEqual(fds);
    expect(hostState()).toBe(hostBefore);
  });
});
