// stdio: piped streams carry data intact both ways; 'ignore' and 'inherit' do what they say;
// with a tty the command gets a terminal of the size given, and resize reaches it.
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import * as tty from 'node:tty';
import { describe, expect, it } from 'vitest';

import { Container, ROOTFS, collectBuffer, md5, openFds, run, until } from './helpers';

const root = { type: 'bind' as const, path: ROOTFS };

/** The text a tty container writes, with a way to wait for a pattern in it. */
function terminalText(c: Container): { text: () => string; waitFor: (re: RegExp) => Promise<RegExpMatchArray> } {
  let text = '';
  c.terminal!.on('data', (d: Buffer) => (text += d.toString()));
  return {
    text: () => text,
    waitFor: async (re) => {
      await until(`terminal output ${re} (so far ${JSON.stringify(text)})`, () => re.test(text), 10_000);
      return re.exec(text)!;
    },
  };
}

describe('stdio', () => {
  it('carries 10 MB of stdout intact', async () => {
    const size = 10 * 1024 * 1024;
    // Random data, checksummed inside: a lost, doubled or reordered chunk changes the sum.
    const r = await run(['sh', '-c', `head -c ${size} /dev/urandom > /dev/shm/blob && md5sum /dev/shm/blob >&2 && exec cat /dev/shm/blob`]);
    expect(r.exitCode).toBe(0);
    const [sum] = r.err.trim().split(/\s+/);
    expect(sum).toMatch(/^[0-9a-f]{32}$/);
    expect(r.stdout.length).toBe(size);
    expect(md5(r.stdout)).toBe(sum);
  });

  it('carries stdin to the command', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const c = Container.start({ root, command: ['md5sum'] });
    c.stdin!.end(data);
    const [out, status] = await Promise.all([collectBuffer(c.stdout), c.wait()]);
    expect(status).toMatchObject({ exitCode: 0, signal: null });
    expect(out.toString().split(/\s+/)[0]).toBe(md5(data));
  });

  it('echoes stdin back through cat byte for byte', async () => {
    const data = randomBytes(1024 * 1024);
    const c = Container.start({ root, command: ['cat'] });
    c.stdin!.end(data);
    const [out, err] = await Promise.all([collectBuffer(c.stdout), collectBuffer(c.stderr), c.wait()]);
    expect(err.length).toBe(0);
    expect(out.equals(data)).toBe(true);
  });

  it('keeps stdout and stderr apart', async () => {
    const r = await run(['sh', '-c', 'echo to-out; echo to-err >&2']);
    expect([r.out, r.err]).toEqual(['to-out\n', 'to-err\n']);
  });

  it('gives no streams for ignore, and /dev/null to the command', async () => {
    // $(...) runs in a subshell: the shell's own fds (/proc/$$) are read unredirected.
    const script = 'a=$(readlink /proc/$$/fd/0); b=$(readlink /proc/$$/fd/1); echo "$a" >&2; echo "$b" >&2';
    const c = Container.start({ root, command: ['sh', '-c', script], stdio: ['ignore', 'ignore', 'pipe'] });
    expect(c.stdin).toBeNull();
    expect(c.stdout).toBeNull();
    const [err] = await Promise.all([collectBuffer(c.stderr), c.wait()]);
    expect(err.toString().trim().split('\n')).toEqual(['/dev/null', '/dev/null']);
  });

  it('ends the command\'s stdin when the stream ends', async () => {
    const c = Container.start({ root, command: ['sh', '-c', 'while read l; do echo "got $l"; done; echo eof'] });
    c.stdin!.write('a\nb\n');
    c.stdin!.end();
    const [out] = await Promise.all([collectBuffer(c.stdout), c.wait()]);
    expect(out.toString()).toBe('got a\ngot b\neof\n');
  });
});

describe('tty', () => {
  it('gives the command a terminal of the size asked for', async () => {
    const c = Container.start({ root, command: ['sh', '-c', 'stty size; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo "tty $TERM"'], tty: { cols: 123, rows: 45 } });
    expect([c.stdin, c.stdout, c.stderr]).toEqual([null, null, null]);
    const t = terminalText(c);
    expect(await c.wait()).toMatchObject({ exitCode: 0, signal: null });
    expect(t.text().split('\r\n').filter(Boolean)).toEqual(['45 123', 'tty xterm']);
  });

  it('defaults to 80x24', async () => {
    const c = Container.start({ root, command: ['stty', 'size'], tty: true });
    const t = terminalText(c);
    await c.wait();
    expect(t.text().trim()).toBe('24 80');
  });

  it('resizes the terminal: stty sees the new size', async () => {
    const c = Container.start({ root, command: ['sh', '-c', 'stty size; read a; stty size; read b; stty size'], tty: { cols: 100, rows: 30 } });
    const t = terminalText(c);
    await t.waitFor(/30 100\r\n/);
    c.resize(120, 40);
    c.terminal!.write('\n');
    await t.waitFor(/40 120\r\n/);
    c.resize(60, 20);
    c.terminal!.write('\n');
    await t.waitFor(/20 60\r\n/);
    expect(await c.wait()).toMatchObject({ exitCode: 0, signal: null });
  });

  it('sends SIGWINCH to the command on resize', async () => {
    const c = Container.start({
      root,
      command: ['sh', '-c', 'trap \'echo "winch $(stty size)"\' WINCH; echo ready; while [ ! -e /dev/shm/stop ]; do sleep 0.05; done'],
      tty: { cols: 80, rows: 24 },
    });
    const t = terminalText(c);
    await t.waitFor(/ready/);
    c.resize(132, 50);
    await t.waitFor(/winch 50 132/);
    c.kill('SIGKILL');
    await c.wait();
  });

  it('carries input typed on the terminal to the command', async () => {
    const c = Container.start({ root, command: ['sh', '-c', 'read line; echo "you typed <$line>"'], tty: true });
    const t = terminalText(c);
    c.terminal!.write('hello tty\r');
    await t.waitFor(/you typed <hello tty>/);
    expect(await c.wait()).toMatchObject({ exitCode: 0, signal: null });
  });

  // The pair comes from the container's own devpts instance, so ttyname works inside.
  it('names the terminal inside: tty prints /dev/pts/0', async () => {
    const c = Container.start({ root, command: ['tty'], tty: true });
    const t = terminalText(c);
    await c.wait();
    expect(t.text().trim()).toBe('/dev/pts/0');
  });

  it('ignores a resize once the terminal is closed, and never touches a reused fd number', async () => {
    const c = Container.start({ root, command: ['true'], tty: true });
    c.terminal!.resume();
    const open = openFds();
    await c.wait(); // the terminal is closed by now: its fd number is free
    const freed = open.filter((fd) => !openFds().includes(fd)).map(Number);
    expect(freed.length).toBeGreaterThan(0);
    // Take every freed number (and the lowest free ones before them) with ptys of our own.
    const ours: number[] = [];
    while (!freed.every((fd) => ours.includes(fd)) && ours.length < 64) ours.push(openSync('/dev/ptmx', 'r+'));
    try {
      expect(() => c.resize(33, 11)).not.toThrow();
      for (const fd of ours) {
        expect(new tty.WriteStream(fd).getWindowSize(), `fd ${fd}`).toEqual([0, 0]);
      }
    } finally {
      for (const fd of ours) closeSync(fd);
    }
  });

  it('refuses to resize a container without a terminal', async () => {
    const c = Container.start({ root, command: ['true'] });
    expect(() => c.resize(10, 10)).toThrow(/no terminal/);
    await c.wait();
  });
});
