// Options checked at run time: every option of run() with a wrong type, and typo'd keys, are
// refused as INVALID_ARGUMENT naming the option, before anything is made (the state
// directory is not even created, nor a volume's host directory). And a run that fails after
// its volumes were prepared takes back the host directories it made, and only those.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { copyToHost } from '../src/copy-host';
import { Runtime, type RunOptions } from '../src/runtime';
import { Volume } from '../src/volume';
import { childPids, collect, openFds, unionMounts } from './helpers';

let base: string;
let root: string;
let rt: Runtime;

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-validate-'));
  root = path.join(base, 'state');
  rt = new Runtime({ root });
});
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

/** The NsboxError run() throws for these options; fails the test when it starts a container. */
async function runError(options: unknown, runtime = rt): Promise<NsboxError> {
  try {
    const c = await runtime.run(options as RunOptions);
    c.kill('SIGKILL');
    await c.wait();
  } catch (e) {
    if (!(e instanceof NsboxError)) throw new Error(`expected an NsboxError, got ${String(e)}`);
    return e;
  }
  throw new Error(`run(${JSON.stringify(options)}) started a container`);
}

function syncError(f: () => unknown): NsboxError {
  try {
    f();
  } catch (e) {
    if (!(e instanceof NsboxError)) throw new Error(`expected an NsboxError, got ${String(e)}`);
    return e;
  }
  throw new Error('accepted');
}

