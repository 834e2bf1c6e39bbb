// limits.disk on the real kernel: a container cannot write more than its limit to its root
// (ENOSPC inside), --rm (a tmpfs write layer) and kept (an ext4 image on a loop device); the
// host holds none of a --rm container's writes and no more than the limit of a kept one's;
// a kept container's writes survive its exit and commit; nothing is left behind: no loop
// device, no mount, no file, no fd.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { diskLimit } from '../src/limits';
import { Runtime } from '../src/runtime';
import { Container } from '../src/container';
import { ROOTFS, collect, distModule, openFds, runNode, until } from './helpers';

let root: string;
let rt: Runtime;

/** Loop devices bound to something under `dir` (by /sys, as losetup -a reads them). */
function loopsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const n of fs.readdirSync('/sys/block').filter((x) => /^loop\d+$/.test(x))) {
    try {
      const f = fs.readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim();
      if (f.startsWith(dir)) out.push(`${n} ${f}`);
    } catch {
      // not attached
    }
  }
  return out;
}
const allLoops = () =>
  fs
    .readdirSync('/sys/block')
    .filter((n) => /^loop\d+$/.test(n) && fs.existsSync(`/sys/block/${n}/loop/backing_file`))
    .sort();
const mountsUnder = (dir: string) =>
  fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(dir));
const containers = () => fs.readdirSync(path.join(root, 'containers'));
const MIB = 1024 * 1024;

/** Writes zeros until the root is full; prints dd's exit status and what it said. */
const FILL = 'out=$(dd if=/dev/zero of=/fill bs=64k 2>&1); echo "rc=$?"; echo "$out"; ls -l /fill | awk \'{print "size=" $5}\'';

