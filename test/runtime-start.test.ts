// start, restart, inspect (issue 12, item 5): an exited container runs again on its own write
// layer with the configuration it was run with; a running one, a --rm one and one recorded
// before nsbox kept the configuration are refused clearly; nothing is left behind.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { Runtime } from '../src/runtime';
import { collect, openFds, unionMounts, until } from './helpers';

let base: string;
let rt: Runtime;

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-start-'));
  rt = new Runtime({ root: path.join(base, 'root') });
});
afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

async function output(c: Awaited<ReturnType<Runtime['start']>>): Promise<{ out: string; err: string; code: number | null }> {
  const [out, err, s] = await Promise.all([collect(c.stdout), collect(c.stderr), c.wait()]);
  return { out, err, code: s.exitCode };
}

async function rejection(p: Promise<unknown>): Promise<NsboxError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof NsboxError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

describe('start', () => {
  it('runs an exited container again on its own write layer, with its recorded configuration', async () => {
    const vol = path.join(base, 'vol');
    const script =
      'echo "$GREETING $(pwd) $(hostname) $(id -u)" ; cat /kept 2>/dev/null || echo none; echo run >> /vol/runs; ' +
      'grep -c " /scratch " /proc/mounts; ulimit -c; echo written > /kept';
    const c = await rt.run({
      image: 'busybox',
      name: 'again',
      command: ['sh', '-c', script],
      env: { GREETING: 'hi' },
      cwd: '/tmp',
      hostname: 'box',
      volumes: [`${vol}:/vol`],
      tmpfs: { '/scratch': '1m' },
      security: { user: '1000', capAdd: ['DAC_OVERRIDE'] },
      limits: { pids: 64 },
      ulimits: { core: [Infinity, Infinity] },
    });
    fs.chmodSync(vol, 0o777);
    const first = await output(c);
    const fdsBefore = openFds();
    const mountsBefore = unionMounts().length;
    const again = await rt.start('again', { attach: true });
    expect(again.name).toBe('again');
    const second = await output(again);
    // What the first run wrote is there; the environment, cwd, hostname, user, volume and
    // tmpfs are as they were.
    expect(first.out).toBe('hi /tmp box 1000\nnone\n1\nunlimited\n');
    expect(second).toMatchObject({ code: 0, out: 'hi /tmp box 1000\nwritten\n1\nunlimited\n' });
    expect(fs.readFileSync(path.join(vol, 'runs'), 'utf8')).toBe('run\nrun\n');
    const info = rt.inspect('again');
    expect(info).toMatchObject({
      status: 'exited',
      exitCode: 0,
      oomKilled: false,
      name: 'again',
      image: 'busybox',
      config: {
        env: { GREETING: 'hi' },
        cwd: '/tmp',
        hostname: 'box',
        network: 'none',
        tty: false,
        security: { user: '1000' },
        limits: { pids: 64 },
        ulimits: { core: [-1, -1] },
      },
      mounts: [
        { type: 'bind', source: vol, target: '/vol', readonly: false },
        { type: 'tmpfs', target: '/scratch', size: 1024 * 1024 },
      ],
    });
    expect(Date.parse(info.startedAt!)).toBeGreaterThanOrEqual(Date.parse(info.created));
    expect(openFds()).toEqual(fdsBefore);
    expect(unionMounts().length).toBe(mountsBefore);
    await rt.remove('again');
  });

  it('of a running container fails clearly, and a restart stops it first', async () => {
    const c = await rt.run({ image: 'busybox', name: 'busy', command: ['sh', '-c', 'echo $$ > /pids; exec sleep 100'], stdio: 'ignore' });
    const e = await rejection(rt.start('busy'));
    expect(e).toMatchObject({ code: 'IN_USE', message: 'container busy is running: not started again' });
    expect(c.running).toBe(true);
    // Two starts at once of an exited container: one runs it, the other finds it running.
    c.kill('SIGKILL');
    await c.wait();
    const both = await Promise.allSettled([rt.start('busy'), rt.start('busy')]);
    expect(both.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(((both.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as NsboxError).code).toBe('IN_USE');
    const restarted = await rt.restart('busy', { timeout: 200 });
    expect(restarted.running).toBe(true);
    expect(rt.inspect('busy').status).toBe('running');
    await rt.remove('busy', { force: true });
  });

  it('refuses a --rm container, a record without its configuration, a removed image', async () => {
    const gone = await rt.run({ image: 'busybox', command: ['true'], remove: true, stdio: 'ignore' });
    await gone.wait();
    expect((await rejection(rt.start(gone.id!))).code).toBe('NOT_FOUND');

    const old = await rt.run({ image: 'busybox', name: 'old', command: ['true'], stdio: 'ignore' });
    await old.wait();
    const file = path.join(rt.layout.containerDir(old.id!), 'container.json');
    const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    delete rec.config; // as nsbox wrote records before it kept the configuration
    fs.writeFileSync(file, JSON.stringify(rec));
    const e = await rejection(new Runtime({ root: rt.root }).start('old'));
    expect(e.code).toBe('BAD_STATE');
    expect(e.message).toMatch(/its record is from an nsbox that did not keep how it was run: it cannot be started again/);
    expect(rt.inspect('old')).toMatchObject({ status: 'exited', config: null });

    await rt.images.import(process.env.NSBOX_TEST_TARBALL!, 'short-lived');
    const orphan = await rt.run({ image: 'short-lived', name: 'orphan', command: ['true'], stdio: 'ignore' });
    await orphan.wait();
    await rt.removeImage('short-lived', { force: true });
    expect((await rejection(rt.start('orphan'))).message).toMatch(/its image short-lived was removed/);
    for (const n of ['old', 'orphan']) await rt.remove(n);
    expect(fs.readdirSync(path.join(rt.root, 'locks'))).toEqual([]);
  });

  it('a start that fails (a write layer holding a link at /etc/hosts) leaves the container exited and nothing behind', async () => {
    // The running container cannot unlink /etc/hosts (a mount point: EBUSY), so the link is
    // planted in its write layer from here, as a layer from elsewhere could hold it.
    const c = await rt.run({ image: 'busybox', name: 'saboteur', command: ['sh', '-c', 'rm -f /etc/hosts || echo pinned'] });
    expect((await output(c)).out).toBe('pinned\n');
    const upper = path.join(rt.layout.containerDir(c.id!), 'upper', 'etc', 'hosts');
    fs.rmSync(upper);
    fs.symlinkSync('/etc/passwd', upper);
    const fds = openFds();
    const e = await rejection(rt.start('saboteur', { attach: true }));
    expect(e.message).toMatch(/bind \/etc\/hosts: openat2 \/etc\/hosts: ELOOP/);
    expect(rt.inspect('saboteur')).toMatchObject({ status: 'exited' });
    expect(openFds()).toEqual(fds);
    await rt.remove('saboteur');
  });

  it('a container whose supervisor was killed starts again (its cgroup left behind is no obstacle)', async () => {
    const dist = path.join(__dirname, '..', 'dist');
    const script = `const { Runtime } = require(${JSON.stringify(dist)});
      (async () => {
        const c = await new Runtime({ root: ${JSON.stringify(rt.root)} }).run({ image: 'busybox', name: 'orphaned', command: ['sleep', '100'], limits: { memory: '32m', pids: 20 }, stdio: 'ignore' });
        process.stdout.write(c.id + '\\n');
      })();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const id = await new Promise<string>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
    child.kill('SIGKILL');
    await until('the container to die with its supervisor', () => rt.inspect(id).status === 'exited');
    const r = await output(
      await rt.start('orphaned', { attach: true }).then((c) => {
        c.kill('SIGTERM');
        return c;
      }),
    );
    expect(r.code).toBe(null);
    expect(rt.inspect('orphaned')).toMatchObject({ status: 'exited', signal: 'SIGTERM', config: { limits: { memory: '32m', pids: 20 } } });
    await rt.remove('orphaned');
  });

  it('a container run by another process is started once its supervisor recorded the exit', async () => {
    const c = await rt.run({
      image: 'busybox',
      name: 'handed',
      command: ['sh', '-c', 'n=$(cat /n 2>/dev/null || echo 0); echo $((n + 1)) > /n; cat /n'],
      stdio: 'ignore',
    });
    await c.wait();
    const other = new Runtime({ root: rt.root });
    for (let i = 2; i <= 4; i++) {
      const r = await output(await other.start('handed', { attach: true }));
      expect(r.out).toBe(`${i}\n`);
    }
    await until('the exit recorded', () => rt.inspect('handed').status === 'exited');
    await rt.remove('handed');
  });
});

describe('start, detached and with a disk limit', () => {
  it("detach: runs under a monitor, and the last detached run's exit status is not this run's", async () => {
    const d = await rt.run({
      image: 'busybox',
      name: 'bg',
      command: ['sh', '-c', 'if [ -e /ran ]; then sleep 2; exit 5; fi; touch /ran; exit 4'],
      detach: true,
    });
    expect((await rt.wait(d.id)).exitCode).toBe(4);
    expect(fs.existsSync(path.join(base, 'root', 'containers', d.id, 'exit.json'))).toBe(true);
    const fdsBefore = openFds();
    // A second run that lasts: were the first run's exit.json taken for this run's end, it
    // would show as exited at once.
    await rejection(rt.start('bg', { detach: true, attach: true }));
    const again = await rt.start('bg', { detach: true });
    expect(again.monitorPid).toBeGreaterThan(0);
    expect(rt.inspect('bg').status).toBe('running');
    expect(rt.inspect('bg').supervisor).toBe(again.monitorPid);
    expect(openFds()).toEqual(fdsBefore);
    expect((await rt.wait('bg')).exitCode).toBe(5);
    await rt.remove('bg');
  });

  it('a stale exit.json from before a start is not merged into the new run', async () => {
    const c = await rt.run({ image: 'busybox', name: 'stale', command: ['true'] });
    await c.wait();
    const dir = path.join(base, 'root', 'containers', c.id!);
    const again = await rt.start('stale', { attach: true, detach: false });
    // What a crash between the removal and the start could leave: an older run's end.
    fs.writeFileSync(
      path.join(dir, 'exit.json'),
      JSON.stringify({ exitCode: 9, signal: null, finishedAt: '2020-01-01T00:00:00.000000000Z', userUs: 0, systemUs: 0, maxRssKiB: 0, oomKilled: false }),
    );
    expect(rt.inspect('stale').exitCode).toBe(null);
    expect((await again.wait()).exitCode).toBe(0);
    await rt.remove('stale');
  });

  it('a kept container with limits.disk starts again on its own image, still bounded', async () => {
    // First run: 8 MiB written. Second run: the file is still there, and 64 MiB more fail.
    const script =
      'if [ -e /fill ]; then echo kept; dd if=/dev/zero of=/more bs=1M count=64 2>&1 | grep -c "No space left"; ' +
      'else dd if=/dev/zero of=/fill bs=1M count=8 2>/dev/null; echo first; fi';
    const c = await rt.run({ image: 'busybox', name: 'bounded', command: ['sh', '-c', script], limits: { disk: '16m' } });
    expect((await output(c as Awaited<ReturnType<Runtime['start']>>)).out).toBe('first\n');
    const fdsBefore = openFds();
    const again = await rt.start('bounded', { attach: true });
    expect((await output(again)).out).toBe('kept\n1\n');
    expect(openFds()).toEqual(fdsBefore);
    await rt.remove('bounded');
  });
});
