// Every example in README.md runs here: the console sessions line by line with their output,
// the library snippets with what the text says they print, and the quick start's command.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { unionMounts } from './helpers';

const REPO = path.join(__dirname, '..');
const README = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');

interface Block {
  lang: string;
  body: string;
  /** The text right after the block. */
  after: string;
}

function blocks(): Block[] {
  const out: Block[] = [];
  const re = /^```(\w*)\n([\s\S]*?)^```\n/gm;
  let m: RegExpExecArray | null;
  while ((m = re.exec(README))) out.push({ lang: m[1]!, body: m[2]!, after: README.slice(re.lastIndex, re.lastIndex + 300) });
  return out;
}

let tmp: string;
let env: NodeJS.ProcessEnv;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-readme-'));
  // `nsbox` on PATH and `require('nsbox')` resolving to this checkout, as after npm install
  fs.mkdirSync(path.join(tmp, 'bin'));
  fs.writeFileSync(path.join(tmp, 'bin', 'nsbox'), `#!/bin/sh\nexec "${process.execPath}" "${REPO}/dist/cli/start.js" "$@"\n`, { mode: 0o755 });
  fs.mkdirSync(path.join(tmp, 'node_modules'));
  fs.symlinkSync(REPO, path.join(tmp, 'node_modules', 'nsbox'));
  env = { ...process.env, PATH: `${tmp}/bin:${process.env.PATH}`, NSBOX_ROOT: path.join(tmp, 'state') };
  for (const d of ['/tmp/nsbox-readme', '/tmp/nsbox-readme-lib']) fs.rmSync(d, { recursive: true, force: true });
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  for (const d of ['/tmp/nsbox-readme', '/tmp/nsbox-readme-lib']) fs.rmSync(d, { recursive: true, force: true });
  expect(unionMounts().filter((l) => l.includes(tmp))).toEqual([]);
});

describe('README', () => {
  it('has examples to run', () => {
    expect(blocks().filter((b) => b.lang === 'console').length).toBeGreaterThan(0);
    expect(blocks().filter((b) => b.lang === 'js').length).toBeGreaterThan(0);
  });

  it('console sessions print what they show', () => {
    for (const block of blocks().filter((b) => b.lang === 'console')) {
      const lines = block.body.split('\n').filter((l) => l !== '');
      for (let i = 0; i < lines.length;) {
        const cmd = lines[i]!;
        expect(cmd.startsWith('$ ')).toBe(true);
        const expected: string[] = [];
        for (i++; i < lines.length && !lines[i]!.startsWith('$ '); i++) expected.push(lines[i]!);
        const r = spawnSync('sh', ['-c', cmd.slice(2)], { env, cwd: tmp, encoding: 'utf8', timeout: 30_000 });
        expect({ cmd, code: r.status, out: r.stdout, err: r.stderr }).toEqual({ cmd, code: 0, out: expected.map((l) => `${l}\n`).join(''), err: '' });
      }
    }
  });

  it('library examples print what the text says', () => {
    const examples = blocks().filter((b) => b.lang === 'js');
    for (const [n, block] of examples.entries()) {
      const file = path.join(tmp, `example-${n}.js`);
      fs.writeFileSync(file, block.body);
      const said = /^\s*prints `([^`]*)`/.exec(block.after);
      expect(said, `the text after example ${n} says what it prints`).not.toBeNull();
      const r = spawnSync(process.execPath, [file], { env, cwd: tmp, encoding: 'utf8', timeout: 30_000 });
      expect({ err: r.stderr, code: r.status }).toEqual({ err: '', code: 0 });
      expect(r.stdout).toBe(`${said![1]}\n`);
    }
  });

  it('quick start is two lines: install and run, then the tests', () => {
    const quick = blocks().find((b) => b.lang === 'sh')!;
    const [install, test] = quick.body.trim().split('\n');
    expect(install).toMatch(/^apt-get install -y busybox-static e2fsprogs && npm ci && (node dist\/cli\/start\.js run -ti busybox sh)$/);
    expect(test).toBe('npm test');
  });

  // Driving a terminal needs tmux (.ci/run installs it); without it the run is reported skipped.
  it.skipIf(spawnSync('tmux', ['-V']).status !== 0)("quick start's first line ends in a shell in a container", async () => {
    const quick = blocks().find((b) => b.lang === 'sh')!;
    const install = quick.body.trim().split('\n')[0]!;
    const run = install!.split(' && ').pop()!;
    const sock = `readme-${process.pid}`;
    const tmux = (...a: string[]) => execFileSync('tmux', ['-L', sock, ...a], { env: { ...env, TMUX: '' } }).toString();
    tmux('new-session', '-d', '-s', 'q', '-x', '90', '-y', '20', '-c', REPO, 'sh');
    try {
      tmux('send-keys', '-t', 'q', `${run}; echo "left with $?"`, 'Enter');
      const until = async (re: RegExp) => {
        for (let i = 0; i < 300 && !re.test(tmux('capture-pane', '-p', '-t', 'q')); i++) await new Promise((r) => setTimeout(r, 50));
        expect(tmux('capture-pane', '-p', '-t', 'q')).toMatch(re);
      };
      await until(/^\/ #/m);
      tmux('send-keys', '-t', 'q', 'cat /etc/nsbox-image; exit', 'Enter');
      await until(/left with 0/);
      expect(tmux('capture-pane', '-p', '-t', 'q')).toMatch(/^nsbox-busybox$/m);
    } finally {
      tmux('kill-server');
    }
  });
});
