// /dev: a tmpfs of the container's own with the usual devices, a private devpts, and /dev/tty
// as the controlling terminal when there is one. Host-side checks make sure nothing was made
// in the rootfs itself (the fixture's /dev is an empty directory).
import { existsSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { Container, ROOTFS, run, sh, until } from './helpers';

const rootfsDev = () => readdirSync(`${ROOTFS}/dev`);

describe('/dev', () => {
  it('has null, zero, full, random, urandom and tty as the real devices', async () => {
    const out = await sh('for d in null zero full random urandom tty; do stat -c "%n %F %t:%T %a" /dev/$d; done');
    expect(out.trim().split('\n')).toEqual([
      '/dev/null character special file 1:3 666',
      '/dev/zero character special file 1:5 666',
      '/dev/full character special file 1:7 666',
      '/dev/random character special file 1:8 666',
      '/dev/urandom character special file 1:9 666',
      '/dev/tty character special file 5:0 666',
    ]);
  });

  it('reads zeros from /dev/zero and nothing from /dev/null', async () => {
    const r = await run(['sh', '-c', 'head -c 4096 /dev/zero; cat /dev/null']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.length).toBe(4096);
    expect(r.stdout.every((b) => b === 0)).toBe(true);
  });

  it('reads random bytes from /dev/urandom', async () => {
    const a = await run(['head', '-c', '4096', '/dev/urandom']);
    const b = await run(['head', '-c', '4096', '/dev/urandom']);
    expect(a.stdout.length).toBe(4096);
    expect(a.stdout.equals(b.stdout)).toBe(false);
    expect(new Set(a.stdout).size).toBeGreaterThan(200); // all byte values, near enough
  });

  it('gives ENOSPC on /dev/full', async () => {
    const r = await run(['sh', '-c', 'echo x > /dev/full']);
    expect(r.exitCode).not.toBe(0);
    expect(r.err).toMatch(/No space left on device/);
  });

  it('swallows writes to /dev/null without making a file, inside or in the rootfs', async () => {
    expect(rootfsDev()).toEqual([]);
    const out = await sh('echo x > /dev/null; echo y >> /dev/null; stat -c "%F %t:%T" /dev/null; wc -c < /dev/null');
    expect(out.trim().split('\n')).toEqual(['character special file 1:3', '0']);
    // /dev was a tmpfs of the container's own: nothing landed in the rootfs's /dev.
    expect(rootfsDev()).toEqual([]);
    expect(existsSync(`${ROOTFS}/dev/null`)).toBe(false);
  });

  it('makes /dev a fresh tmpfs for each container', async () => {
    await sh('echo left-behind > /dev/scratch');
    expect((await sh('ls /dev/scratch 2>&1 || echo gone')).trim()).toMatch(/gone$/);
    expect(rootfsDev()).toEqual([]);
  });

  it('has a private devpts: /dev/ptmx is pts/ptmx and no host pty shows', async () => {
    const out = await sh('readlink /dev/ptmx; ls /dev/pts');
    expect(out.trim().split(/\s+/)).toEqual(['pts/ptmx', 'ptmx']);
    // A pty opened inside appears in the container's own devpts, numbered from 0.
    const r = await run(['sh', '-c', 'exec 3<>/dev/ptmx; ls /dev/pts'], {});
    expect(r.out.trim().split(/\s+/).sort()).toEqual(['0', 'ptmx']);
  });

  it('has the fd, stdin, stdout and stderr links and a writable /dev/shm', async () => {
    const out = await sh('for l in fd stdin stdout stderr; do readlink /dev/$l; done; echo shm > /dev/shm/x && cat /dev/shm/x');
    expect(out.trim().split('\n')).toEqual(['/proc/self/fd', '/proc/self/fd/0', '/proc/self/fd/1', '/proc/self/fd/2', 'shm']);
  });

  it('has no /dev/tty to open without a terminal', async () => {
    const r = await run(['sh', '-c', 'echo x > /dev/tty']);
    expect(r.exitCode).not.toBe(0);
    expect(r.err).toMatch(/No such device or address/);
  });

  it('makes /dev/tty the terminal with tty: true', async () => {
    const c = Container.start({
      root: { type: 'bind', path: ROOTFS },
      command: ['sh', '-c', 'echo via-dev-tty > /dev/tty; stty size < /dev/tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys'],
      tty: { cols: 91, rows: 33 },
    });
    expect(c.stdout).toBeNull();
    let text = '';
    c.terminal!.on('data', (d: Buffer) => (text += d.toString()));
    const status = await c.wait();
    expect(status).toMatchObject({ exitCode: 0, signal: null });
    await until('terminal output', () => text.includes('all-ttys'));
    expect(text.split('\r\n').filter(Boolean)).toEqual(['via-dev-tty', '33 91', 'all-ttys']);
  });
});
