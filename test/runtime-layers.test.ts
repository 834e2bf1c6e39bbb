// The book's chapter 4 flow on overlay: image layer shared and untouched, a write layer per
// container with whiteouts, a second container that sees none of the first one's changes.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { Runtime } from '../src/runtime';
import { collect, unionMounts } from './helpers';

let root: string;
let rt: Runtime;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-layers-'));
  rt = new Runtime({ root });
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
afterEach(() => expect(unionMounts().filter((l) => l.includes(root))).toEqual([]));

function treeDigest(dir: string): string {
  return execFileSync('sh', ['-c', `cd '${dir}' && find . -printf '%p %y %m %s %l\\n' | sort | md5sum`]).toString();
}

async function sh(script: string, extra: Partial<Parameters<Runtime['run']>[0]> = {}) {
  const c = await rt.run({ image: 'busybox', command: ['sh', '-c', script], ...extra });
  const [out, err] = [collect(c.stdout), collect(c.stderr)];
  const status = await c.wait();
  return { c, status, out: await out, err: await err };
}

describe('layers', () => {
  it('writes go to the container layer; the image layer is shared and unchanged', async () => {
    expect(rt.storageDriver).toBe('overlay');
    const image = rt.images.get('busybox');
    const before = treeDigest(image.rootfs);

    const first = await sh('touch /tmp/x && rm /bin/ls && busybox ls /tmp; test -e /bin/ls || echo gone');
    expect(first.status).toMatchObject({ exitCode: 0, signal: null });
    expect(first.out).toBe('x\ngone\n');

    const upper = path.join(root, 'containers', first.c.id!, 'upper');
    expect(fs.existsSync(path.join(upper, 'tmp/x'))).toBe(true);
    // overlay's whiteout: a character device 0:0 where the deleted file was
    const wh = fs.lstatSync(path.join(upper, 'bin/ls'));
    expect(wh.isCharacterDevice()).toBe(true);
    expect(wh.rdev).toBe(0);

    expect(treeDigest(image.rootfs)).toBe(before);
    expect(fs.lstatSync(path.join(image.rootfs, 'bin/ls')).isSymbolicLink()).toBe(true);

    const second = await sh('test -e /tmp/x && echo has-x; test -e /bin/ls && echo has-ls');
    expect(second.out).toBe('has-ls\n');
    await first.c.remove();
    await second.c.remove();
    expect(fs.existsSync(path.join(root, 'containers', first.c.id!))).toBe(false);
  });

  it('keeps each of 20 concurrent containers in its own layer', async () => {
    const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => sh(`echo ${i} > /mine; sleep 0.2; ls / | grep -c '^mine$'; cat /mine`)));
    runs.forEach((r, i) => {
      expect(r.status.exitCode).toBe(0);
      expect(r.out).toBe(`1\n${i}\n`);
      expect(fs.readFileSync(path.join(root, 'containers', r.c.id!, 'upper/mine'), 'utf8')).toBe(`${i}\n`);
    });
    await Promise.all(runs.map((r) => r.c.remove()));
  });

  it('removes itself on exit with remove: true, and wait() resolves after that', async () => {
    const c = await rt.run({ image: 'busybox', command: ['true'], remove: true, stdio: 'ignore' });
    const dir = path.join(root, 'containers', c.id!);
    expect(fs.existsSync(dir)).toBe(true);
    await c.wait();
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('mounts a stopped container on the host for inspection, and unmounts it', async () => {
    const r = await sh('echo inspected > /note');
    const { Workspace } = await import('../src/workspace');
    const ws = new Workspace(path.join(root, 'containers', r.c.id!), rt.images.get('busybox').rootfs, 'overlay');
    const merged = ws.mount();
    try {
      expect(fs.readFileSync(path.join(merged, 'note'), 'utf8')).toBe('inspected\n');
      expect(fs.existsSync(path.join(merged, 'bin/busybox'))).toBe(true);
      expect(unionMounts().some((l) => l.includes(merged))).toBe(true);
    } finally {
      ws.unmount();
    }
    expect(unionMounts().some((l) => l.includes(merged))).toBe(false);
    await r.c.remove();
  });
});

