// Exit: the command's status comes back as it is; a signal from outside ends it; a command
// that cannot be executed fails the start itself, with an error naming the exec step and
// the path, and leaves no child behind.
import { describe, expect, it } from 'vitest';

import { Container, NsboxError, ROOTFS, childPids, procState, run, startError, zombies } from './helpers';

const root = { type: 'bind' as const, path: ROOTFS };

describe('exit', () => {
  it("gives the command's exit code", async () => {
    expect(await run(['sh', '-c', 'exit 42'])).toMatchObject({ exitCode: 42, signal: null });
    expect(await run(['true'])).toMatchObject({ exitCode: 0, signal: null });
    expect(await run(['false'])).toMatchObject({ exitCode: 1, signal: null });
    expect(await run(['sh', '-c', 'exit 255'])).toMatchObject({ exitCode: 255, signal: null });
  });

  it('emits exit and close with the status', async () => {
    const c = Container.start({ root, command: ['sh', '-c', 'exit 3'], stdio: 'ignore' });
    const exit = new Promise((r) => c.once('exit', (code, signal) => r([code, signal])));
    const close = new Promise((r) => c.once('close', (code, signal) => r([code, signal])));
    expect(c.running).toBe(true);
    expect(await c.wait()).toMatchObject({ exitCode: 3, signal: null });
    expect(await exit).toEqual([3, null]);
    expect(await close).toEqual([3, null]);
    expect(c.running).toBe(false);
    expect(c.exitStatus).toMatchObject({ exitCode: 3, signal: null });
  });

  it('reports SIGKILL from outside as the signal', async () => {
    const c = Container.start({ root, command: ['sleep', '1000'], stdio: 'ignore' });
    // Really running before the kill: the status must come from the kill, not a failed start.
    expect(procState(c.pid)?.state).toMatch(/[RS]/);
    const started = Date.now();
    expect(c.kill('SIGKILL')).toBe(true);
    expect(await c.wait()).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(procState(c.pid)).toBeNull(); // reaped
    // Once reaped, there is nothing to signal.
    expect(c.kill('SIGKILL')).toBe(false);
  });

  it('delivers a signal the command handles', async () => {
    // PID 1 gets only the signals it has a handler for: the trap makes SIGTERM count.
    const c = Container.start({ root, command: ['sh', '-c', 'trap "exit 7" TERM; echo ready; while :; do sleep 0.05; done'] });
    await new Promise<void>((resolve) => c.stdout!.once('data', () => resolve()));
    c.kill('SIGTERM');
    expect(await c.wait()).toMatchObject({ exitCode: 7, signal: null });
  });

  describe('a command that cannot run', () => {
    it('rejects a missing command with ENOENT, naming the exec step and the program', () => {
      const before = childPids();
      const e = startError({ root, command: ['no-such-command', 'arg'] });
      expect(e).toBeInstanceOf(NsboxError);
      expect(e).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'execve', step: 'exec', path: 'no-such-command' });
      expect(e.message).toMatch(/^exec no-such-command: not found in PATH \(ENOENT\)$/);
      expect(childPids()).toEqual(before);
      expect(zombies()).toEqual([]);
    });

    it('rejects a missing absolute path with ENOENT and that path', () => {
      const e = startError({ root, command: ['/bin/no-such-program'] });
      expect(e).toMatchObject({ code: 'ENOENT', step: 'exec', path: '/bin/no-such-program' });
      expect(e.message).toContain('/bin/no-such-program');
    });

    it('rejects a directory with EACCES', () => {
      const e = startError({ root, command: ['/etc'] });
      expect(e).toMatchObject({ code: 'EACCES', errno: 13, syscall: 'execve', step: 'exec', path: '/etc' });
      expect(e.message).toMatch(/^exec \/etc: permission denied/);
    });

    it('rejects a file without the execute bit with EACCES', () => {
      const before = childPids();
      // The fixture's marker is a plain 0644 file, there inside the container.
      const e = startError({ root, command: ['/etc/nsbox-image'] });
      expect(e).toMatchObject({ code: 'EACCES', step: 'exec', path: '/etc/nsbox-image' });
      expect(childPids()).toEqual(before);
      expect(zombies()).toEqual([]);
    });

    it("looks the command up in the container's PATH, not the host's", () => {
      // node exists on the host's PATH, not in the busybox rootfs.
      const e = startError({ root, command: ['node'] });
      expect(e).toMatchObject({ code: 'ENOENT', step: 'exec', path: 'node' });
      // A PATH given in env is the one searched: busybox's applets are in /bin.
      const e2 = startError({ root, command: ['ls'], env: { PATH: '/nowhere:/usr/nowhere' } });
      expect(e2).toMatchObject({ code: 'ENOENT', path: 'ls' });
    });
  });
});
