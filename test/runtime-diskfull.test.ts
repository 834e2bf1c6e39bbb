// Issue 10, item 5: a full disk under the state directory (a small tmpfs, filled by the
// containers themselves). A finished run keeps its command's exit status (never 125), an exit
// status already known is never lost (`Exited (?)`), a state write that cannot be made fails
// with ENOSPC naming the file and leaves nothing behind, and commit -o names the file it could
// not write.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Runtime } from '../src/runtime';
import { distModule } from './helpers';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');

let base: string;
let root: string;
let mounted = false;

beforeAll(() => {
  distModule('container');
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-full-'));
  root = path.join(base, 'root');
  fs.mkdirSync(root, { mode: 0o700 });
  expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=12m,mode=0700', 'nsbox-full', root]).status).toBe(0);
  mounted = true;
  new Runtime({ root }).images.get('busybox');
});
afterAll(() => {
  if (mounted) spawnSync('umount', ['-l', root]);
  fs.rmSync(base, { recursive: true, force: true });
});

function nsbox(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, '--root', root, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function freeBytes(): number {
  const st = fs.statfsSync(root);
  return st.bavail * st.bsize;
}

/** Fills the disk from inside a container: dd stops at ENOSPC. */
const FILL = 'dd if=/dev/zero of=/fill bs=64k 2>/dev/null';

describe('a full disk under the state directory', () => {
  it("run --rm of a command that fills the disk exits with the command's status, and is removed", () => {
    const r = nsbox(['run', '--rm', 'busybox', 'sh', '-c', `${FILL}; echo done; exit 4`]);
    expect(r).toMatchObject({ code: 4, out: 'done\n' });
    expect(r.err).not.toMatch(/internal error/);
    expect(fs.readdirSync(path.join(root, 'containers'))).toEqual([]);
  });

  it('the exit status of a container that filled the disk is kept, and ps shows it', () => {
    const r = nsbox(['run', '--name', 'filler', 'busybox', 'sh', '-c', `${FILL}; exit 7`]);
    expect(r.code).toBe(7);
    expect(freeBytes()).toBeLessThan(64 * 1024);
    // Another process reads it from disk.
    expect(new Runtime({ root }).inspect('filler')).toMatchObject({ status: 'exited', exitCode: 7 });
    expect(nsbox(['ps', '-a']).out).toMatch(/filler .*Exited \(7\)/);
  });

  it('a run that cannot write its record fails before starting, naming ENOSPC and the file, and leaves nothing', () => {
    expect(freeBytes()).toBeLessThan(64 * 1024);
    const before = fs.readdirSync(path.join(root, 'containers'));
    const r = nsbox(['run', '--rm', 'busybox', 'echo', 'x']);
    expect(r.code).toBe(125);
    expect(r.out).toBe(''); // nothing ran: no output followed by an error
    expect(r.err).toMatch(/ENOSPC/);
    expect(r.err).toMatch(/container\.json/);
    expect(r.err).not.toMatch(/internal error/);
    expect(fs.readdirSync(path.join(root, 'containers'))).toEqual(before);
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
  });

  it('commit -o onto the full disk names the tarball and ENOSPC, and leaves neither it nor its temp', () => {
    const out = path.join(root, 'out.tar');
    const r = nsbox(['commit', '-o', out, 'filler', 'snap']);
    expect(r.code).toBe(125);
    expect(r.err).toMatch(/ENOSPC/);
    expect(r.err).toMatch(/out\.tar|the image under/);
    expect(r.err).not.toMatch(/internal error/);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(root).filter((f) => f.includes('nsbox-tmp'))).toEqual([]);
    expect(new Runtime({ root }).images.find('snap')).toBeUndefined();
  });

  it('once space is freed (rm of the filler), everything works again', () => {
    expect(nsbox(['rm', 'filler'])).toMatchObject({ code: 0 });
    expect(nsbox(['run', '--rm', 'busybox', 'echo', 'x'])).toMatchObject({ code: 0, out: 'x\n' });
    expect(fs.readdirSync(path.join(root, 'containers'))).toEqual([]);
  });
});