describe('read-only root', () => {
  it('runs on the image layer itself, refusing every write to it', async () => {
    const image = rt.images.get('busybox');
    const before = treeDigest(image.rootfs);
    const vol = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-ro-vol-'));
    try {
      const c = await rt.run({
        image: 'busybox',
        readOnly: true,
        volumes: [`${vol}:/home`],
        command: ['sh', '-c', 'touch /x 2>&1; touch /tmp/x 2>&1; rm /bin/ls 2>&1; echo v > /home/ok && echo volume-ok; echo n > /dev/null && echo dev-ok'],
      });
      const out = collect(c.stdout);
      expect((await c.wait()).exitCode).toBe(0);
      const text = await out;
      expect(text.match(/Read-only file system/g)).toHaveLength(3);
      expect(text).toMatch(/volume-ok\ndev-ok\n$/);
      // no write layer was made for it, and the image is as it was
      expect(fs.readdirSync(path.join(root, 'containers', c.id!)).sort()).toEqual(['container.json']);
      expect(treeDigest(image.rootfs)).toBe(before);
      expect(fs.readFileSync(path.join(vol, 'ok'), 'utf8')).toBe('v\n');
      await c.remove();
    } finally {
      fs.rmSync(vol, { recursive: true, force: true });
    }
  });

  it('names the step when a volume target is missing from the read-only image', async () => {
    const vol = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-ro-vol-'));
    try {
      const before = fs.readdirSync(path.join(root, 'containers'));
      await expect(rt.run({ image: 'busybox', readOnly: true, volumes: [`${vol}:/nowhere`], command: ['true'] })).rejects.toMatchObject({
        code: 'EROFS',
        step: 'volume /nowhere',
      });
      expect(fs.readdirSync(path.join(root, 'containers'))).toEqual(before);
    } finally {
      fs.rmSync(vol, { recursive: true, force: true });
    }
  });
});

describe('a SIGKILLed supervisor', () => {
  it('takes its container with it, leaves no mount, and rm clears the disk', async () => {
    const { spawn } = await import('node:child_process');
    const script = `
      const { Runtime } = require(${JSON.stringify(path.join(__dirname, '..', 'dist'))});
      new Runtime({ root: ${JSON.stringify(root)} }).run({ image: 'busybox', command: ['sleep', '1000'], stdio: 'ignore', name: 'orphan' })
        .then((c) => console.log(c.pid));`;
    const sup = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = Number(await new Promise<string>((resolve) => sup.stdout.once('data', (d: Buffer) => resolve(d.toString()))));
    expect(fs.existsSync(`/proc/${pid}`)).toBe(true);
    sup.kill('SIGKILL');
    const deadline = Date.now() + 5000;
    while (fs.existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(fs.existsSync(`/proc/${pid}`)).toBe(false);
    expect(unionMounts().filter((l) => l.includes(root))).toEqual([]);
    const info = rt.inspect('orphan');
    expect(info.status).toBe('exited');
    await rt.remove('orphan');
    expect(fs.existsSync(path.join(root, 'containers', info.id))).toBe(false);
    expect(fs.existsSync(path.join(root, 'names', 'orphan'))).toBe(false);
  });
});

describe('names and state', () => {
  it('lets exactly one of two runs with the same name win', async () => {
    const results = await Promise.allSettled([
      rt.run({ image: 'busybox', command: ['sleep', '1'], name: 'twin', stdio: 'ignore' }),
      rt.run({ image: 'busybox', command: ['sleep', '1'], name: 'twin', stdio: 'ignore' }),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toMatchObject({ code: 'CONFLICT', message: expect.stringMatching(/name twin: already in use/) });
    const c = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<Runtime['run']>>>).value;
    expect(rt.inspect('twin')).toMatchObject({ id: c.id, status: 'running' });
    await expect(rt.remove('twin')).rejects.toMatchObject({ code: 'IN_USE' });
    await rt.remove('twin', { force: true });
    expect(c.exitStatus).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
    await expect(Promise.resolve().then(() => rt.inspect('twin'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // the name is free again
    const again = await rt.run({ image: 'busybox', command: ['true'], name: 'twin', stdio: 'ignore', remove: true });
    await again.wait();
  });

  it('lists containers with their state, from the records on disk', async () => {
    const done = await sh('exit 3');
    const other = new Runtime({ root });
    const info = other.list({ all: true }).find((c) => c.id === done.c.id)!;
    expect(info).toMatchObject({ status: 'exited', exitCode: 3, image: 'busybox', command: ['sh', '-c', 'exit 3'] });
    expect(other.list().some((c) => c.id === done.c.id)).toBe(false);
    expect(await other.prune()).toContain(done.c.id);
    expect(other.list({ all: true }).some((c) => c.id === done.c.id)).toBe(false);
  });

  it('leaves nothing behind when the command cannot be run', async () => {
    const before = fs.readdirSync(path.join(root, 'containers'));
    await expect(rt.run({ image: 'busybox', command: ['/no/such'], name: 'failing' })).rejects.toMatchObject({ code: 'ENOENT', step: 'exec' });
    expect(fs.readdirSync(path.join(root, 'containers'))).toEqual(before);
    expect(fs.existsSync(path.join(root, 'names', 'failing'))).toBe(false);
    await expect(rt.run({ image: 'nope' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
