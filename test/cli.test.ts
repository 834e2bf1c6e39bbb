// The nsbox command as a user runs it: exit statuses, errors, tables, -d, rm -f; and
// `run -ti` and `import` driven through tmux as a person at a terminal would.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vm from 'node:vm';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { unionMounts } from './helpers';

// The installed command (package.json's bin: the bundle with its code cache), as users run it.
const PACKAGE = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { bin: { nsbox: string } };
const MAIN = path.join(__dirname, '..', PACKAGE.bin.nsbox);
const UNBUNDLED = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
let root: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-cli-'));
});
afterAll(() => {
  spawnSync('tmux', ['-L', sock, 'kill-server'], { env: tmuxEnv() });
  fs.rmSync(root, { recursive: true, force: true });
  expect(unionMounts().filter((l) => l.includes(root))).toEqual([]);
});

function nsbox(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [MAIN, '--root', root, ...args], { input: input ?? '', encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('the installed command', () => {
  it('is the bundle, ASCII only, loaded with a code cache V8 accepts', () => {
    expect(MAIN).toMatch(/start\.js$/);
    const bundle = fs.readFileSync(path.join(path.dirname(MAIN), 'bundle.js'));
    expect(bundle.every((b) => b < 0x80)).toBe(true);
    const r = spawnSync(process.execPath, [MAIN, '--version'], { encoding: 'utf8', env: { ...process.env, NSBOX_CODE_CACHE_REPORT: '1' } });
    expect(r.stderr).toBe('nsbox: code cache accepted\n');
  });
  it("starts no thread of libuv's pool for a run (its batches run on the JS thread)", () => {
    // Threads at the first line of the process and at its exit: the pool, once started, would
    // add its 8 (and stay); a run adds only the spawner thread that clones its container.
    const probe = path.join(root, 'threads.cjs');
    fs.writeFileSync(
      probe,
      `const fs = require('node:fs'); const n = () => fs.readdirSync('/proc/self/task').length; const before = n();
       process.on('exit', () => fs.writeSync(2, 'threads +' + (n() - before) + '\\n'));`,
    );
    for (const args of [
      ['run', '--rm', 'busybox', 'true'],
      ['run', 'busybox', 'true'],
    ]) {
      const r = spawnSync(process.execPath, [MAIN, '--root', root, ...args], {
        encoding: 'utf8',
        env: { ...process.env, NODE_OPTIONS: `--require ${probe}`, UV_THREADPOOL_SIZE: '8' },
      });
      expect(r.status).toBe(0);
      const grew = Number(/threads \+(\d+)/.exec(r.stderr)?.[1]);
      expect(grew).toBeGreaterThanOrEqual(1);
      expect(grew).toBeLessThan(8);
    }
  });
  it("loads none of Node's modules a run has no use for", () => {
    // Each costs a start 0.5-5 ms on Node 20: perf_hooks (the global `performance`), node:module
    // (with it the ES module loader: compile-cache.ts asks for it only on Node >= 22.1),
    // fs.promises, and what only other paths need.
    const probe = path.join(root, 'modules.cjs');
    fs.writeFileSync(
      probe,
      `const before = new Set(process.moduleLoadList);
       process.on('exit', () => require('node:fs').writeSync(2, JSON.stringify(process.moduleLoadList.filter((m) => !before.has(m))) + '\\n'));`,
    );
    const r = spawnSync(process.execPath, [MAIN, '--root', root, 'run', '--rm', 'busybox', 'true'], {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: `--require ${probe}` },
    });
    expect(r.status).toBe(0);
    const loaded = (JSON.parse(r.stderr) as string[]).map((m) => m.replace(/^NativeModule /, ''));
    expect(loaded).toContain('vm');
    const unused = [
      'perf_hooks',
      'module',
      'internal/modules/esm/loader',
      'internal/fs/promises',
      'child_process',
      'net',
      'tty',
      'crypto',
      'zlib',
      'worker_threads',
    ];
    expect(loaded.filter((m) => unused.includes(m))).toEqual([]);
  });
  it('a kept container is removed by rm through the pool as before', () => {
    const probe = path.join(root, 'threads.cjs');
    // The probe sees the pool where it starts: `rm` still takes its batches there.
    const id = spawnSync(process.execPath, [MAIN, '--root', root, 'ps', '-aq'], { encoding: 'utf8' }).stdout.trim().split('\n')[0]!;
    const rm = spawnSync(process.execPath, [MAIN, '--root', root, 'rm', id], {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: `--require ${probe}`, UV_THREADPOOL_SIZE: '8' },
    });
    expect(rm.status).toBe(0);
    expect(Number(/threads \+(\d+)/.exec(rm.stderr)?.[1])).toBeGreaterThanOrEqual(8);
  });
  it("resolves each module's relative requires to the module a path resolution finds", () => {
    // The bundle carries them resolved (scripts/bundle-cli.js); start.js looks them up. A
    // wrong entry would load another module in place of the one asked for.
    const bundleFile = path.join(path.dirname(MAIN), 'bundle.js');
    const table = vm.runInNewContext(fs.readFileSync(bundleFile, 'latin1'), {}, { filename: bundleFile }) as Record<string, unknown>;
    const resolved = table['(requires)'] as Record<string, Record<string, string>>;
    const modules = Object.keys(table).filter((k) => k.endsWith('.js'));
    let checked = 0;
    for (const rel of modules) {
      for (const m of String(table[rel]).matchAll(/\brequire\("(\.\.?\/[^"]*)"\)/g)) {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), m[1]!));
        const expected = [`${target}.js`, target, `${target}/index.js`].find((c) => modules.includes(c));
        expect({ rel, id: m[1], to: resolved[rel]?.[m[1]!] }).toEqual({ rel, id: m[1], to: expected });
        if (expected) checked++;
      }
    }
    expect(checked).toBeGreaterThan(100);
    expect(resolved['fsbatch.js']!['./native']).toBe('native.js');
    expect(resolved['cli/commands/run.js']!['../terminal']).toBe('cli/terminal.js');
    expect(resolved['cli/commands/run.js']!['./shared']).toBe('cli/commands/shared.js');
  });
  it('holds each module as tsc wrote it, but for comments and blanks: the same syntax tree', () => {
    // The bundle is printed without comments, indentation and non-ASCII characters
    // (scripts/bundle-cli.js): every node, identifier and literal value must be the same.
    const bundleFile = path.join(path.dirname(MAIN), 'bundle.js');
    const table = vm.runInNewContext(fs.readFileSync(bundleFile, 'latin1'), {}, { filename: bundleFile }) as Record<string, unknown>;
    const shape = (rel: string, text: string): string[] => {
      const out: string[] = [];
      const visit = (n: ts.Node): void => {
        const value =
          ts.isIdentifier(n) ||
          ts.isStringLiteral(n) ||
          ts.isNumericLiteral(n) ||
          ts.isNoSubstitutionTemplateLiteral(n) ||
          ts.isTemplateHead(n) ||
          ts.isTemplateMiddle(n) ||
          ts.isTemplateTail(n) ||
          ts.isRegularExpressionLiteral(n)
            ? n.text
            : '';
        out.push(`${ts.SyntaxKind[n.kind]}${value ? ` ${JSON.stringify(value)}` : ''}`);
        ts.forEachChild(n, visit);
      };
      visit(ts.createSourceFile(rel, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS));
      return out;
    };
    const modules = Object.keys(table).filter((k) => k.endsWith('.js'));
    expect(modules.length).toBeGreaterThan(60);
    for (const rel of modules) {
      const fn = String(table[rel]);
      const body = fn.slice(fn.indexOf('{\n') + 2, fn.lastIndexOf('\n}'));
      const own = fs.readFileSync(path.join(path.dirname(MAIN), '..', rel), 'utf8').replace(/^#!.*\n/, '');
      expect({ rel, tree: shape(rel, body) }).toEqual({ rel, tree: shape(rel, own) });
    }
  });
  it('answers as the unbundled CLI does, non-ASCII text and errors included', () => {
    for (const args of [
      ['--version'],
      ['--help'],
      ['run', '--help'],
      ['nope'],
      ['run', '--rm', 'busybox', 'echo', 'héllo → ✓ 😀'],
      ['run', '-v', 'relative:/x', 'busybox', 'true'],
    ]) {
      const a = spawnSync(process.execPath, [MAIN, '--root', root, ...args], { encoding: 'utf8' });
      const b = spawnSync(process.execPath, [UNBUNDLED, '--root', root, ...args], { encoding: 'utf8' });
      expect({ args, code: a.status, out: a.stdout, err: a.stderr }).toEqual({ args, code: b.status, out: b.stdout, err: b.stderr });
    }
  });
});

describe('exit statuses', () => {
  it("is the command's own", () => {
    expect(nsbox(['run', '--rm', 'busybox', 'echo', 'hello'])).toMatchObject({ code: 0, out: 'hello\n', err: '' });
    expect(nsbox(['run', '--rm', 'busybox', 'sh', '-c', 'exit 42']).code).toBe(42);
  });
  it('is 128+N for a signal', async () => {
    // PID 1 of a pid namespace ignores signals it has no handler for, even SIGKILL from inside:
    // the kill comes from the host, as it would from an operator.
    const run = spawn(process.execPath, [MAIN, '--root', root, 'run', '--rm', '--name', 'sig', 'busybox', 'sh', '-c', 'echo up; exec sleep 1000'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await new Promise<void>((resolve) => run.stdout.once('data', () => resolve()));
    const code = new Promise<number | null>((resolve) => run.on('exit', (c) => resolve(c)));
    const [info] = JSON.parse(nsbox(['ps', '--format', 'json']).out).filter((c: { name: string }) => c.name === 'sig');
    process.kill(info.pid, 'SIGKILL');
    expect(await code).toBe(137);
  });
  it('a signal that comes while the container is being made reaches it once it runs: 128+N, and nothing is left', async () => {
    const own = path.join(root, 'early-signal');
    /** Processes the CLI's threads have forked (the setup child of its start), and theirs. */
    const below = (pid: number): number[] => {
      const out: number[] = [];
      try {
        for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
          for (const c of fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean))
            out.push(Number(c), ...below(Number(c)));
        }
      } catch {
        // gone meanwhile
      }
      return out;
    };
    for (let round = 0; round < 3; round++) {
      const run = spawn(process.execPath, [MAIN, '--root', own, 'run', '--rm', 'busybox', 'sleep', '1000'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      run.stderr.on('data', (d: Buffer) => (stderr += d));
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => run.on('exit', (c, sig) => resolve([c, sig])));
      // The first process of the container exists: its start is under way, not yet returned.
      let seen: number[] = [];
      while ((seen = below(run.pid!)).length === 0) await new Promise((r) => setImmediate(r));
      run.kill('SIGTERM');
      expect(await exited, stderr).toEqual([143, null]);
      for (const p of seen) expect(fs.existsSync(`/proc/${p}`)).toBe(false);
      expect(fs.readdirSync(path.join(own, 'containers'))).toEqual([]);
    }
    // The same signal twice while the start is under way (a second Ctrl-C at a start that
    // hangs): the CLI ends then and there, 128+N; what the start made, the next Runtime ends.
    const run = spawn(process.execPath, [MAIN, '--root', own, 'run', '--rm', 'busybox', 'sleep', '1000'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => run.on('exit', (c, sig) => resolve([c, sig])));
    while (below(run.pid!).length === 0) await new Promise((r) => setImmediate(r));
    run.kill('SIGTERM');
    run.kill('SIGTERM');
    expect(await exited).toEqual([143, null]);
    expect(spawnSync(process.execPath, [MAIN, '--root', own, 'ps', '-a', '-q'], { encoding: 'utf8' }).stdout).toBe('');
    expect(fs.readdirSync(path.join(own, 'containers'))).toEqual([]);
    // exec: the same while the exec'd process is being made in a running container.
    expect(spawnSync(process.execPath, [MAIN, '--root', own, 'run', '-d', '--name', 'early', 'busybox', 'sleep', '1000']).status).toBe(0);
    try {
      const ex = spawn(process.execPath, [MAIN, '--root', own, 'exec', 'early', 'sleep', '999'], { stdio: ['ignore', 'ignore', 'pipe'] });
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => ex.on('exit', (c, sig) => resolve([c, sig])));
      while (below(ex.pid!).length === 0) await new Promise((r) => setImmediate(r));
      ex.kill('SIGTERM');
      expect(await exited).toEqual([143, null]);
      const ps = spawnSync(process.execPath, [MAIN, '--root', own, 'exec', 'early', 'ps', '-o', 'args'], { encoding: 'utf8' });
      expect(ps.stdout).not.toContain('sleep 999');
    } finally {
      spawnSync(process.execPath, [MAIN, '--root', own, 'rm', '-f', 'early']);
    }
  });
  it('is 127 for a missing command and 126 for one that cannot run', () => {
    const missing = nsbox(['run', '--rm', 'busybox', 'no-such-command']);
    expect(missing.code).toBe(127);
    expect(missing.err).toMatch(/^nsbox: exec no-such-command: not found in PATH \(ENOENT\)\n$/);
    expect(nsbox(['run', '--rm', 'busybox', '/etc']).code).toBe(126);
  });
  it('is 125, with one line, when nsbox itself fails', () => {
    const r = nsbox(['run', '--bogus', 'busybox']);
    expect(r.code).toBe(125);
    expect(r.err).toBe("nsbox: run: unknown flag --bogus (see 'nsbox run --help')\n");
    const img = nsbox(['run', 'no-such-image']);
    expect(img.code).toBe(125);
    expect(img.err.split('\n')[0]).toBe('nsbox: image no-such-image: no such image');
    expect(img.err).not.toMatch(/at .*\.js/); // no stack trace
    const vol = nsbox(['run', '-v', 'relative:/x', 'busybox', 'true']);
    expect(vol).toMatchObject({ code: 125, err: 'nsbox: volume: relative: the host path must be absolute\n' });
  });
});

describe('stdio', () => {
  it('passes stdin with -i, not without', () => {
    expect(nsbox(['run', '--rm', '-i', 'busybox', 'cat'], 'piped in\n').out).toBe('piped in\n');
    expect(nsbox(['run', '--rm', 'busybox', 'cat'], 'piped in\n').out).toBe('');
  });
  it('--read-only gives a root that refuses writes', () => {
    const r = nsbox(['run', '--rm', '--read-only', 'busybox', 'touch', '/x']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Read-only file system/);
  });
  it('sets env, workdir, hostname', () => {
    const r = nsbox(['run', '--rm', '-e', 'A=1', '-w', '/tmp', '--hostname', 'web', 'busybox', 'sh', '-c', 'echo $A $(pwd) $(hostname)']);
    expect(r.out).toBe('1 /tmp web\n');
  });
});

describe('security flags', () => {
  const status = (...flags: string[]) => {
    const r = nsbox(['run', '--rm', ...flags, 'busybox', 'grep', '-E', '^(CapBnd|CapEff|NoNewPrivs|Seccomp):', '/proc/self/status']);
    expect(r.err).toBe('');
    return Object.fromEntries(
      r.out
        .trim()
        .split('\n')
        .map((l) => l.split(/:\s+/) as [string, string]),
    );
  };
  const bit = (n: number) => 1n << BigInt(n);
  it("defaults to docker's capabilities, no_new_privs and seccomp", () => {
    expect(status()).toEqual({ CapBnd: '00000000a80425fb', CapEff: '00000000a80425fb', NoNewPrivs: '1', Seccomp: '2' });
  });
  it('changes exactly what each flag says', () => {
    const NET_RAW = 13;
    const SYS_ADMIN = 21;
    expect(BigInt(`0x${status('--cap-drop', 'NET_RAW').CapBnd}`)).toBe(0xa80425fbn & ~bit(NET_RAW));
    expect(BigInt(`0x${status('--cap-add', 'sys_admin').CapBnd}`)).toBe(0xa80425fbn | bit(SYS_ADMIN));
    expect(status('--security-opt', 'seccomp=unconfined')).toMatchObject({ Seccomp: '0', CapBnd: '00000000a80425fb' });
    expect(status('--security-opt', 'no-new-privileges=false')).toMatchObject({ NoNewPrivs: '0', Seccomp: '2' });
    const host = /CapBnd:\s+(\S+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1];
    expect(status('--privileged')).toMatchObject({ CapBnd: host, Seccomp: '0' });
  });
  it('runs as another user with -u', () => {
    expect(nsbox(['run', '--rm', '-u', '1000:1000', 'busybox', 'sh', '-c', 'id; touch /etc/x 2>&1 || echo refused']).out).toMatch(
      /^uid=1000 gid=1000[^\n]*\n.*Permission denied\nrefused\n$/s,
    );
  });
  it('refuses an unknown capability in one line', () => {
    const r = nsbox(['run', '--rm', '--cap-add', 'BOGUS', 'busybox', 'true']);
    expect(r.code).toBe(125);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(/^nsbox: .*BOGUS/);
  });
});

describe('lifecycle', () => {
  it('rm -f ends a running container and its run exits 137', async () => {
    const run = spawn(process.execPath, [MAIN, '--root', root, 'run', '--name', 'victim', 'busybox', 'sh', '-c', 'echo up; exec sleep 1000'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await new Promise<void>((resolve) => run.stdout.once('data', () => resolve()));
    const ps = nsbox(['ps']);
    expect(ps.out).toMatch(
      /^CONTAINER ID\s+NAME\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\n[0-9a-f]{12}\s+victim\s+busybox\s+"sh -c echo up; exec sleep 1000"\s+\d+ seconds? ago\s+Up /,
    );
    expect(nsbox(['rm', 'victim'])).toMatchObject({ code: 125, err: expect.stringMatching(/container victim is running/) });
    const code = new Promise<number | null>((resolve) => run.on('exit', (c) => resolve(c)));
    expect(nsbox(['rm', '-f', 'victim'])).toMatchObject({ code: 0, out: 'victim\n' });
    expect(await code).toBe(137);
    expect(nsbox(['ps', '-a', '--format', 'json']).out).not.toMatch(/victim/);
  });

  it('-d prints the id and keeps the container running after the CLI exits', async () => {
    const r = nsbox(['run', '-d', '--name', 'bg', 'busybox', 'sleep', '1000']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^[0-9a-f]{12}\n$/);
    const list = JSON.parse(nsbox(['ps', '--format', 'json']).out) as Array<{ id: string; status: string }>;
    expect(list.find((c) => c.id === r.out.trim())).toMatchObject({ status: 'running' });
    expect(nsbox(['rm', '-f', 'bg']).code).toBe(0);
    expect(nsbox(['ps', '-aq']).out).not.toContain(r.out.trim());
  });

  it('commits, lists images, imports and removes them', () => {
    expect(nsbox(['run', '--name', 'src', 'busybox', 'sh', '-c', 'echo committed > /hello']).code).toBe(0);
    const tar = path.join(root, 'out.tar');
    expect(nsbox(['commit', '-o', tar, 'src', 'snap'])).toMatchObject({ code: 0, out: 'snap\n' });
    expect(nsbox(['import', tar, 'snap2']).code).toBe(0);
    expect(nsbox(['run', '--rm', 'snap2', 'cat', '/hello']).out).toBe('committed\n');
    const images = nsbox(['images']).out;
    expect(images).toMatch(/^IMAGE\s+DIGEST\s+CREATED\s+SIZE\s+SOURCE\n/);
    expect(images).toMatch(/\nsnap2\s+[0-9a-f]{12}\s+\d+ seconds? ago\s+\S+\s+import\n/);
    expect(JSON.parse(nsbox(['images', '--format', 'json']).out).map((i: { name: string }) => i.name)).toEqual(['busybox', 'snap', 'snap2']);
    expect(nsbox(['rm', 'src']).code).toBe(0);
    expect(nsbox(['rmi', 'snap', 'snap2'])).toMatchObject({ code: 0, out: 'snap\nsnap2\n' });
    expect(nsbox(['prune']).code).toBe(0);
  });
});

describe('help', () => {
  it('exists for every command, with examples, and --version', () => {
    for (const cmd of ['run', 'commit', 'import', 'images', 'rmi', 'ps', 'rm', 'prune']) {
      const r = nsbox([cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(new RegExp(`^Usage: nsbox ${cmd}`));
      expect(r.out).toMatch(/Examples:/);
    }
    const version = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).version;
    expect(nsbox(['--version']).out).toBe(`nsbox ${version}\n`);
  });
});

// ---- tmux: a person at a terminal ----------------------------------------------------------

const sock = `nsbox-test-${process.pid}`;
function tmuxEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm-256color' };
  delete env.TMUX;
  return env;
}
const tmux = (...args: string[]) => execFileSync('tmux', ['-L', sock, ...args], { env: tmuxEnv() }).toString();
const screen = (target: string, escapes = false) => tmux('capture-pane', '-p', ...(escapes ? ['-e'] : []), '-t', target);

async function until(what: string, fn: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.runIf(spawnSync('tmux', ['-V']).status === 0)('at a terminal (tmux)', () => {
  it('run -ti busybox sh: prompt, echo, exit 3 to the calling shell, terminal sane after', async () => {
    tmux('new-session', '-d', '-s', 'ti', '-x', '100', '-y', '30', 'sh');
    tmux('send-keys', '-t', 'ti', `PS1='host$ '; node ${MAIN} --root ${root} run -ti --rm busybox sh`, 'Enter');
    await until('the container prompt', () => /^\/ #/m.test(screen('ti')));
    tmux('send-keys', '-t', 'ti', 'echo hello; stty size', 'Enter');
    await until('hello', () => /^hello$/m.test(screen('ti')));
    expect(screen('ti')).toMatch(/^30 100$/m); // the container's terminal has tmux's size
    tmux('send-keys', '-t', 'ti', 'exit 3', 'Enter');
    await until('the host prompt', () => /^host\$\s*$/m.test(screen('ti')));
    tmux('send-keys', '-t', 'ti', 'echo "status=$?"; stty -a | grep -o -- "-\\?icanon\\|-\\?echo " | tr "\\n" " "; echo', 'Enter');
    // The status first, then stty's answer: wait for both (the screen may hold only the first).
    await until('the status and the modes', () => /status=3[\s\S]*icanon/.test(screen('ti')));
    const s = screen('ti');
    expect(s).toMatch(/status=3/);
    expect(s).toMatch(/icanon echo/); // canonical mode and echo back on: raw mode undone
    tmux('kill-session', '-t', 'ti');
  });

  it('passes Ctrl-C to the container and follows a resize', async () => {
    tmux('new-session', '-d', '-s', 'cc', '-x', '80', '-y', '24', 'sh');
    tmux('send-keys', '-t', 'cc', `node ${MAIN} --root ${root} run -ti --rm busybox sh`, 'Enter');
    await until('the prompt', () => /^\/ #/m.test(screen('cc')));
    tmux('send-keys', '-t', 'cc', 'sleep 100', 'Enter');
    await new Promise((r) => setTimeout(r, 300));
    const prompts = () => (screen('cc').match(/^\/ #/gm) ?? []).length;
    const before = prompts();
    tmux('send-keys', '-t', 'cc', 'C-c');
    // sleep is interrupted in the container (not the CLI): the shell prompts again
    await until('a new prompt after ^C', () => prompts() === before + 1);
    tmux('resize-window', '-t', 'cc', '-x', '120', '-y', '40');
    await new Promise((r) => setTimeout(r, 300));
    tmux('send-keys', '-t', 'cc', 'stty size', 'Enter');
    await until('the new size', () => /^40 120$/m.test(screen('cc')));
    tmux('send-keys', '-t', 'cc', 'exit', 'Enter');
    tmux('kill-session', '-t', 'cc');
  });

  it('closing the terminal ends run -ti and its container', async () => {
    tmux('new-session', '-d', '-s', 'hup', '-x', '80', '-y', '24', 'sh');
    tmux('send-keys', '-t', 'hup', `node ${MAIN} --root ${root} run -ti --rm --name hup busybox sh`, 'Enter');
    await until('the prompt', () => /^\/ #/m.test(screen('hup')));
    const [info] = JSON.parse(nsbox(['ps', '--format', 'json']).out).filter((c: { name: string }) => c.name === 'hup');
    const supervisor = Number(
      execFileSync('sh', ['-c', `ps -o ppid= -p ${info.pid}`])
        .toString()
        .trim(),
    );
    expect(fs.existsSync(`/proc/${supervisor}`)).toBe(true);
    tmux('kill-session', '-t', 'hup');
    await until('the CLI and its container to be gone', () => !fs.existsSync(`/proc/${supervisor}`) && !fs.existsSync(`/proc/${info.pid}`), 10_000);
    await until('the --rm removal', () => !nsbox(['ps', '-a', '--format', 'json']).out.includes('"hup"'), 5_000);
  });

  it('shows a progress bar importing a large tarball; NO_COLOR gives no colour', async () => {
    const big = path.join(root, 'big');
    fs.mkdirSync(big);
    execFileSync('sh', ['-c', `head -c 300000000 /dev/urandom > ${big}/blob && tar -C ${big} -cf ${root}/big.tar .`]);
    for (const [name, env] of [
      ['color', ''],
      ['plain', 'NO_COLOR=1 '],
    ] as const) {
      tmux('new-session', '-d', '-s', name, '-x', '100', '-y', '10', 'sh');
      tmux('send-keys', '-t', name, `${env}node ${MAIN} --root ${root} import ${root}/big.tar big-${name}; echo done-$?`, 'Enter');
      let sawBar = false;
      let sawColour = false;
      await until(
        'the import to end',
        () => {
          const s = screen(name, true);
          if (/importing big-\S+ .*\d+%/.test(s)) sawBar = true;
          // eslint-disable-next-line no-control-regex -- the terminal's escape for cyan
          if (/importing big-\S+ \x1b\[36m/.test(s)) sawColour = true;
          return /done-0/.test(s);
        },
        60_000,
      );
      expect(sawBar).toBe(true);
      expect(sawColour).toBe(name === 'color');
      tmux('kill-session', '-t', name);
    }
  });
});