describe('run options of the wrong type', () => {
  const volumeDir = () => path.join(base, 'never-made');
  // [option, a value of the wrong type, what the message must say]
  const cases: Array<[string, unknown, RegExp]> = [
    ['image', 5, /run option image: expected a string, got a number/],
    ['image', undefined, /run option image: expected a string, got undefined/],
    ['command', 'sh -c true', /run option command: expected a non-empty array, got a string/],
    ['command', ['sh', 1], /run option command\[1\]: expected a string, got a number/],
    ['command', [], /run option command: expected a non-empty array, got an array/],
    ['name', 7, /run option name: expected a string/],
    ['volumes', '/a:/b', /run option volumes: expected an array, got a string/],
    ['volumes', [5], /run option volumes\[0\]: expected HOST:CONTAINER\[:ro\|:rw\], a Volume or \{ source, target, readonly \}/],
    ['volumes', [{ source: '/tmp/x', target: '/x', readonly: 'no' }], /run option volumes\[0\]\.readonly: expected a boolean, got a string/],
    ['volumes', [{ source: '/tmp/x', target: '/x', ro: true }], /run option volumes\[0\]\.ro: unknown option/],
    ['volumes', [{ source: 1, target: '/x' }], /run option volumes\[0\]\.source: expected a string/],
    ['env', 'A=1', /run option env: expected K=V strings or an object of strings, got a string/],
    ['env', { A: 1 }, /run option env\.A: expected a string, got a number/],
    ['env', [['A', '1']], /run option env\[0\]: expected a string, got an array/],
    ['cwd', 1, /run option cwd: expected a string/],
    ['hostname', true, /run option hostname: expected a string, got a boolean/],
    ['network', 'bridge', /run option network: expected one of "none", "host"/],
    ['network', true, /run option network: expected one of/],
    ['stdio', 'tty', /run option stdio: expected one of "pipe", "inherit", "ignore"/],
    ['stdio', ['pipe', 'pipe'], /run option stdio: expected an array of 3/],
    ['stdio', ['pipe', 'pipe', 1.5], /run option stdio\[2\]: expected a file descriptor/],
    ['stdio', ['pipe', 'pipe', {}], /run option stdio\[2\]: expected one of "pipe", "inherit", "ignore", a file descriptor or a stream/],
    ['stdio', 1, /run option stdio: expected 'pipe', 'inherit', 'ignore' or an array of three of them/],
    ['tty', 'yes', /run option tty: expected a boolean or \{ cols, rows \}/],
    ['tty', { cols: '80' }, /run option tty\.cols: expected an integer from 1 to 65535/],
    ['tty', { columns: 80 }, /run option tty\.columns: unknown option/],
    ['remove', 'false', /run option remove: expected a boolean, got a string \("false"\)/],
    ['remove', 0, /run option remove: expected a boolean, got a number/],
    ['readOnly', 1, /run option readOnly: expected a boolean/],
    ['readOnly', 'true', /run option readOnly: expected a boolean/],
    ['security', 'privileged', /run option security: expected an object, got a string/],
    ['security', null, /run option security: expected an object, got null/],
    ['security', ['privileged'], /run option security: expected an object, got an array/],
    ['devices', '/dev/fuse', /run option devices: expected an array/],
    ['devices', [1], /run option devices\[0\]: expected HOST\[:CONTAINER\]/],
    ['limits', 'lots', /run option limits: expected an object/],
    ['ulimits', ['nofile'], /run option ulimits: expected an object/],
    ['timeout', '10s', /run option timeout: expected an integer/],
    ['timeout', 0, /run option timeout: expected an integer/],
    ['signal', {}, /run option signal: expected an AbortSignal/],
    ['tmpfs', '/tmp', /run option tmpfs: expected tmpfs specs or an object/],
    ['detach', 'yes', /run option detach: expected a boolean/],
    ['userns', 'yes', /run option userns: expected one of auto, host|run option userns: .*auto.*host/],
    ['userns', true, /run option userns: /],
    ['idMap', 'range', /run option idMap: .*single.*subuid/],
    ['logMaxSize', 10, /run option logMaxSize: expected an integer from 1024/],
    ['logMaxSize', true, /run option logMaxSize: expected bytes, or a size like 10m/],
    ['logMaxFiles', 0, /run option logMaxFiles: expected an integer from 1 to 100/],
  ];

  it.each(cases)('%s = %j is refused, naming it, with nothing made', async (key, value, message) => {
    const fresh = path.join(base, `fresh-${key}`);
    const runtime = new Runtime({ root: fresh });
    const e = await runError({ image: 'busybox', command: ['true'], volumes: [`${volumeDir()}:/v`], [key]: value }, runtime);
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(message);
    expect(fs.existsSync(fresh)).toBe(false);
    expect(fs.existsSync(volumeDir())).toBe(false);
  });

  it('covers every key run() knows (a new option needs a case here)', async () => {
    const e = await runError({ image: 'busybox', nope: 1 });
    const known = /known: (.*)$/.exec(e.message)![1]!.split(', ');
    expect(new Set(cases.map(([k]) => k))).toEqual(new Set(known));
  });

  it("idMap is for rootless containers: as root it is refused, naming userns 'auto', with nothing made", async () => {
    const fresh = path.join(base, 'fresh-idmap-root');
    const e = await runError({ image: 'busybox', command: ['true'], idMap: 'subuid' }, new Runtime({ root: fresh }));
    expect(e.code).toBe('UNSUPPORTED');
    expect(e.message).toMatch(/^idMap: for rootless containers/);
    expect(fs.readdirSync(path.join(fresh, 'containers'))).toEqual([]);
  });

  it('refuses a non-object, without making anything', async () => {
    for (const v of [undefined, null, 'busybox', ['busybox']]) {
      expect((await runError(v)).code).toBe('INVALID_ARGUMENT');
    }
  });
});

