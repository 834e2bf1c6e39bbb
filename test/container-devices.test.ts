// Device nodes (issue 9, item 1): a container's root can make device nodes (CAP_MKNOD, as in
// docker) but none of them opens anything: every mount it can write is nodev, /dev holds
// only the host's own standard nodes bound in, and a device cgroup allows only those. These
// tests make the attack (a node for a host block device, /dev/kmsg, /dev/kvm) everywhere a
// container can write, check the cgroup layer on its own from the host, and that privileged
// and an explicit `devices` entry are the ways around it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DEVICE_ALLOWLIST } from '../src/cgroup';
import { Container } from '../src/container';
import { Runtime } from '../src/runtime';
import { ROOTFS, TARBALL, collect, run, sh } from './helpers';

let work: string;
let rt: Runtime;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'nsbox-devices-'));
  rt = new Runtime({ root: path.join(work, 'state') });
  await rt.import(TARBALL, 'bb');
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * mknod a node in DIR and open it: prints "made", then "open ok" or "open failed". Opening is
 * what nodev and the device cgroup refuse (and what a read of any device needs).
 */
const openIt = (file: string) =>
  `if (exec 3<>${file}) 2>/dev/null || (exec 3>${file}) 2>/dev/null || (exec 3<${file}) 2>/dev/null; then echo open ok; else echo open failed; fi`;
const attack = (dir: string, node: string) => `mknod ${dir}/evil ${node} && echo made; ${openIt(`${dir}/evil`)}; rm -f ${dir}/evil`;

const NODES = { loop0: 'b 7 0', kmsg: 'c 1 11', kvm: 'c 10 232', mem: 'c 1 1' };

describe('device nodes', () => {
  it('a node made on the root, /dev, /dev/shm, /tmp or a volume opens nothing (overlay root)', async () => {
    const volume = path.join(work, 'vol');
    mkdirSync(volume, { recursive: true });
    for (const [name, node] of Object.entries(NODES)) {
      for (const dir of ['', '/dev', '/dev/shm', '/tmp', '/data']) {
        const c = await rt.run({ image: 'bb', command: ['sh', '-c', attack(dir, node)], volumes: [`${volume}:/data`], remove: true });
        const out = collect(c.stdout);
        await c.wait();
        expect(`${name} in ${dir || '/'}: ${await out}`).toBe(`${name} in ${dir || '/'}: made\nopen failed\n`);
      }
    }
  });

  it('the same on a bind-mounted root, and the root and /dev are nodev', async () => {
    expect(await sh(attack('/tmp', NODES.kmsg))).toBe('made\nopen failed\n');
    const mounts = await sh('cat /proc/self/mountinfo');
    const options = (point: string) =>
      mounts
        .split('\n')
        .find((l) => l.split(' ')[4] === point)!
        .split(' ')[5]!;
    expect(options('/').split(',')).toContain('nodev');
    expect(options('/dev').split(',')).toContain('nodev');
    // The bound host nodes themselves keep device access.
    expect(options('/dev/null').split(',')).not.toContain('nodev');
  });

  it("/dev's nodes are the host's own, and nothing else is there", async () => {
    const out = await sh('ls /dev; stat -c "%n %t:%T" /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty');
    expect(out.split('\n').slice(0, -7).sort()).toEqual([
      'fd',
      'full',
      'null',
      'ptmx',
      'pts',
      'random',
      'shm',
      'stderr',
      'stdin',
      'stdout',
      'tty',
      'urandom',
      'zero',
    ]);
    expect(out).toContain('/dev/null 1:3\n/dev/zero 1:5\n/dev/full 1:7\n/dev/random 1:8\n/dev/urandom 1:9\n/dev/tty 5:0\n');
    expect(await sh('echo x > /dev/null && head -c 3 /dev/zero | od -An -tx1')).toBe(' 00 00 00\n');
  });

  it("the device cgroup refuses a node a process in the container's cgroup opens, even on a mount without nodev", async () => {
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '30'], stdio: 'ignore' });
    try {
      const line = readFileSync(`/proc/${c.pid}/cgroup`, 'utf8')
        .split('\n')
        .find((l) => /^\d+:devices:/.test(l))!;
      const dir = path.join('/sys/fs/cgroup/devices', line.split(':')[2]!);
      expect(readFileSync(path.join(dir, 'devices.list'), 'utf8').trim().split('\n')).toEqual(DEVICE_ALLOWLIST);
      // A host shell joins that cgroup, then opens the host's own nodes on the host's devtmpfs.
      const probe = (dev: string) => spawnSync('sh', ['-c', `echo $$ > ${dir}/cgroup.procs && exec 3<${dev}`]).status;
      expect(probe('/dev/zero')).toBe(0);
      expect(probe('/dev/kmsg')).not.toBe(0);
      expect(probe('/dev/mem')).not.toBe(0);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
  });

  it("containers are born in the device cgroup by a thread of nsbox's own: Node's threads keep their devices", async () => {
    const devicesOf = (file: string) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .find((l) => /^\d+:devices:/.test(l))!
        .split(':')[2]!;
    const home = devicesOf('/proc/self/cgroup');
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '30'], stdio: 'ignore' });
    const p = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '30'], stdio: 'ignore', security: { privileged: true } });
    try {
      expect(devicesOf(`/proc/${c.pid}/cgroup`)).toMatch(/\/nsbox\/std$/);
      // A privileged container is born where the supervisor is: no allowlist.
      expect(devicesOf(`/proc/${p.pid}/cgroup`)).toBe(home);
      // Only nsbox's spawner threads moved: the main thread (and Node's others) stayed.
      const threads = readdirSync('/proc/self/task').map((t) => devicesOf(`/proc/self/task/${t}/cgroup`));
      expect(devicesOf(`/proc/self/task/${process.pid}/cgroup`)).toBe(home);
      expect(threads.filter((d) => d !== home).every((d) => d.endsWith('/nsbox/std'))).toBe(true);
      expect(threads.filter((d) => d === home).length).toBeGreaterThan(threads.length / 2);
    } finally {
      c.kill('SIGKILL');
      p.kill('SIGKILL');
      await Promise.all([c.wait(), p.wait()]);
    }
  });

  it('a container with devices of its own has its own cgroup, gone once the container is', async () => {
    const out = await sh('cat /proc/self/cgroup');
    // Inside, the container's cgroup is its root (a cgroup namespace made there).
    expect(out).toMatch(/^\d+:devices:\/$/m);
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '30'], stdio: 'ignore', devices: ['/dev/null:/dev/null2'] });
    const line = readFileSync(`/proc/${c.pid}/cgroup`, 'utf8')
      .split('\n')
      .find((l) => /^\d+:devices:/.test(l))!;
    const dir = path.join('/sys/fs/cgroup/devices', line.split(':')[2]!);
    expect(dir).toMatch(/\/nsbox\/[0-9a-f]{12}$/);
    expect(existsSync(dir)).toBe(true);
    c.kill('SIGKILL');
    await c.wait();
    expect(existsSync(dir)).toBe(false);
  });

  it.skipIf(!existsSync('/dev/fuse'))('devices: a host node named explicitly is bound in and allowed', async () => {
    const r = await run(['sh', '-c', `stat -c "%t:%T" /dev/fuse; ${openIt('/dev/fuse')}`], { devices: ['/dev/fuse'] });
    expect(r.out).toBe('a:e5\nopen ok\n');
    // Its own cgroup, with the allowlist and that node.
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '30'], stdio: 'ignore', devices: ['/dev/fuse'] });
    try {
      const line = readFileSync(`/proc/${c.pid}/cgroup`, 'utf8')
        .split('\n')
        .find((l) => /^\d+:devices:/.test(l))!;
      const list = readFileSync(path.join('/sys/fs/cgroup/devices', line.split(':')[2]!, 'devices.list'), 'utf8')
        .trim()
        .split('\n');
      expect(list).toEqual([...DEVICE_ALLOWLIST, 'c 10:229 rwm']);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
    // Without it, the container has no such node, and making one does not help.
    expect(await sh(`test -e /dev/fuse || echo absent; ${attack('/tmp', 'c 10 229')}`)).toBe('absent\nmade\nopen failed\n');
    // A path that is not a device node is refused before anything starts.
    expect(() => Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['true'], devices: [`${ROOTFS}:/dev/x`] })).toThrow(/not a device node/);
    expect(() => Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['true'], devices: ['/dev/kmsg:/etc/kmsg'] })).toThrow(/must be under \/dev/);
  });

  it('privileged: device nodes work (the one way around it besides devices)', async () => {
    const r = await run(['sh', '-c', attack('/tmp', 'c 1 3')], { security: { privileged: true } });
    expect(r.out).toBe('made\nopen ok\n');
  });

  it.skipIf(!existsSync('/dev/kvm'))('KVM_CREATE_VM is out of reach: no /dev/kvm, and a made one does not open', async () => {
    expect(await sh(`test -e /dev/kvm || echo absent; ${attack('/dev', NODES.kvm)}`)).toBe('absent\nmade\nopen failed\n');
  });
});

