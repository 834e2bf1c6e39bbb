// `nsbox exec` (issue 12, item 3) from the command line: exit statuses, stdin, flags, signals
// and `-ti` behave as for `run`, into a container another process (`run -d`) supervises;
// driven through tmux for the terminal, as a person would.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const hasTmux = spawnSync('tmux', ['-V']).status === 0;
const sock = `nsbox-exec-${process.pid}`;
let root: string;

function nsbox(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [MAIN, '--root', root, ...args], { encoding: 'utf8', timeout: 30_000, ...(input !== undefined ? { input } : {}) });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function tmuxEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm-256color' };
  delete env.TMUX;
  return env;
}
const tmux = (...args: string[]) => execFileSync('tmux', ['-L', sock, ...args], { env: tmuxEnv() }).toString();
const screen = (target: string) => tmux('capture-pane', '-p', '-t', target);

async function until(what: string, fn: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-cli-exec-'));
  expect(
    nsbox([
      'run',
      '-d',
      '--name',
      'web',
      '--hostname',
      'webhost',
      '-e',
      'IN_CONTAINER=1',
      '-w',
      '/tmp',
      'busybox',
      'sh',
      '-c',
      'echo served > /tmp/page; exec sleep 3600',
    ]).code,
  ).toBe(0);
});

afterAll(() => {
  if (hasTmux) spawnSync('tmux', ['-L', sock, 'kill-server'], { env: tmuxEnv() });
  nsbox(['rm', '-f', 'web', 'done']);
  fs.rmSync(root, { recursive: true, force: true });
});

