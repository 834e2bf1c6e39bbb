// Extended attributes and nanosecond times (issue 10, items 4 and 8): a file capability
// (security.capability, as `ping` carries) and user.* survive import, commit and commit -o;
// mtimes keep their nanoseconds where the format has them (pax).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Runtime } from '../src/runtime';
import { ROOTFS } from './helpers';

let work: string;
let rt: Runtime;

// cap_net_raw+ep in the kernel's v2 format: magic|effective, then permitted and inheritable.
const CAP_NET_RAW = (() => {
  const b = Buffer.alloc(20);
  b.writeUInt32LE(0x02000001, 0);
  b.writeUInt32LE(1 << 13, 4);
  return b;
})();

const py = (code: string, ...args: string[]) => execFileSync('python3', ['-c', code, ...args], { encoding: 'utf8' });
const getxattr = (file: string, name: string) =>
  py(
    'import os,sys\ntry: sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).hex())\nexcept OSError as e: sys.stdout.write("none")',
    file,
    name,
  );
const setxattr = (file: string, name: string, hex: string) =>
  py('import os,sys; os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]))', file, name, hex);
const mtime = (file: string) => execFileSync('stat', ['-c', '%.9Y', file], { encoding: 'utf8' }).trim();

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-xattrs-'));
  rt = new Runtime({ root: path.join(work, 'state') });
});

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('extended attributes and times', () => {
  it('import keeps a file capability, user.* and nanosecond mtimes; commit and commit -o keep them', async () => {
    const src = path.join(work, 'src');
    fs.cpSync(ROOTFS, src, { recursive: true, verbatimSymlinks: true });
    fs.copyFileSync(path.join(src, 'bin/busybox'), path.join(src, 'bin/ping-like'));
    setxattr(path.join(src, 'bin/ping-like'), 'security.capability', CAP_NET_RAW.toString('hex'));
    fs.writeFileSync(path.join(src, 'note'), 'hello\n');
    setxattr(path.join(src, 'note'), 'user.origin', Buffer.from('the host').toString('hex'));
    execFileSync('touch', ['-d', '@1700000000.123456789', path.join(src, 'note')]);
    const tarball = path.join(work, 'src.tar');
    execFileSync('tar', ['--numeric-owner', '--format=posix', '--xattrs', '--xattrs-include=*', '-C', src, '-cf', tarball, '.']);

    const image = await rt.import(tarball, 'caps');
    const inImage = (rel: string) => path.join(image.rootfs, rel);
    expect(getxattr(inImage('bin/ping-like'), 'security.capability')).toBe(CAP_NET_RAW.toString('hex'));
    expect(Buffer.from(getxattr(inImage('note'), 'user.origin'), 'hex').toString()).toBe('the host');
    expect(mtime(inImage('note'))).toBe('1700000000.123456789');

    // A container changes the note (overlay copies it up with its attributes) and commits.
    const c = await rt.run({ image: 'caps', command: ['sh', '-c', 'echo more >> /note'], stdio: 'ignore' });
    await c.wait();
    const out = path.join(work, 'commit.tar');
    const committed = await c.commit('caps2', { output: out });
    await c.remove();
    const inCommit = (rel: string) => path.join(committed.rootfs, rel);
    expect(fs.readFileSync(inCommit('note'), 'utf8')).toBe('hello\nmore\n');
    expect(Buffer.from(getxattr(inCommit('note'), 'user.origin'), 'hex').toString()).toBe('the host');
    expect(getxattr(inCommit('bin/ping-like'), 'security.capability')).toBe(CAP_NET_RAW.toString('hex'));

    // The tarball has them too: imported again, and as GNU tar reads it.
    const again = await rt.import(out, 'caps3');
    expect(getxattr(path.join(again.rootfs, 'bin/ping-like'), 'security.capability')).toBe(CAP_NET_RAW.toString('hex'));
    expect(Buffer.from(getxattr(path.join(again.rootfs, 'note'), 'user.origin'), 'hex').toString()).toBe('the host');
    const byTar = path.join(work, 'by-tar');
    fs.mkdirSync(byTar);
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-C', byTar, '-xf', out]);
    expect(getxattr(path.join(byTar, 'bin/ping-like'), 'security.capability')).toBe(CAP_NET_RAW.toString('hex'));
    // The time of an unchanged file, to the nanosecond, through nsbox's tarball and GNU tar.
    expect(mtime(path.join(again.rootfs, 'bin/ping-like'))).toBe(mtime(inImage('bin/ping-like')));
    expect(mtime(path.join(byTar, 'bin/ping-like'))).toBe(mtime(inImage('bin/ping-like')));
  });

  it('does not bring the host-only attributes (trusted.*) into an image', async () => {
    const src = path.join(work, 'src2');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'f'), 'x');
    setxattr(path.join(src, 'f'), 'trusted.secret', Buffer.from('host only').toString('hex'));
    const tarball = path.join(work, 'src2.tar');
    execFileSync('tar', ['--format=posix', '--xattrs', '--xattrs-include=*', '-C', src, '-cf', tarball, '.']);
    const image = await rt.import(tarball, 'trusted');
    expect(getxattr(path.join(image.rootfs, 'f'), 'trusted.secret')).toBe('none');
  });
});
