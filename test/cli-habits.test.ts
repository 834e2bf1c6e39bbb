// Docker habits on the CLI (issue 12, items 5 and 7): "did you mean" for a mistyped command
// or flag, `inspect` as JSON, -e VAR, --env-file, --entrypoint, --mount, --network, images -q,
// import -, system prune, name:latest, start/restart/rename, and the global flags' messages.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { envFrom } from '../src/cli/run-habits';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-habits-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function nsbox(...args: string[]) {
  return nsboxWith({}, ...args);
}

function nsboxWith(o: { env?: Record<string, string>; input?: Buffer | string }, ...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, '--root', root, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, ...o.env },
    ...(o.input !== undefined ? { input: o.input } : {}),
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** containers/ is as it was: a failed run left nothing. */
function containers(): string[] {
  return fs.existsSync(path.join(root, 'containers')) ? fs.readdirSync(path.join(root, 'containers')).sort() : [];
}

describe('the CLI', () => {
  it('suggests the command or flag meant', () => {
    expect(nsbox('runn', 'busybox')).toMatchObject({ code: 125, err: expect.stringMatching(/^nsbox: unknown command "runn" \(did you mean run\?\)\n/) });
    expect(nsbox('run', '--nmae', 'x', 'busybox', 'true')).toMatchObject({
      code: 125,
      err: expect.stringMatching(/unknown flag --nmae \(did you mean --name\?\)/),
    });
  });

  it('inspect prints the record as JSON, with why it was killed', () => {
    nsbox('run', '--name', 'hog', '-m', '16m', 'busybox', 'sh', '-c', 'x=a; while :; do x="$x$x"; done');
    const r = nsbox('inspect', 'hog');
    expect(r.code).toBe(0);
    const [info] = JSON.parse(r.out) as Array<Record<string, unknown>>;
    expect(info).toMatchObject({ name: 'hog', image: 'busybox', status: 'exited', signal: 'SIGKILL', killedFor: 'oom' });
    expect(nsbox('inspect', 'no-such')).toMatchObject({ code: 125, out: '[]\n' });
    nsbox('rm', 'hog');
  });
});

describe('global flags and new commands', () => {
  it('an unknown global flag is named without an empty command', () => {
    expect(nsbox('--foo', 'ps')).toEqual({ code: 125, out: '', err: "nsbox: unknown flag --foo (see 'nsbox --help')\n" });
    expect(nsbox('--rot', '/tmp', 'ps').err).toBe("nsbox: unknown flag --rot (did you mean --root?) (see 'nsbox --help')\n");
  });

  it('"did you mean" covers the new commands and their flags', () => {
    expect(nsbox('stat', 'x').err).toMatch(/^nsbox: unknown command "stat" \(did you mean start\?\)/);
    expect(nsbox('renam', 'a', 'b').err).toMatch(/\(did you mean rename\?\)/);
    expect(nsbox('restrat', 'a').err).toMatch(/\(did you mean restart\?\)/);
    expect(nsbox('system', 'prun').err).toMatch(/^nsbox: system: unknown command "prun" \(did you mean prune\?\)/);
    expect(nsbox('start', '--atach', 'x').err).toMatch(/unknown flag --atach \(did you mean --attach\?\)/);
    expect(nsbox('run', '--entrypiont', 'x', 'busybox').err).toMatch(/did you mean --entrypoint\?/);
  });
});