// cgroup v2: the same allowlist as a BPF_CGROUP_DEVICE program on the container's own cgroup
// (what a host with only cgroup v2 gets). This machine's unified hierarchy sits beside the v1
// controllers; NSBOX_CGROUP_DEVICES=v2 makes nsbox use it for the devices.
describe.skipIf(!existsSync('/sys/fs/cgroup/unified/cgroup.procs'))('device nodes, cgroup v2 program', () => {
  const unifiedDir = (pid: number) => {
    const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('0::'))!;
    return path.join('/sys/fs/cgroup/unified', line.slice(3));
  };
  let saved: string | undefined;
  beforeAll(() => {
    saved = process.env.NSBOX_CGROUP_DEVICES;
    process.env.NSBOX_CGROUP_DEVICES = 'v2';
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.NSBOX_CGROUP_DEVICES;
    else process.env.NSBOX_CGROUP_DEVICES = saved;
  });

  it("refuses the nodes a process in the container's cgroup opens, allows the standard ones, and goes with the container", async () => {
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '30'], stdio: 'ignore' });
    const dir = unifiedDir(c.pid);
    try {
      expect(dir).toMatch(/\/nsbox\/[0-9a-f]{12}$/);
      const probe = (dev: string) => spawnSync('sh', ['-c', `echo $$ > ${dir}/cgroup.procs && exec 3<${dev}`]).status;
      expect(probe('/dev/zero')).toBe(0);
      expect(probe('/dev/kmsg')).not.toBe(0);
      expect(probe('/dev/mem')).not.toBe(0);
      expect(probe('/dev/loop0')).not.toBe(0);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
    expect(existsSync(dir)).toBe(false);
  });

  it('the container works as usual, and a --device node is allowed by its program', async () => {
    expect(await sh(`echo x > /dev/null && head -c 1 /dev/zero | od -An -tx1; ${attack('/tmp', NODES.kmsg)}`)).toBe(' 00\nmade\nopen failed\n');
    if (existsSync('/dev/fuse')) {
      expect((await run(['sh', '-c', openIt('/dev/fuse')], { devices: ['/dev/fuse'] })).out).toBe('open ok\n');
    }
  });
});