describe('nsbox exec', () => {
  it('runs in the detached container: its files, hostname, environment and cwd; exit status passed on', async () => {
    await until('the container script', () => nsbox(['exec', 'web', 'cat', '/tmp/page']).out === 'served\n');
    const r = nsbox(['exec', 'web', 'sh', '-c', 'hostname; echo "$IN_CONTAINER $(pwd)"; echo err >&2; exit 7']);
    expect(r).toMatchObject({ code: 7, out: 'webhost\n1 /tmp\n', err: 'err\n' });
  });

  it('-e, -w, -u; -i passes stdin, without -i there is none', () => {
    const r = nsbox([
      'exec',
      '-e',
      'A=b',
      '-w',
      '/etc',
      '-u',
      '1000:1000',
      'web',
      'sh',
      '-c',
      'echo "$A $(pwd) $(id -u):$(id -g)"; grep CapEff /proc/self/status',
    ]);
    expect(r.out).toMatch(/^b \/etc 1000:1000\nCapEff:\s+0+\n$/);
    expect(nsbox(['exec', '-i', 'web', 'sh', '-c', 'cat | tr a-z A-Z'], 'piped in\n')).toMatchObject({ code: 0, out: 'PIPED IN\n' });
    expect(nsbox(['exec', 'web', 'cat'], 'never read\n')).toMatchObject({ code: 0, out: '' });
  });

  it("127 for a command not found, 126 for one not executable, 128+N for a signal, 125 for exec's own errors", () => {
    expect(nsbox(['exec', 'web', 'no-such-command'])).toMatchObject({ code: 127, err: expect.stringContaining('not found in PATH') });
    expect(nsbox(['exec', 'web', '/etc/passwd'])).toMatchObject({ code: 126 });
    expect(nsbox(['exec', 'web', 'sh', '-c', 'kill -KILL $$']).code).toBe(137);
    expect(nsbox(['exec', 'no-such-container', 'true'])).toMatchObject({ code: 125, err: expect.stringContaining('no such container') });
    expect(nsbox(['exec', 'web', 'true', '-w', '/x']).code).toBe(0); // flags after CONTAINER are the command's
    expect(nsbox(['exec', '-w', 'relative', 'web', 'true']).code).toBe(125);
  });

  it('into an exited container: 125 and a clear message', () => {
    expect(nsbox(['run', '--name', 'done', 'busybox', 'true']).code).toBe(0);
    expect(nsbox(['exec', 'done', 'true'])).toMatchObject({
      code: 125,
      err: 'nsbox: exec: container done is not running\n' + 'hint: nsbox ps -a shows how it ended; nsbox start done runs it again\n',
    });
  });

  it('passes SIGTERM on to the command and exits with its status', async () => {
    const cli = spawn(
      process.execPath,
      [MAIN, '--root', root, 'exec', 'web', 'sh', '-c', 'trap "echo got; exit 9" TERM; echo ready; while :; do sleep 0.05; done'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    cli.stdout.on('data', (d: Buffer) => (out += d));
    await until('ready', () => out.includes('ready'));
    cli.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => cli.on('close', (c) => r(c)));
    expect(code).toBe(9);
    expect(out).toBe('ready\ngot\n');
  });
});

describe('an exec whose caller dies', () => {
  it('a SIGKILLed `nsbox exec` takes its command with it; the container runs on', async () => {
    const cli = spawn(process.execPath, [MAIN, '--root', root, 'exec', 'web', 'sh', '-c', 'echo started; exec sleep 1234'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    cli.stdout.on('data', (d: Buffer) => (out += d));
    await until('the exec', () => out.includes('started'));
    const sleeping = () => nsbox(['exec', 'web', 'sh', '-c', 'ps -o args | grep -c "^sleep 1234"']).out.trim();
    await until('sleep 1234', () => sleeping() === '1');
    cli.kill('SIGKILL');
    await until("the exec's command to die with its caller", () => sleeping() === '0', 10_000);
    expect(nsbox(['exec', 'web', 'cat', '/tmp/page']).out).toBe('served\n');
  });
});

describe.runIf(hasTmux)('nsbox exec -ti at a terminal (tmux)', () => {
  it("a shell in the container: its own pty of tmux's size, Ctrl-C to the container, exit status to the caller, terminal sane after", async () => {
    tmux('new-session', '-d', '-s', 'ti', '-x', '120', '-y', '30', 'sh');
    tmux('send-keys', '-t', 'ti', `PS1='host$ '; node ${MAIN} --root ${root} exec -ti web sh`, 'Enter');
    await until('the container prompt', () => /^\/tmp #/m.test(screen('ti')));
    tmux('send-keys', '-t', 'ti', 'tty; stty size; hostname', 'Enter');
    await until('the answers', () => /^webhost$/m.test(screen('ti')));
    expect(screen('ti')).toMatch(/^\/dev\/pts\/\d+$/m);
    expect(screen('ti')).toMatch(/^30 120$/m);
    tmux('send-keys', '-t', 'ti', 'sleep 100', 'Enter');
    await new Promise((r) => setTimeout(r, 300));
    tmux('send-keys', '-t', 'ti', 'C-c');
    tmux('send-keys', '-t', 'ti', 'echo "after=$?"', 'Enter');
    await until('sleep interrupted inside', () => /^after=130$/m.test(screen('ti')));
    tmux('resize-window', '-t', 'ti', '-x', '100', '-y', '40');
    await new Promise((r) => setTimeout(r, 300));
    tmux('send-keys', '-t', 'ti', 'stty size', 'Enter');
    await until('the new size', () => /^40 100$/m.test(screen('ti')));
    tmux('send-keys', '-t', 'ti', 'exit 3', 'Enter');
    await until('the host prompt', () => /^host\$\s*$/m.test(screen('ti')));
    tmux('send-keys', '-t', 'ti', 'echo "status=$?"; stty -a | grep -o -- "-\\?icanon\\|-\\?echo " | tr "\\n" " "; echo', 'Enter');
    await until('the status and the terminal modes', () => /status=3/.test(screen('ti')) && /-?icanon -?echo/.test(screen('ti')));
    expect(screen('ti')).toMatch(/^icanon echo/m); // canonical mode and echo back on: raw mode undone
    tmux('kill-session', '-t', 'ti');
    // The container itself never noticed.
    expect(nsbox(['exec', 'web', 'cat', '/tmp/page']).out).toBe('served\n');
  });
});
