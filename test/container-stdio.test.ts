// stdio: piped streams carry data intact both ways; 'ignore' and 'inherit' do what they say;
// with a tty the command gets a terminal of the size given, and resize reaches it.
import { randomBytes } from 'node:crypto';
import { closeSync, createWriteStream, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import * as tty from 'node:tty';
import { afterAll, describe, expect, it } from 'vitest';

import { Container, NsboxError, ROOTFS, childPids, collectBuffer, md5, openFds, run, startError, until } from './helpers';

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

  it("ends the command's stdin when the stream ends", async () => {
    const c = Container.start({ root, command: ['sh', '-c', 'while read l; do echo "got $l"; done; echo eof'] });
    c.stdin!.write('a\nb\n');
    c.stdin!.end();
    const [out] = await Promise.all([collectBuffer(c.stdout), c.wait()]);
    expect(out.toString()).toBe('got a\ngot b\neof\n');
  });
});

// child_process.spawn's other stdio forms: an fd of this process, or a stream with one. The
// container gets that very file (a duplicate), and this process keeps its own fd.
describe('stdio as fds and streams', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nsbox-stdio-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes stdout and stderr into files given by fd, and reads stdin from one', async () => {
    writeFileSync(path.join(dir, 'in'), 'from a file\n');
    const fin = openSync(path.join(dir, 'in'), 'r');
    const fout = openSync(path.join(dir, 'out'), 'w');
    const ferr = openSync(path.join(dir, 'err'), 'w');
    const before = openFds();
    try {
      const c = Container.start({ root, command: ['sh', '-c', 'read l; echo "out: $l"; echo err >&2'], stdio: [fin, fout, ferr] });
      expect([c.stdin, c.stdout, c.stderr]).toEqual([null, null, null]);
      expect(await c.wait()).toMatchObject({ exitCode: 0 });
      // The duplicates the container got are closed here: nothing but our own three stays.
      expect(openFds()).toEqual(before);
      // Ours are still open and usable.
      writeSync(fout, 'ours\n');
    } finally {
      for (const fd of [fin, fout, ferr]) closeSync(fd);
    }
    expect(readFileSync(path.join(dir, 'out'), 'utf8')).toBe('out: from a file\nours\n');
    expect(readFileSync(path.join(dir, 'err'), 'utf8')).toBe('err\n');
  });

  it('mixes fds with pipes, and gives the fd to the fd it names', async () => {
    const fout = openSync(path.join(dir, 'mixed'), 'w');
    try {
      const c = Container.start({ root, command: ['sh', '-c', 'echo to-file; echo to-pipe >&2'], stdio: ['ignore', fout, 'pipe'] });
      expect(c.stdout).toBeNull();
      const [err, status] = await Promise.all([collectBuffer(c.stderr), c.wait()]);
      expect(status.exitCode).toBe(0);
      expect(err.toString()).toBe('to-pipe\n');
    } finally {
      closeSync(fout);
    }
    expect(readFileSync(path.join(dir, 'mixed'), 'utf8')).toBe('to-file\n');
  });

  it('takes an opened fs stream and a socket as stdio, as their fds', async () => {
    const file = createWriteStream(path.join(dir, 'stream'));
    await new Promise((resolve) => file.once('open', resolve));
    const [ours, theirs] = await socketPair();
    try {
      const c = Container.start({ root, command: ['sh', '-c', 'echo via-stream; echo via-socket >&2'], stdio: ['ignore', file, theirs] });
      const got = new Promise<string>((resolve) => {
        let text = '';
        ours.on('data', (d: Buffer) => {
          text += d.toString();
          if (text.includes('\n')) resolve(text);
        });
      });
      expect((await c.wait()).exitCode).toBe(0);
      expect(await got).toBe('via-socket\n');
    } finally {
      ours.destroy();
      theirs.destroy();
      await new Promise((resolve) => file.end(resolve));
    }
    expect(readFileSync(path.join(dir, 'stream'), 'utf8')).toBe('via-stream\n');
  });

  it('gives an exec an fd as its stdout too', async () => {
    const fout = openSync(path.join(dir, 'exec-out'), 'w');
    const c = Container.start({ root, command: ['sleep', '10'], stdio: 'ignore' });
    try {
      const e = c.exec({ command: ['echo', 'from exec'], stdio: ['ignore', fout, 'ignore'] });
      expect(e.stdout).toBeNull();
      expect((await e.wait()).exitCode).toBe(0);
    } finally {
      closeSync(fout);
      c.kill('SIGKILL');
      await c.wait();
    }
    expect(readFileSync(path.join(dir, 'exec-out'), 'utf8')).toBe('from exec\n');
  });

  it('refuses a closed fd, a negative or fractional one and a stream without an fd, leaving nothing behind', () => {
    const before = { fds: openFds(), children: childPids() };
    // An fd number nothing has open (a closed one could be taken again meanwhile).
    let closed = 900;
    while (openFds().includes(String(closed))) closed++;
    // A file stream whose open never succeeds: no fd, ever.
    const unopened = createWriteStream(path.join(dir, 'no-such-dir', 'x')).on('error', () => {});
    const cases: Array<[unknown, RegExp]> = [
      [['pipe', closed, 'pipe'], new RegExp(`^stdio\\[1\\]: fd ${closed} is not open in this process \\(EBADF\\)$`)],
      [['pipe', -1, 'pipe'], /^stdio\[1\]: expected a file descriptor/],
      [['pipe', 'pipe', 2.5], /^stdio\[2\]: expected a file descriptor/],
      [[new PassThrough(), 'pipe', 'pipe'], /^stdio\[0\]: a stream without a file descriptor of its own/],
      [[unopened, 'pipe', 'pipe'], /^stdio\[0\]: a stream without a file descriptor/],
    ];
    for (const [stdio, message] of cases) {
      const e = startError({ root, command: ['true'], stdio: stdio as never });
      expect(e).toBeInstanceOf(NsboxError);
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toMatch(message);
    }
    expect(childPids()).toEqual(before.children);
    expect(openFds().filter((fd) => !before.fds.includes(fd))).toEqual([]);
  });
});

/** Two connected Unix sockets: ours to read, theirs to hand to a container. */
async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const sock = path.join(mkdtempSync(path.join(os.tmpdir(), 'nsbox-sock-')), 's');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(sock);
  await new Promise((resolve) => client.once('connect', resolve));
  const ours = await accepted;
  server.close();
  rmSync(path.dirname(sock), { recursive: true, force: true });
  return [ours, client];
}

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
