// `nsbox run` without -t at a terminal (issue 9, item 8): the container never gets the CLI's
// own terminal. It used to read what the user typed and could turn the host terminal's echo
// off; now its stdio are pipes the CLI relays, and only -t gives it a terminal (its own).
// Driven through tmux, as a person at a terminal would.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const hasTmux = spawnSync('tmux', ['-V']).status === 0;
const sock = `nsbox-term-${process.pid}`;
let root: string;

function tmuxEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm-256color' };
  delete env.TMUX;
  return env;
}
const tmux = (...args: string[]) => execFileSync('tmux', ['-L', sock, ...args], { env: tmuxEnv() }).toString();
const screen = () => tmux('capture-pane', '-p', '-t', 'term');

async function until(what: string, fn: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; screen:\n${screen()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-term-'));
  if (hasTmux) tmux('new-session', '-d', '-s', 'term', '-x', '120', '-y', '30', 'sh');
});

afterAll(() => {
  if (hasTmux) spawnSync('tmux', ['-L', sock, 'kill-server'], { env: tmuxEnv() });
  fs.rmSync(root, { recursive: true, force: true });
});

const nsbox = () => `${process.execPath} ${MAIN} --root ${root}`;

describe.skipIf(!hasTmux)('run without -t at a terminal', () => {
  it('gives the container pipes, not the terminal: it cannot change its modes', async () => {
    tmux(
      'send-keys',
      '-t',
      'term',
      `clear; ${nsbox()} run --rm busybox sh -c 'tty <&2; stty -echo <&2; echo "stty=$?"'; echo "left=$?"; stty -a | grep -o ' -*echo ' | head -1`,
      'Enter',
    );
    // stty answers after `left=` is on the screen: wait for its line too (echo or -echo).
    await until('the run to end and stty to answer', () => /left=\d+/.test(screen()) && /^ -?echo\s*$/m.test(screen()));
    const s = screen();
    expect(s).toMatch(/^not a tty$/m);
    expect(s).toMatch(/^stty=1$/m);
    expect(s).toMatch(/^left=0$/m);
    // The host terminal still echoes.
    expect(s).toMatch(/^ echo\s*$/m); // capture-pane drops the trailing space
  });

  it('with -i, what the user types reaches the container through a pipe', async () => {
    tmux(
      'send-keys',
      '-t',
      'term',
      `clear; ${nsbox()} run -i --rm busybox sh -c 'tty; stty -echo; stty -echo <&1; read line; echo "got=$line"'; echo "left=$?"; stty -a | grep -o ' -*echo ' | head -1`,
      'Enter',
    );
    await until('the container to wait for input', () => /^not a tty$/m.test(screen()));
    tmux('send-keys', '-t', 'term', 'typed by hand', 'Enter');
    // stty answers after `left=` is on the screen: wait for its line too (echo or -echo).
    await until('the run to end and stty to answer', () => /left=\d+/.test(screen()) && /^ -?echo\s*$/m.test(screen()));
    const s = screen();
    expect(s).toMatch(/^got=typed by hand$/m);
    expect(s).toMatch(/^left=0$/m);
    expect(s).toMatch(/^ echo\s*$/m); // capture-pane drops the trailing space
  });
});