async function runFill(opts: { remove: boolean; disk: string | number }): Promise<{ out: string; c: Awaited<ReturnType<Runtime['run']>> }> {
  const c = await rt.run({
    image: 'busybox',
    command: ['sh', '-c', FILL],
    remove: opts.remove,
    limits: { disk: opts.disk },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = collect(c.stdout);
  const st = await c.wait();
  expect(st.exitCode).toBe(0);
  return { out: await out, c };
}
const sizeOf = (out: string) => Number(/size=(\d+)/.exec(out)?.[1]);

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-disk-'));
  rt = new Runtime({ root });
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
afterEach(async () => {
  // The loop device goes with the container's mount namespace, which the kernel ends a
  // moment after the container's last process.
  await until('loop devices of the test detached', () => loopsUnder(root).length === 0, 5000);
  expect(mountsUnder(root)).toEqual([]);
});

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');

describe('limits.disk', () => {
  it('parses sizes and refuses what is not one', () => {
    expect(diskLimit(undefined)).toBeUndefined();
    expect(diskLimit({ disk: '64m' })).toBe(64 * MIB);
    expect(diskLimit({ disk: 2 * MIB })).toBe(2 * MIB);
    for (const bad of ['0', '-1', 'abc', '', 0, -1, 1.5, '512k', 1000]) {
      expect(() => diskLimit({ disk: bad })).toThrow(NsboxError);
    }
  });

  it('the CLI: --storage-opt size= and --disk hold the root at the size, df inside shows it', () => {
    for (const flag of [
      ['--storage-opt', 'size=4m'],
      ['--disk', '4m'],
    ]) {
      const r = spawnSync(process.execPath, [MAIN, '--root', root, 'run', '--rm', ...flag, 'busybox', 'sh', '-c', `${FILL}; df -k / | tail -1`], {
        encoding: 'utf8',
      });
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/No space left on device/);
      expect(sizeOf(r.stdout)).toBeLessThanOrEqual(4 * MIB);
      expect(r.stdout).toMatch(/\s4096\s+4096\s+0\s+100%/);
    }
    const bad = spawnSync(process.execPath, [MAIN, '--root', root, 'run', '--rm', '--storage-opt', 'size=0', 'busybox', 'true'], { encoding: 'utf8' });
    expect(bad.status).toBe(125);
    expect(bad.stderr).toMatch(/limits\.disk/);
    expect(containers()).toEqual([]);
  });

  it('--rm: a write loop stops at the limit with ENOSPC, and nothing of it is on the host', async () => {
    const c = await rt.run({
      image: 'busybox',
      remove: true,
      limits: { disk: '64m' },
      stdio: ['ignore', 'pipe', 'pipe'],
      command: ['sh', '-c', `${FILL}; echo filled; sleep 30`],
    });
    let out = '';
    c.stdout!.on('data', (d: Buffer) => (out += d));
    await until('the fill done', () => out.includes('filled'), 20000);
    expect(out).toMatch(/rc=1/);
    expect(out).toMatch(/No space left on device/);
    expect(sizeOf(out)).toBeGreaterThan(60 * MIB);
    expect(sizeOf(out)).toBeLessThanOrEqual(64 * MIB);
    // While it holds 60+ MiB, its directory on the host holds next to nothing (du counts
    // blocks, and the tmpfs is mounted only in the container's namespace).
    const dir = path.join(root, 'containers', c.id!);
    expect(Number(execFileSync('du', ['-sk', dir], { encoding: 'utf8' }).split('\t')[0])).toBeLessThan(256);
    c.kill('SIGKILL');
    await c.wait();
    await until('the --rm container removed', () => containers().length === 0);
  });

  it('--rm: what the write layer holds is charged to limits.memory (no way around it through the tmpfs)', async () => {
    const c = await rt.run({
      image: 'busybox',
      remove: true,
      limits: { disk: '64m', memory: '32m' },
      stdio: ['ignore', 'pipe', 'pipe'],
      command: ['sh', '-c', 'dd if=/dev/zero of=/f bs=1M count=48 2>/dev/null; ls -l /f | awk \'{print "size=" $5}\''],
    });
    const out = collect(c.stdout);
    const st = await c.wait();
    expect(st.oomKilled).toBe(true);
    expect(sizeOf(await out)).toBeLessThan(32 * MIB);
  });

  it('kept: ENOSPC at the limit, the data survives the exit, commit has it, rm removes everything', async () => {
    const loopsBefore = allLoops();
    const fdsBefore = openFds();
    const { out, c } = await runFill({ remove: false, disk: '16m' });
    expect(out).toMatch(/rc=1/);
    expect(out).toMatch(/No space left on device/);
    expect(sizeOf(out)).toBeGreaterThan(12 * MIB);
    expect(sizeOf(out)).toBeLessThanOrEqual(16 * MIB);
    const dir = path.join(root, 'containers', c.id!);
    // A sparse image: what the host holds is what the container wrote, never more than the
    // limit; and nothing else of the container's holds data (du counts blocks).
    const img = fs.statSync(path.join(dir, 'disk.img'));
    expect(img.size).toBe(16 * MIB);
    expect(img.blocks * 512).toBeLessThanOrEqual(16 * MIB + 64 * 1024); // + the host's own extent blocks
    expect(Number(execFileSync('du', ['-sk', dir], { encoding: 'utf8' }).split('\t')[0]) * 1024).toBeLessThan(img.blocks * 512 + 256 * 1024);
    await until('its loop device detached', () => loopsUnder(root).length === 0, 5000);

    // a second write after the exit is refused, and the first one is still there for commit
    const info = await c.commit('disk-snap');
    expect(fs.statSync(path.join(info.rootfs, 'fill')).size).toBe(sizeOf(out));
    expect(loopsUnder(root)).toEqual([]);
    const seen = await rt.run({ image: 'disk-snap', command: ['sh', '-c', "ls -l /fill | awk '{print $5}'"], remove: true });
    const seenOut = collect(seen.stdout);
    await seen.wait();
    expect(Number((await seenOut).trim())).toBe(sizeOf(out));

    await c.remove();
    expect(fs.existsSync(dir)).toBe(false);
    await until('loop devices back as before', () => JSON.stringify(allLoops()) === JSON.stringify(loopsBefore), 5000);
    expect(openFds()).toEqual(fdsBefore);
    await rt.removeImage('disk-snap');
  });

  it('kept: commit of the running container reads what it wrote so far', async () => {
    const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'echo hello > /note; sleep 30'], limits: { disk: '8m' }, stdio: 'ignore' });
    const dir = path.join(root, 'containers', c.id!);
    // while it runs, its image is on exactly one loop device (mounted in its namespace only)
    expect(loopsUnder(root)).toEqual([expect.stringContaining(path.join(dir, 'disk.img'))]);
    expect(mountsUnder(root)).toEqual([]);
    await until('the note written', () => {
      try {
        return spawnSync('sh', ['-c', `cat /proc/${c.pid}/root/note`]).stdout.toString() === 'hello\n';
      } catch {
        return false;
      }
    });
    const info = await c.commit('disk-live');
    expect(fs.readFileSync(path.join(info.rootfs, 'note'), 'utf8')).toBe('hello\n');
    await c.remove({ force: true });
    expect(fs.existsSync(dir)).toBe(false);
    await rt.removeImage('disk-live');
  });

  it('--rm: commit of the running container is refused with a clear error', async () => {
    const c = await rt.run({ image: 'busybox', command: ['sleep', '30'], remove: true, limits: { disk: '4m' }, stdio: 'ignore' });
    await expect(c.commit('never')).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    c.kill('SIGKILL');
    await c.wait();
    expect(rt.images.find('never')).toBeUndefined();
  });

  it('a limit that cannot be applied fails run and leaves nothing', async () => {
    const before = containers();
    const loops = allLoops();
    const fds = openFds();
    const huge = fs.statfsSync(root).blocks * fs.statfsSync(root).bsize * 2;
    const cases: Array<[Parameters<Runtime['run']>[0], string]> = [
      [{ image: 'busybox', command: ['true'], limits: { disk: '0' } }, 'INVALID_ARGUMENT'],
      [{ image: 'busybox', command: ['true'], limits: { disk: '-1' } }, 'INVALID_ARGUMENT'],
      [{ image: 'busybox', command: ['true'], limits: { disk: 'abc' } }, 'INVALID_ARGUMENT'],
      [{ image: 'busybox', command: ['true'], limits: { disk: '64m' }, readOnly: true }, 'INVALID_ARGUMENT'],
      // larger than the host filesystem (kept) or the machine's memory (--rm): never held
      [{ image: 'busybox', command: ['true'], limits: { disk: huge } }, 'ENOSPC'],
      [{ image: 'busybox', command: ['true'], limits: { disk: os.totalmem() * 2 }, remove: true }, 'INVALID_ARGUMENT'],
    ];
    for (const [opts, code] of cases) {
      const err = await rt.run(opts).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(NsboxError);
      expect((err as NsboxError).code).toBe(code);
      expect((err as NsboxError).message).toMatch(/limits\.disk/);
    }
    expect(containers()).toEqual(before);
    expect(allLoops()).toEqual(loops);
    expect(openFds()).toEqual(fds);
  });

  it('Container.start on a bare root refuses limits.disk rather than run unbounded', () => {
    const fds = openFds();
    expect(() => Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['true'], limits: { disk: '8m' } })).toThrow(
      expect.objectContaining({ code: 'UNSUPPORTED', message: expect.stringMatching(/limits\.disk/) }),
    );
    expect(openFds()).toEqual(fds);
  });

  it('a start that fails after the image is mounted leaves no loop device, mount, fd or file', async () => {
    const loops = allLoops();
    const fds = openFds();
    for (const remove of [false, true]) {
      const err = await rt.run({ image: 'busybox', command: ['/no/such/program'], limits: { disk: '4m' }, remove }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(NsboxError);
    }
    expect(containers()).toEqual([]);
    await until('the loop device detached', () => JSON.stringify(allLoops()) === JSON.stringify(loops), 5000);
    expect(openFds()).toEqual(fds);
  });

  it('a committer SIGKILLed in the middle of reading the image leaves no mount and no loop device', async () => {
    // Enough files that the walk takes a while; the committer is killed while it reads.
    const c = await rt.run({
      image: 'busybox',
      limits: { disk: '32m' },
      stdio: 'ignore',
      command: ['sh', '-c', 'for d in $(seq 1 40); do mkdir -p /many/$d; for f in $(seq 1 100); do echo $d$f > /many/$d/$f; done; done'],
    });
    expect((await c.wait()).exitCode).toBe(0);
    await until('its loop device detached', () => loopsUnder(root).length === 0, 5000);
    const script = `
      const { Runtime } = require(${JSON.stringify(distModule('container').replace(/container\.js$/, 'runtime.js'))});
      new Runtime({ root: ${JSON.stringify(root)} }).commit(${JSON.stringify(c.id)}, 'never-done').then(() => console.log('finished'));
    `;
    // Killed from here as soon as the image is on a loop device, i.e. mid-commit.
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    let held = false;
    while (child.exitCode === null && child.signalCode === null && !held) {
      held = loopsUnder(root).length > 0;
      if (!held) await new Promise((res) => setImmediate(res));
    }
    child.kill('SIGKILL');
    const r = await new Promise<{ signal: NodeJS.Signals | null }>((res) => child.on('close', (_code, signal) => res({ signal })));
    expect(held).toBe(true);
    expect(out).toBe('');
    expect(r.signal).toBe('SIGKILL');
    await until('the loop device detached', () => loopsUnder(root).length === 0, 5000);
    expect(mountsUnder(root)).toEqual([]);
    // the container is intact: a commit now works
    const info = await c.commit('disk-after-kill');
    expect(fs.readFileSync(path.join(info.rootfs, 'many/40/50'), 'utf8')).toBe('4050\n');
    await rt.removeImage('disk-after-kill');
    await c.remove();
  });

  it('a SIGKILLed supervisor leaves no loop device and no mount; prune removes the rest', async () => {
    const script = `
      const { Runtime } = require(${JSON.stringify(distModule('container').replace(/container\.js$/, 'runtime.js'))});
      const rt = new Runtime({ root: ${JSON.stringify(root)} });
      rt.run({ image: 'busybox', command: ['sh', '-c', 'echo x > /f; sleep 60'], limits: { disk: '8m' }, stdio: 'ignore' })
        .then((c) => { console.log(c.id); setTimeout(() => process.kill(process.pid, 'SIGKILL'), 200); });
      rt.run({ image: 'busybox', command: ['sleep', '60'], remove: true, limits: { disk: '8m' }, stdio: 'ignore' });
    `;
    const r = await runNode(script, { timeoutMs: 20000 });
    expect(r.signal).toBe('SIGKILL');
    // the containers die with their supervisor (PDEATHSIG), and their loop devices with them
    await until('loop devices detached', () => loopsUnder(root).length === 0, 10000);
    expect(mountsUnder(root)).toEqual([]);
    const pruned = await rt.prune();
    expect(pruned.length).toBeGreaterThan(0);
    expect(containers()).toEqual([]);
  });
});

afterAll(() => {
  // No loop device of this test was left attached (checked against losetup's own view too).
  const losetup = spawnSync('losetup', ['-a'], { encoding: 'utf8' });
  if (losetup.status === 0) expect(losetup.stdout.split('\n').filter((l) => l.includes(root))).toEqual([]);
});