describe("run options' names", () => {
  it.each([
    ['timeOut', 1000, /run option timeOut: unknown option \(did you mean timeout\?\)/],
    ['volume', ['/tmp/v:/v'], /run option volume: unknown option \(did you mean volumes\?\)/],
    ['readonly', true, /run option readonly: unknown option \(did you mean readOnly\?\)/],
    ['rm', true, /run option rm: unknown option/],
    // A benchmark's switch once, never an option of the API: $NSBOX_BENCH_FORK_STYLE now.
    ['forkStyle', true, /run option forkStyle: unknown option/],
    ['comand', ['true'], /did you mean command\?/],
    ['Env', {}, /did you mean env\?/],
  ])('a typo %s is refused, not ignored', async (key, value, message) => {
    const fresh = path.join(base, `typo-${key}`);
    const e = await runError({ image: 'busybox', command: ['true'], [key]: value }, new Runtime({ root: fresh }));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(message);
    expect(fs.existsSync(fresh)).toBe(false);
  });

  it('takes options set to undefined as left out, and a plain run still works', async () => {
    const c = await rt.run({
      image: 'busybox',
      command: ['sh', '-c', 'echo $A'],
      name: undefined,
      volumes: undefined,
      env: ['A=ok'],
      cwd: undefined,
      hostname: undefined,
      network: undefined,
      stdio: undefined,
      tty: undefined,
      remove: true,
      readOnly: undefined,
      security: undefined,
    });
    const out = collect(c.stdout);
    expect((await c.wait()).exitCode).toBe(0);
    expect(await out).toBe('ok\n');
  });

  it('reads an option once: a getter cannot pass the check and then say something else', async () => {
    let reads = 0;
    const options = { image: 'busybox', command: ['true'] } as Record<string, unknown>;
    Object.defineProperty(options, 'readOnly', { enumerable: true, get: () => (reads++ === 0 ? true : 'false') });
    const c = await rt.run(options as unknown as RunOptions);
    expect(reads).toBe(1);
    expect(rt.inspect(c.id!).readOnly).toBe(true);
    await c.wait();
    await c.remove();
  });
});

describe('Runtime options and the other methods', () => {
  it('checks RuntimeOptions: root a string or undefined, a known driver, no unknown key', () => {
    expect(new Runtime({ root: process.env.NSBOX_TEST_NO_SUCH_VARIABLE }).root).toBe(path.resolve(process.env.NSBOX_ROOT ?? '/var/lib/nsbox'));
    expect(syncError(() => new Runtime({ root: 5 as unknown as string })).message).toMatch(/Runtime option root: expected a non-empty string/);
    expect(syncError(() => new Runtime({ root: '' })).message).toMatch(/Runtime option root: expected a non-empty string/);
    expect(syncError(() => new Runtime({ root: `${base}/a\0b` })).code).toBe('INVALID_ARGUMENT');
    expect(syncError(() => new Runtime({ root: base, storageDriver: 'zfs' as 'vfs' })).message).toMatch(
      /Runtime option storageDriver: expected one of "overlay", "aufs", "vfs"/,
    );
    expect(syncError(() => new Runtime({ rooot: base } as unknown as { root: string })).message).toMatch(
      /Runtime option rooot: unknown option \(did you mean root\?\)/,
    );
    expect(syncError(() => new Runtime(null as never)).code).toBe('INVALID_ARGUMENT');
  });

  it('checks the options of remove, list, prune and commit', async () => {
    const c = await rt.run({ image: 'busybox', command: ['sleep', '30'] });
    try {
      // `force: 'no'` was truthy: it killed the container.
      await expect(rt.remove(c.id!, { force: 'no' as unknown as boolean })).rejects.toThrow(/remove option force: expected a boolean/);
      await expect(rt.remove(c.id!, { forse: true } as never)).rejects.toThrow(/remove option forse: unknown option \(did you mean force\?\)/);
      expect(c.running).toBe(true);
      expect(() => rt.list({ all: 'yes' as unknown as boolean })).toThrow(/list option all: expected a boolean/);
      expect(() => rt.list({ al: true } as never)).toThrow(/list option al: unknown option \(did you mean all\?\)/);
      await expect(rt.prune({ force: true } as never)).rejects.toThrow(/prune option force: unknown option/);
      expect(() => rt.removeImage('busybox', { force: 1 as unknown as boolean })).toThrow(/removeImage option force: expected a boolean/);
      await expect(rt.commit(c.id!, 'never-made', { outptu: '/tmp/x.tar' } as never)).rejects.toThrow(
        /commit option outptu: unknown option \(did you mean output\?\)/,
      );
      await expect(rt.commit(c.id!, 'never-made', { output: 5 } as never)).rejects.toThrow(/commit option output: expected a non-empty string/);
      expect(rt.images.find('never-made')).toBeUndefined();
      expect(rt.images.find('busybox')).toBeDefined();
      expect(rt.list().map((x) => x.id)).toContain(c.id);
    } finally {
      await c.remove({ force: true });
    }
  });
});