describe('run habits', () => {
  it("-e VAR passes the host's value, and nothing when the host has none", () => {
    const r = nsboxWith(
      { env: { HABIT_FOO: 'from host' } },
      'run',
      '--rm',
      '-e',
      'HABIT_FOO',
      '-e',
      'HABIT_NONE',
      '-e',
      'X=1',
      'busybox',
      'sh',
      '-c',
      'echo "$HABIT_FOO|${HABIT_NONE-unset}|$X"',
    );
    expect(r).toMatchObject({ code: 0, out: 'from host|unset|1\n' });
    expect(nsbox('run', '--rm', '-e', 'A B=1', 'busybox', 'true')).toMatchObject({
      code: 125,
      err: expect.stringMatching(/-e: "A B=1": expected NAME=VALUE or NAME/),
    });
  });

  it("--env-file reads docker's format; -e wins over it", () => {
    const file = path.join(root, 'env.list');
    fs.writeFileSync(file, '# a comment\n\nA=1\n  B=two words\nHABIT_HOST\nHABIT_ABSENT\nC=x=y\nD=from file\n');
    const r = nsboxWith(
      { env: { HABIT_HOST: 'h' } },
      'run',
      '--rm',
      '--env-file',
      file,
      '-e',
      'D=from flag',
      'busybox',
      'sh',
      '-c',
      'echo "$A|$B|$HABIT_HOST|${HABIT_ABSENT-unset}|$C|$D"',
    );
    expect(r).toMatchObject({ code: 0, out: '1|two words|h|unset|x=y|from flag\n' });
    fs.writeFileSync(file, 'A=1\n=nope\n');
    expect(nsbox('run', '--rm', '--env-file', file, 'busybox', 'true').err).toMatch(/--env-file .*env\.list:2: "=nope": expected NAME=VALUE or NAME/);
    // Node 20 itself looks at `--env-file` anywhere in its argv and exits when the file is
    // missing, before nsbox runs: nsbox's own message is checked without the node binary.
    expect(() => envFrom([path.join(root, 'missing')], [])).toThrow(/--env-file .*missing: ENOENT/);
  });

  it('--entrypoint runs the program with the command as its arguments', () => {
    expect(nsbox('run', '--rm', '--entrypoint', 'echo', 'busybox', 'hello', 'world')).toMatchObject({ code: 0, out: 'hello world\n' });
    expect(nsbox('run', '--rm', '--entrypoint', '/bin/hostname', '--hostname', 'ep', 'busybox')).toMatchObject({ code: 0, out: 'ep\n' });
    expect(nsbox('run', '--rm', '--entrypoint', '', 'busybox', 'echo', 'plain')).toMatchObject({ code: 0, out: 'plain\n' });
  });

  it('--mount binds (read-only when asked) and makes tmpfs; a bad one leaves nothing', () => {
    const src = path.join(root, 'mount-src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'f'), 'in\n');
    const r = nsbox(
      'run',
      '--rm',
      '--mount',
      `type=bind,source=${src},target=/m,readonly`,
      '--mount',
      `type=bind,src=${src},dst=/w`,
      '--mount',
      'type=tmpfs,target=/t,tmpfs-size=1m',
      'busybox',
      'sh',
      '-c',
      "cat /m/f; touch /m/x 2>/dev/null || echo ro; touch /w/y && echo rw; df -k /t | tail -1 | awk '{print $2}'",
    );
    expect(r).toMatchObject({ code: 0, out: 'in\nro\nrw\n1024\n' });
    expect(fs.existsSync(path.join(src, 'y'))).toBe(true);
    const before = containers();
    expect(nsbox('run', '--rm', '--mount', `type=bind,source=${path.join(root, 'nope')},target=/m`, 'busybox', 'true').err).toMatch(
      /bind source .*nope does not exist/,
    );
    expect(fs.existsSync(path.join(root, 'nope'))).toBe(false); // unlike -v, --mount makes no host directory
    expect(nsbox('run', '--rm', '--mount', 'type=volume,source=v,target=/v', 'busybox', 'true').err).toMatch(/type=volume: bind or tmpfs/);
    expect(nsbox('run', '--rm', '--mount', `type=bind,source=${src}`, 'busybox', 'true').err).toMatch(/target= is required/);
    expect(nsbox('run', '--rm', '--mount', `type=bind,source=${src},target=/m,bogus=1`, 'busybox', 'true').err).toMatch(/bogus: not an option of type=bind/);
    expect(containers()).toEqual(before);
  });

  it('--network is --net', () => {
    const host = fs.readFileSync('/etc/resolv.conf', 'utf8');
    expect(nsbox('run', '--rm', '--network', 'host', 'busybox', 'cat', '/etc/resolv.conf')).toMatchObject({ code: 0, out: host });
    expect(nsbox('run', '--rm', '--network', 'bridge', 'busybox', 'true').err).toMatch(/--network bridge: none or host/);
    expect(nsbox('run', '--rm', '--net', 'host', '--network', 'none', 'busybox', 'true').err).toMatch(/disagree/);
  });
});

describe('images', () => {
  it('name:latest is name; images -q; import - from stdin', () => {
    expect(nsbox('run', '--rm', 'busybox:latest', 'cat', '/etc/nsbox-image')).toMatchObject({ code: 0, out: 'nsbox-busybox\n' });
    const tar = fs.readFileSync(process.env.NSBOX_TEST_TARBALL!);
    expect(nsboxWith({ input: tar }, 'import', '-', 'piped:latest')).toMatchObject({ code: 0, out: expect.stringMatching(/^piped sha256:/) });
    expect(nsbox('images', '-q').out.split('\n')).toEqual(expect.arrayContaining(['busybox', 'piped']));
    expect(nsbox('run', '--rm', 'piped', 'cat', '/etc/nsbox-image')).toMatchObject({ code: 0, out: 'nsbox-busybox\n' });
    expect(nsboxWith({ input: tar }, 'import', '-', 'piped').err).toMatch(/image piped: already exists/);
    expect(nsboxWith({ input: 'not a tarball' }, 'import', '-', 'junk').code).toBe(125);
    expect(nsbox('images', '-q').out).not.toMatch(/junk/);
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]); // the stdin copy is gone
    expect(nsbox('rmi', 'piped:latest')).toMatchObject({ code: 0 });
    expect(nsbox('images', '-q').out).not.toMatch(/piped/);
  });

  it('an image stored as NAME:latest before the tag was implicit still works as NAME', () => {
    const legacy = path.join(root, 'images', encodeURIComponent('old:latest'));
    fs.cpSync(path.join(root, 'images', 'busybox'), legacy, { recursive: true, verbatimSymlinks: true });
    expect(nsbox('run', '--rm', 'old', 'cat', '/etc/nsbox-image')).toMatchObject({ code: 0, out: 'nsbox-busybox\n' });
    expect(nsbox('run', '--rm', 'old:latest', 'true').code).toBe(0);
    expect(nsbox('images', '-q').out.split('\n')).toContain('old');
    expect(nsbox('rmi', 'old').code).toBe(0);
    expect(fs.existsSync(legacy)).toBe(false);
  });
});

