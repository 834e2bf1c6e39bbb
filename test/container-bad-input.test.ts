// Bad input: each is refused with an NsboxError that says what is wrong, and leaves nothing
// behind: no child (running or zombie), no fd, no mount. Input checks come before clone;
// what only the kernel can tell (a missing rootfs) fails in the child and is reaped at once.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';

import { Container, NsboxError, ROOTFS, type Snapshot, childPids, openFds, rootfsMounts, snapshot, startError, zombies } from './helpers';
import type { ProcessOptions } from '../src/container';

const root = { type: 'bind' as const, path: ROOTFS };
const scratch = mkdtempSync(path.join(os.tmpdir(), 'nsbox-bad-input-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let before: Snapshot;
beforeEach(async () => {
  // One good start first, so that state made once per process is not counted as a leak.
  await Container.start({ root, command: ['true'] }).wait();
  before = snapshot();
});

/** Container.start(options) must throw this code and message, and leave nothing behind. */
function refused(options: ProcessOptions, code: string, message: RegExp): NsboxError {
  const e = startError(options);
  expect(e).toBeInstanceOf(NsboxError);
  expect(e.name).toBe('NsboxError');
  expect(e.code).toBe(code);
  expect(e.message).toMatch(message);
  expect(childPids()).toEqual(before.children);
  expect(zombies()).toEqual([]);
  expect(openFds()).toEqual(before.fds);
  expect(rootfsMounts()).toEqual(before.mounts);
  return e;
}

describe('bad input', () => {
  it('a missing rootfs: ENOENT naming the root step and the path', () => {
    const missing = path.join(scratch, 'no-such-rootfs');
    const e = refused({ root: { type: 'bind', path: missing }, command: ['true'] }, 'ENOENT', new RegExp(`^root ${missing}: open_tree ${missing}: ENOENT$`));
    expect(e).toMatchObject({ errno: 2, syscall: 'open_tree', path: missing, step: `root ${missing}` });
  });

  it('a file as rootfs: ENOTDIR', () => {
    const file = path.join(scratch, 'a-file');
    writeFileSync(file, 'not a directory\n');
    const e = refused({ root: { type: 'bind', path: file }, command: ['true'] }, 'ENOTDIR', new RegExp(`^root ${file}: .*ENOTDIR$`));
    expect(e).toMatchObject({ path: file, step: `root ${file}` });
  });

  it('an empty command', () => {
    refused({ root, command: [] }, 'INVALID_ARGUMENT', /^command: must be a non-empty array of strings$/);
    refused({ root, command: [''] }, 'INVALID_ARGUMENT', /^command: the program name is empty$/);
    refused({ root, command: undefined as unknown as string[] }, 'INVALID_ARGUMENT', /^command: must be a non-empty array/);
    refused({ root, command: ['echo', 42 as unknown as string] }, 'INVALID_ARGUMENT', /^command: every argument must be a string$/);
  });

  it('a 300-character hostname', () => {
    refused({ root, command: ['true'], hostname: 'h'.repeat(300) }, 'INVALID_ARGUMENT', /^hostname: 300 bytes, at most 64$/);
    refused({ root, command: ['true'], hostname: 'bad host' }, 'INVALID_ARGUMENT', /^hostname: "bad host": letters, digits/);
    refused({ root, command: ['true'], hostname: '' }, 'INVALID_ARGUMENT', /^hostname: must not be empty$/);
  });

  it('an env key with "="', () => {
    refused({ root, command: ['true'], env: { 'A=B': 'x' } }, 'INVALID_ARGUMENT', /^env: "A=B": a name must be non-empty and without '='$/);
    refused({ root, command: ['true'], env: { '': 'x' } }, 'INVALID_ARGUMENT', /^env: "": a name must be non-empty/);
  });

  it('a NUL byte in an argument, an env value or a path', () => {
    refused({ root, command: ['echo', 'a\0b'] }, 'INVALID_ARGUMENT', /^command: argument "a\\\\0b" contains a NUL byte$/);
    refused({ root, command: ['ec\0ho'] }, 'INVALID_ARGUMENT', /contains a NUL byte/);
    refused({ root, command: ['true'], env: { A: 'x\0y' } }, 'INVALID_ARGUMENT', /^env: A: contains a NUL byte$/);
    refused({ root, command: ['true'], cwd: '/tmp\0x' }, 'INVALID_ARGUMENT', /^working directory: path contains a NUL byte$/);
  });

  it('a working directory that is relative, or missing in the rootfs', () => {
    refused({ root, command: ['true'], cwd: 'etc' }, 'INVALID_ARGUMENT', /^working directory: etc: must be an absolute path/);
    const e = refused({ root, command: ['true'], cwd: '/no/such/dir' }, 'ENOENT', /^working directory \/no\/such\/dir: chdir \/no\/such\/dir: ENOENT$/);
    expect(e).toMatchObject({ syscall: 'chdir', step: 'working directory /no/such/dir', path: '/no/such/dir' });
  });

  it('an argument or environment too big for execve: E2BIG from the exec step', () => {
    // One string over the kernel's 128 KiB limit, then 2.4 MB of environment in all.
    refused({ root, command: ['echo', 'x'.repeat(200_000)] }, 'E2BIG', /^exec echo: arguments and environment too big \(E2BIG\)$/);
    const env = Object.fromEntries(Array.from({ length: 40_000 }, (_, i) => [`V${i}`, 'x'.repeat(60)]));
    const e = refused({ root, command: ['true'], env }, 'E2BIG', /^exec true: arguments and environment too big/);
    // They reach nsbox-init first, which passes them on: its exec is where they do not fit.
    expect(e).toMatchObject({ step: 'exec', syscall: 'execveat', path: 'true' });
  });

  it('an unknown network, stdio mode or terminal size', () => {
    refused({ root, command: ['true'], network: 'bridge' as 'none' }, 'INVALID_ARGUMENT', /^network: bridge: none or host$/);
    refused(
      { root, command: ['true'], stdio: 'tty' as 'pipe' },
      'INVALID_ARGUMENT',
      /^stdio: expected one of "pipe", "inherit", "ignore", got a string \("tty"\)$/,
    );
    refused({ root, command: ['true'], stdio: ['pipe', 'pipe'] as unknown as 'pipe' }, 'INVALID_ARGUMENT', /^stdio: /);
    refused({ root, command: ['true'], tty: { cols: 0, rows: 10 } }, 'INVALID_ARGUMENT', /^tty\.cols: 0: 1 to 65535$/);
    refused({ root, command: ['true'], tty: { cols: 80, rows: 1.5 } }, 'INVALID_ARGUMENT', /^tty\.rows: 1\.5: 1 to 65535$/);
  });

  it('an unknown option (a typo), anywhere in the options: refused, not ignored', () => {
    refused(
      { root, command: ['true'], timeOut: 50 } as ProcessOptions,
      'INVALID_ARGUMENT',
      /^timeOut: unknown option \(did you mean timeout\?\); known: root, command, /,
    );
    refused({ root, command: ['true'], forkStyle: true } as ProcessOptions, 'INVALID_ARGUMENT', /^forkStyle: unknown option/);
    refused(
      { root: { ...root, readOnly: true }, command: ['true'] } as ProcessOptions,
      'INVALID_ARGUMENT',
      /^root\.readOnly: unknown option \(did you mean readonly\?\)/,
    );
    refused(
      { root: { type: 'tmpfs' }, command: ['true'] } as unknown as ProcessOptions,
      'INVALID_ARGUMENT',
      /^root\.type: expected one of "bind", "overlay", "aufs"/,
    );
    refused({ root, command: ['true'], tty: { cols: 80, row: 10 } } as ProcessOptions, 'INVALID_ARGUMENT', /^tty\.row: unknown option \(did you mean rows\?\)/);
    refused(
      { root, command: ['true'], mounts: [{ source: scratch, target: '/x', readonly: false, ro: true }] } as unknown as ProcessOptions,
      'INVALID_ARGUMENT',
      /^mounts\[0\]\.ro: unknown option/,
    );
  });

  it('stop and remove refuse an unknown option, and do nothing', async () => {
    const c = Container.start({ root, command: ['sleep', '10'], stdio: 'ignore' });
    try {
      await expect(c.stop({ timeOut: 1 } as never)).rejects.toThrow(/^stop option timeOut: unknown option \(did you mean timeout\?\)/);
      await expect(c.remove({ forse: true } as never)).rejects.toThrow(/^remove option forse: unknown option \(did you mean force\?\)/);
      expect(c.running).toBe(true);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
  });

  it('a refused start with a tty leaves no pty open', () => {
    refused({ root, command: ['no-such-command'], tty: true }, 'ENOENT', /not found in PATH/);
    refused({ root: { type: 'bind', path: path.join(scratch, 'missing') }, command: ['true'], tty: true, stdio: 'pipe' }, 'ENOENT', /open_tree/);
  });

  it('an unknown signal', async () => {
    const c = Container.start({ root, command: ['sleep', '10'], stdio: 'ignore' });
    try {
      expect(() => c.kill('SIGNOPE' as NodeJS.Signals)).toThrow(NsboxError);
      expect(() => c.kill(99)).toThrow(/99: not a signal number/);
      expect(c.running).toBe(true);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
  });
});