describe('a run that fails after its volumes were prepared', () => {
  it('removes the host directories it made, deepest first, and keeps those that were there', async () => {
    const existing = path.join(base, 'vol-existing');
    fs.mkdirSync(existing);
    fs.writeFileSync(path.join(existing, 'keep'), 'user data\n');
    const made = path.join(base, 'vol-new');
    const deep = path.join(base, 'vol-deep-parent');
    fs.mkdirSync(deep);
    const fdsBefore = openFds();
    const childrenBefore = childPids();
    const containersBefore = fs.readdirSync(path.join(root, 'containers'));
    const e = await runError({
      image: 'busybox',
      command: ['no-such-command'],
      volumes: [`${existing}:/a`, `${made}/x/y:/b`, `${deep}/1/2/3:/c`, { source: path.join(existing, 'sub'), target: '/d' }],
    });
    expect(e.code).toBe('ENOENT');
    expect(e.step).toBe('exec');
    expect(fs.existsSync(made)).toBe(false);
    expect(fs.readdirSync(deep)).toEqual([]);
    expect(fs.readdirSync(existing)).toEqual(['keep']);
    expect(fs.readFileSync(path.join(existing, 'keep'), 'utf8')).toBe('user data\n');
    expect(fs.readdirSync(path.join(root, 'containers'))).toEqual(containersBefore);
    expect(openFds()).toEqual(fdsBefore);
    expect(childPids()).toEqual(childrenBefore);
    expect(unionMounts().filter((l) => l.includes(root))).toEqual([]);
  });

  it("takes back an earlier volume's directory when a later volume fails", async () => {
    const made = path.join(base, 'vol-made-first');
    const fifo = path.join(base, 'a-fifo');
    execFileSync('mkfifo', [fifo]);
    const e = await runError({ image: 'busybox', command: ['true'], volumes: [`${made}/in:/a`, `${fifo}:/b`] });
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/not a directory or a regular file/);
    expect(fs.existsSync(made)).toBe(false);
    expect(fs.statSync(fifo).isFIFO()).toBe(true);
  });

  it('never removes a directory it made once something is in it, nor its parents', () => {
    const top = path.join(base, 'vol-filled');
    const created: string[] = [];
    new Volume(`${top}/a/b`, '/x').prepare(created);
    expect(created).toEqual([top, `${top}/a`, `${top}/a/b`]);
    fs.writeFileSync(path.join(top, 'a', 'b', 'data'), 'x');
    Volume.removeCreated(created);
    expect(fs.readFileSync(path.join(top, 'a', 'b', 'data'), 'utf8')).toBe('x');

    const other: string[] = [];
    new Volume(`${top}/c/d`, '/y').prepare(other);
    expect(other).toEqual([`${top}/c`, `${top}/c/d`]); // top was there: not this call's
    Volume.removeCreated(other);
    expect(fs.readdirSync(top)).toEqual(['a']);
  });
});

describe("other methods' options", () => {
  it('refuses a typo in stop, rm and the Runtime options before anything else', async () => {
    await expect(rt.stop('no-such', { timeOut: 1 } as never)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/^stop option timeOut: unknown option \(did you mean timeout\?\)/),
    });
    await expect(rt.remove('no-such', { forse: true } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(() => new Runtime({ rooot: base } as never)).toThrow(/Runtime option rooot: unknown option \(did you mean root\?\)/);
    await expect(rt.import('/no/such.tar', 'never-made', { onProgres: () => {} } as never)).rejects.toThrow(
      /^import option onProgres: unknown option \(did you mean onProgress\?\)/,
    );
    await expect(copyToHost((async function* () {})(), path.join(base, 'never'), { keepOwner: true } as never)).rejects.toThrow(
      /^copyToHost option keepOwner: unknown option \(did you mean keepOwners\?\)/,
    );
    expect(fs.existsSync(path.join(base, 'never'))).toBe(false);
    // undefined is left out: `root: process.env.X` with X unset is the default root.
    expect(new Runtime({ root: undefined, storageDriver: undefined }).root).toBe(process.env.NSBOX_ROOT ?? '/var/lib/nsbox');
  });
});