describe('system prune, start, restart, rename', () => {
  it('system prune is prune', () => {
    nsbox('run', '--name', 'pruned', 'busybox', 'true');
    const r = nsbox('system', 'prune', '-f');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^[0-9a-f]{12}$/m);
    expect(nsbox('inspect', 'pruned').code).toBe(125);
  });

  it('start -a runs it again with its output and status; rename; inspect shows the config', () => {
    expect(nsbox('run', '--name', 'counter', '-e', 'K=v', 'busybox', 'sh', '-c', 'echo $K >> /runs; wc -l < /runs; exit 3').out).toBe('1\n');
    expect(nsbox('start', '-a', 'counter')).toMatchObject({ code: 3, out: '2\n' });
    expect(nsbox('rename', 'counter', 'counted')).toMatchObject({ code: 0 });
    expect(nsbox('start', '-a', 'counter')).toMatchObject({ code: 125, err: expect.stringMatching(/container counter: no such container/) });
    expect(nsbox('start', '-a', 'counted')).toMatchObject({ code: 3, out: '3\n' });
    const [info] = JSON.parse(nsbox('inspect', 'counted').out) as Array<Record<string, unknown>>;
    expect(info).toMatchObject({ name: 'counted', status: 'exited', exitCode: 3, oomKilled: false, config: { env: { K: 'v' } }, mounts: [] });
    nsbox('run', '--name', 'other', 'busybox', 'true');
    expect(nsbox('rename', 'counted', 'other')).toMatchObject({ code: 125, err: expect.stringMatching(/name other: already in use/) });
    expect(nsbox('rename', 'counted', 'bad/name').err).toMatch(/rename: name "bad\/name"/);
    // The refused renames left no note, no lock, and the name as it was.
    const id = (JSON.parse(nsbox('inspect', 'counted').out) as Array<{ id: string }>)[0]!.id;
    expect(fs.existsSync(path.join(root, 'containers', id, 'rename-to'))).toBe(false);
    expect(fs.readdirSync(path.join(root, 'locks'))).toEqual([]);
    expect(fs.readlinkSync(path.join(root, 'names', 'counted'))).toBe(id);
    expect(nsbox('rm', 'counted', 'other').code).toBe(0);
  });

  it('start in the background, of a running one (refused), and restart', async () => {
    // The first run ends at once; a start sleeps.
    expect(nsbox('run', '--name', 'bg', 'busybox', 'sh', '-c', 'if [ -e /ran ]; then exec sleep 100; fi; touch /ran').code).toBe(0);
    expect(nsbox('start', 'bg')).toMatchObject({ code: 0, out: 'bg\n' });
    const running = JSON.parse(nsbox('inspect', 'bg').out)[0] as { status: string; pid: number };
    expect(running.status).toBe('running');
    expect(nsbox('start', 'bg')).toMatchObject({ code: 125, err: expect.stringMatching(/container bg is running: not started again/) });
    expect(nsbox('restart', '-t', '0', 'bg')).toMatchObject({ code: 0, out: 'bg\n' });
    const again = JSON.parse(nsbox('inspect', 'bg').out)[0] as { status: string; pid: number };
    expect(again.status).toBe('running');
    expect(again.pid).not.toBe(running.pid);
    expect(nsbox('rm', '-f', 'bg').code).toBe(0);
  });
});
