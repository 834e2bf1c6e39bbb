// Hygiene: what the command inherits from the Node process. No ignored or blocked signal, no
// fd beyond 0, 1, 2 (not even one Node inherited without close-on-exec from its own parent),
// no host environment; its own session, umask 022. Each check also shows that the Node side
// has the thing that must not leak, so that a pass is not vacuous.
import { closeSync, openSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';

import { Container, ROOTFS, run, runNode, sh } from './helpers';

/** The signal masks of a /proc/<pid>/status text, as bigints. */
function sigMasks(status: string): Record<'SigPnd' | 'SigBlk' | 'SigIgn' | 'SigCgt', bigint> {
  const get = (k: string) => BigInt(`0x${new RegExp(`^${k}:\\s*([0-9a-f]+)$`, 'm').exec(status)![1]}`);
  return { SigPnd: get('SigPnd'), SigBlk: get('SigBlk'), SigIgn: get('SigIgn'), SigCgt: get('SigCgt') };
}
const bit = (sig: number) => 1n << BigInt(sig - 1);
const SIGPIPE = 13;

describe('signals', () => {
  it('starts the command with no signal ignored, blocked or caught', async () => {
    // What would leak: Node ignores SIGPIPE (and SIGXFSZ), and an ignored signal survives
    // execve; the same parser on Node's own status shows it. The child starts with every
    // signal blocked (spawn blocks them around clone), so a missing unblock shows in SigBlk.
    const node = sigMasks(readFileSync('/proc/self/status', 'utf8'));
    expect(node.SigIgn & bit(SIGPIPE)).toBe(bit(SIGPIPE));

    const inside = sigMasks(await sh('exec cat /proc/self/status'));
    expect(inside).toEqual({ SigPnd: 0n, SigBlk: 0n, SigIgn: 0n, SigCgt: 0n });
  });

  it('lets a write to a closed pipe kill the writer with SIGPIPE', async () => {
    // With SIGPIPE ignored, yes would get EPIPE and exit 1 instead of dying of the signal.
    const r = await run(['sh', '-c', '(yes; echo "yes-exit $?" >&2) | head -c 1 >/dev/null']);
    expect(r.err.trim()).toBe(`yes-exit ${128 + SIGPIPE}`);
  });
});

describe('file descriptors', () => {
  const opened: number[] = [];
  afterEach(() => {
    for (const fd of opened.splice(0)) closeSync(fd);
  });

  it('holds only 0, 1 and 2 while Node has 50 more files open', async () => {
    for (let i = 0; i < 50; i++) opened.push(openSync('/etc/hostname', 'r'));
    // ls opens /proc/self/fd as 3 to list it: 3 is its own.
    const r = await run(['ls', '/proc/self/fd']);
    expect(r.out.trim().split('\n')).toEqual(['0', '1', '2', '3']);
    for (const stdio of ['inherit', 'ignore'] as const) {
      const r2 = await run(['sh', '-c', 'exec ls /proc/self/fd >&2'], { stdio: [stdio, stdio, 'pipe'] });
      expect(r2.err.trim().split('\n'), stdio).toEqual(['0', '1', '2', '3']);
    }
  });

  it('holds only 0, 1 and 2 even when Node inherited fds without close-on-exec', async () => {
    // A shell leaves its redirections open across exec, without FD_CLOEXEC: Node then holds
    // fds it never opened itself. child_process passes them on (the control); nsbox must not.
    const script = `
      const fs = require('fs');
      const cp = require('child_process');
      const { Container } = require(process.env.NSBOX_DIST);
      for (let i = 0; i < 50; i++) fs.openSync('/etc/hostname', 'r');
      const flags = (fd) => parseInt(/flags:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/fdinfo/' + fd, 'utf8'))[1], 8);
      const leaky = [40, 41, 100, 1000].filter((fd) => fs.existsSync('/proc/self/fd/' + fd) && !(flags(fd) & 0o2000000));
      const control = cp.execFileSync('ls', ['/proc/self/fd']).toString().trim().split('\\n');
      const c = Container.start({ root: { type: 'bind', path: process.env.NSBOX_ROOTFS }, command: ['ls', '/proc/self/fd'] });
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      c.wait().then((status) => {
        console.log(JSON.stringify({ status, inside: out.trim().split('\\n'), leaky, control, nodeFds: fs.readdirSync('/proc/self/fd').length }));
      });
    `;
    const r = await runNode(script, { prelude: 'exec 40</etc/hostname 41<>/dev/null 100</etc/hostname 1000</etc/hostname' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout) as { status: unknown; inside: string[]; leaky: number[]; control: string[]; nodeFds: number };
    expect(res.leaky).toEqual([40, 41, 100, 1000]);
    expect(res.nodeFds).toBeGreaterThan(50 + 4 + 3);
    expect(res.control).toEqual(expect.arrayContaining(['40', '41', '100', '1000']));
    expect(res.status).toMatchObject({ exitCode: 0, signal: null });
    expect(res.inside).toEqual(['0', '1', '2', '3']);
  });
});

describe('process', () => {
  it('runs with exactly the environment given, nothing from the host', async () => {
    process.env.NSBOX_HOST_ONLY = 'leak';
    try {
      // env itself as the command: a shell would add PWD and SHLVL, and drop 'WITH SPACE'.
      // Called through busybox: where its applets are linked differs between builds.
      const out = (await run(['/bin/busybox', 'env'], { env: { A: '1', 'WITH SPACE': 'x y', EMPTY: '' }, hostname: 'envbox' })).out;
      expect(out.trim().split('\n').sort()).toEqual(
        ['A=1', 'EMPTY=', 'HOME=/root', 'HOSTNAME=envbox', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'WITH SPACE=x y'].sort(),
      );
    } finally {
      delete process.env.NSBOX_HOST_ONLY;
    }
    // TERM only with a terminal; a PATH given replaces the default.
    const withPath = (await run(['/bin/busybox', 'env'], { env: { PATH: '/bin' } })).out;
    expect(withPath).toMatch(/^PATH=\/bin$/m);
    expect(withPath).not.toMatch(/^TERM=/m);
  });

  it('is the leader of its own session and process group', async () => {
    // /proc/self/stat: pid (comm) state ppid pgrp session tty_nr tpgid ...
    const f = (await sh('exec cat /proc/self/stat')).split(') ')[1]!.split(' ');
    expect(f.slice(1, 4)).toEqual(['1', '2', '2']); // ppid (nsbox-init), pgrp, session
    expect(f[4]).toBe('0'); // no controlling terminal without tty
    // nsbox-init has a session of its own too: nothing of the supervisor's terminal reaches it.
    const init = (await sh('cat /proc/1/stat')).split(') ')[1]!.split(' ');
    expect(init.slice(1, 4)).toEqual(['0', '1', '1']);
  });

  it('has the terminal as controlling terminal with tty', async () => {
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['cat', '/proc/self/stat'], tty: true });
    let text = '';
    c.terminal!.on('data', (d: Buffer) => (text += d.toString()));
    await c.wait();
    const f = text.split(') ')[1]!.split(' ');
    expect(f[4]).not.toBe('0'); // tty_nr
    expect(f[5]).toBe('2'); // tpgid: the command (PID 2) is the terminal's foreground group
  });

  it("uses umask 022 whatever Node's is", async () => {
    const old = process.umask(0o077);
    try {
      expect((await sh('umask')).trim()).toBe('0022');
    } finally {
      process.umask(old);
    }
  });
});
