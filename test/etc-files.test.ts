// /etc/hosts, /etc/hostname and, with the host's network, /etc/resolv.conf (issue 12, item 7):
// every container gets them; writing them touches neither a host file nor the image; an image
// whose file is a link (or whose /etc is) gets nothing bound through it.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Runtime, type RunOptions } from '../src/runtime';
import { ROOTFS, collect } from './helpers';

let base: string;
let rt: Runtime;

/** An image from the busybox fixture, changed by `edit` (run on a copy of its root). */
async function image(name: string, edit: (root: string) => void): Promise<void> {
  const dir = path.join(base, `src-${name}`);
  execFileSync('cp', ['-a', ROOTFS, dir]);
  edit(dir);
  const tar = path.join(base, `${name}.tar`);
  execFileSync('tar', ['--numeric-owner', '-C', dir, '-cf', tar, '.']);
  await rt.import(tar, name);
}

async function sh(script: string, options: Partial<RunOptions> = {}): Promise<string> {
  const c = await rt.run({ image: 'busybox', command: ['sh', '-c', script], remove: true, ...options });
  const [out, err, s] = await Promise.all([collect(c.stdout), collect(c.stderr), c.wait()]);
  if (s.exitCode !== 0) throw new Error(`exit ${s.exitCode}: ${err}`);
  return out;
}

beforeAll(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-etc-'));
  rt = new Runtime({ root: path.join(base, 'root') });
  await image('with-hosts', (r) => fs.writeFileSync(path.join(r, 'etc', 'hosts'), 'IMAGE\n'));
  await image('hosts-link', (r) => fs.symlinkSync('/etc/passwd', path.join(r, 'etc', 'hosts')));
  await image('etc-link', (r) => {
    fs.renameSync(path.join(r, 'etc'), path.join(r, 'etc.real'));
    fs.symlinkSync('/etc.real', path.join(r, 'etc'));
  });
});
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

describe('/etc/hosts and /etc/hostname', () => {
  it('name localhost and the container', async () => {
    const out = await sh('cat /etc/hosts; echo --; cat /etc/hostname', { hostname: 'box' });
    const [hosts, hostname] = out.split('--\n') as [string, string];
    expect(hosts).toMatch(/^127\.0\.0\.1\tlocalhost$/m);
    expect(hosts).toMatch(/^::1\tlocalhost /m);
    expect(hosts).toMatch(/^127\.0\.1\.1\tbox$/m);
    expect(hostname).toBe('box\n');
    // The default hostname, the id, is named too.
    const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'grep -c "^127.0.1.1	$(hostname)$" /etc/hosts'], stdio: ['ignore', 'pipe', 'ignore'] });
    expect(await collect(c.stdout)).toBe('1\n');
    await c.wait();
    expect(fs.readFileSync(path.join(rt.layout.containerDir(c.id!), 'hostname'), 'utf8')).toBe(`${c.id}\n`);
    await rt.remove(c.id!);
  });

  it('are bound nosuid, nodev, noexec', async () => {
    const out = await sh('grep -E " /etc/(hosts|hostname) " /proc/self/mountinfo');
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l.split(' ')[5]).toMatch(/^rw,nosuid,nodev,noexec/);
  });

  it('writing them changes neither the host nor the image nor the write layer', async () => {
    const hostHosts = fs.readFileSync('/etc/hosts');
    const hostHostname = fs.readFileSync('/etc/hostname');
    const c = await rt.run({
      image: 'with-hosts',
      command: ['sh', '-c', 'echo 10.0.0.9 evil >> /etc/hosts; echo evil > /etc/hostname; cat /etc/hosts'],
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const out = await collect(c.stdout);
    await c.wait();
    expect(out).toMatch(/10\.0\.0\.9 evil/);
    expect(out).not.toMatch(/IMAGE/); // nsbox's file, not the image's, is what it sees
    expect(fs.readFileSync('/etc/hosts')).toEqual(hostHosts);
    expect(fs.readFileSync('/etc/hostname')).toEqual(hostHostname);
    expect(fs.readFileSync(path.join(rt.images.get('with-hosts').rootfs, 'etc', 'hosts'), 'utf8')).toBe('IMAGE\n');
    // The write went to the container's own copy; its write layer holds no change of /etc/hosts.
    const dir = rt.layout.containerDir(c.id!);
    expect(fs.readFileSync(path.join(dir, 'hosts'), 'utf8')).toMatch(/10\.0\.0\.9 evil/);
    expect(fs.existsSync(path.join(dir, 'upper', 'etc', 'hosts'))).toBe(false);
    // A new container of the image sees nsbox's file again; the image's is still the image's.
    expect(await sh('cat /etc/hosts', { image: 'with-hosts' })).not.toMatch(/evil|IMAGE/);
    await rt.remove(c.id!);
  });

  it('an image whose /etc/hosts or /etc is a link gets nothing bound through it', async () => {
    const passwd = fs.readFileSync('/etc/passwd');
    // The link resolves inside the container's root: its own passwd, untouched by nsbox.
    expect(await sh('cat /etc/hosts; grep -c " /etc/hosts " /proc/self/mountinfo || true', { image: 'hosts-link' })).toBe(
      `${fs.readFileSync(path.join(ROOTFS, 'etc', 'passwd'), 'utf8')}0\n`,
    );
    expect(await sh('ls /etc.real; grep -c " /etc" /proc/self/mountinfo || true', { image: 'etc-link' })).toMatch(/passwd\n.*0\n$/s);
    expect(fs.readFileSync('/etc/passwd')).toEqual(passwd);
  });

  it('with --read-only: bound where the image has them, left out where it does not', async () => {
    // with-hosts has /etc/hosts but no /etc/hostname.
    expect(await sh('cat /etc/hosts; ls /etc/hostname 2>&1 || true', { image: 'with-hosts', readOnly: true, hostname: 'ro' })).toMatch(
      /127\.0\.1\.1\tro\n.*No such file/s,
    );
    expect(await sh('ls /etc/hosts 2>&1 || true', { readOnly: true })).toMatch(/No such file/);
    expect(fs.existsSync(path.join(rt.images.get('busybox').rootfs, 'etc', 'hosts'))).toBe(false);
  });
});

describe('/etc/resolv.conf', () => {
  it("is the host's with --net host, and absent without", async () => {
    const host = fs.readFileSync('/etc/resolv.conf', 'utf8');
    expect(await sh('cat /etc/resolv.conf', { network: 'host' })).toBe(host);
    expect(await sh('ls /etc/resolv.conf 2>&1 || true')).toMatch(/No such file/);
    // Written to in the container: the host's stays as it was.
    await sh('echo nameserver 6.6.6.6 >> /etc/resolv.conf', { network: 'host' });
    expect(fs.readFileSync('/etc/resolv.conf', 'utf8')).toBe(host);
  });
});
