// Isolation: the container has its own hostname, pid numbering, mount table, root and
// network. Each check compares with the host, so that a missing namespace shows as a failure
// rather than as the host's own view passing for the container's.
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import * as os from 'node:os';
import { describe, expect, it } from 'vitest';

import { Container, ROOTFS, collect, procState, sh } from './helpers';

interface MountEntry {
  dev: string;
  root: string;
  point: string;
  options: string;
  fstype: string;
}

function parseMountinfo(text: string): MountEntry[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const f = line.split(' ');
      const sep = f.indexOf('-');
      return { dev: f[2]!, root: f[3]!, point: f[4]!, options: f[5]!, fstype: f[sep + 1]! };
    });
}

/** Interface names and flags from `ip -o link` ("1: lo: <LOOPBACK,UP,LOWER_UP> ..."). */
function parseLinks(text: string): Map<string, string[]> {
  const links = new Map<string, string[]>();
  for (const line of text.trim().split('\n')) {
    const m = /^\d+:\s+([^:@]+)[^:]*:\s+<([^>]*)>/.exec(line);
    if (m) links.set(m[1]!, m[2]!.split(','));
  }
  return links;
}

const hostHostname = () => readFileSync('/proc/sys/kernel/hostname', 'utf8').trim();

describe('isolation', () => {
  it('sets the hostname inside and leaves the host one alone', async () => {
    const before = hostHostname();
    const name = `nsbox-iso-${process.pid}`;
    expect(before).not.toBe(name);
    const out = await sh('hostname; cat /proc/sys/kernel/hostname; echo "$HOSTNAME"', { hostname: name });
    expect(out.trim().split('\n')).toEqual([name, name, name]);
    expect(hostHostname()).toBe(before);
    expect(os.hostname()).toBe(before);
  });

  it('runs nsbox-init as PID 1 of its own pid namespace, the command as its child', async () => {
    // cat is the command itself: /proc/self is cat, PID 2, a child of nsbox-init (PID 1).
    const out = await sh('exec cat /proc/self/stat');
    expect(out.split(' ')[0]).toBe('2');
    expect(out.split(') ')[1]!.split(' ')[1]).toBe('1');
    expect((await sh('cat /proc/1/comm')).trim()).toBe('nsbox-init');
    // Its arguments (confinement, candidates) are wiped once the command has its copy.
    expect((await sh('tr "\\0" " " < /proc/1/cmdline')).trim()).toBe('nsbox-init');
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '30'], stdio: 'ignore' });
    try {
      // Seen from the host: a child of this process, numbered 1 in its namespace only.
      expect(c.pid).not.toBe(1);
      expect(procState(c.pid)?.ppid).toBe(process.pid);
      const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${c.pid}/status`, 'utf8'))![1]!.split(/\s+/);
      expect(nspid).toEqual([String(c.pid), '1']);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
  });

  it('has its own mount, pid, uts, ipc, net and cgroup namespaces (net shared with host)', async () => {
    const kinds = ['mnt', 'pid', 'uts', 'ipc', 'net', 'cgroup'];
    const ns = (pid: number | 'self') => Object.fromEntries(kinds.map((k) => [k, readlinkSync(`/proc/${pid}/ns/${k}`)]));
    const host = ns('self');
    for (const network of ['none', 'host'] as const) {
      const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '30'], stdio: 'ignore', network });
      try {
        const inside = ns(c.pid);
        for (const k of kinds) {
          if (k === 'net' && network === 'host') expect(inside[k], k).toBe(host[k]);
          else expect(inside[k], `${k} with network ${network}`).not.toBe(host[k]);
        }
      } finally {
        c.kill('SIGKILL');
        await c.wait();
      }
    }
  });

  it("shows only the container's processes in /proc", async () => {
    // nsbox-init (1) and ls (2) are the only processes: /proc lists exactly those.
    const pids = (await sh('exec ls /proc')).split(/\s+/).filter((e) => /^\d+$/.test(e));
    expect(pids).toEqual(['1', '2']);
    // The host's /proc, read the same way, has many (the check is not vacuous).
    expect(readdirSync('/proc').filter((e) => /^\d+$/.test(e)).length).toBeGreaterThan(5);
  });

  it('mounts no host mount inside: / is the rootfs, then its own /proc, /dev, /sys', async () => {
    const host = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    const inside = parseMountinfo(await sh('exec cat /proc/self/mountinfo'));
    const points = inside.map((m) => m.point);

    // A host mount seen inside is the same superblock and root: none may be.
    const hostKeys = new Set(host.map((m) => `${m.dev} ${m.root}`));
    expect(inside.filter((m) => hostKeys.has(`${m.dev} ${m.root}`))).toEqual([]);
    // Nor any of the host's mount points beyond the ones the container mounts afresh.
    const own = ['/', '/proc', '/dev', '/dev/pts', '/dev/shm', '/sys'];
    const hostOnly = host.map((m) => m.point).filter((p) => !own.includes(p));
    expect(hostOnly.length).toBeGreaterThan(0); // e.g. /sys/fs/cgroup/...: something to miss
    expect(points.filter((p) => hostOnly.includes(p))).toEqual([]);
    for (const p of points) expect(p === '/' || /^\/(proc|dev|sys)(\/|$)/.test(p), p).toBe(true);

    // / is the rootfs bound on itself, with nothing stacked under it.
    const root = inside.filter((m) => m.point === '/');
    expect(root).toHaveLength(1);
    expect(root[0]!.root).toBe(ROOTFS);

    const at = (p: string) => inside.find((m) => m.point === p);
    expect(at('/proc')).toMatchObject({ fstype: 'proc' });
    expect(at('/proc')!.options.split(',')).toEqual(expect.arrayContaining(['nosuid', 'nodev', 'noexec']));
    expect(at('/dev')).toMatchObject({ fstype: 'tmpfs' });
    expect(at('/dev')!.options.split(',')).toContain('nosuid');
    expect(at('/dev/pts')).toMatchObject({ fstype: 'devpts' });
    expect(at('/dev/shm')).toMatchObject({ fstype: 'tmpfs' });
    expect(at('/sys')).toMatchObject({ fstype: 'sysfs' });
    expect(at('/sys')!.options.split(',')).toContain('ro');
  });

  it("has the rootfs as / (the fixture's marker file)", async () => {
    expect(existsSync('/etc/nsbox-image')).toBe(false);
    expect(readFileSync(`${ROOTFS}/etc/nsbox-image`, 'utf8').trim()).toBe('nsbox-busybox');
    expect((await sh('cat /etc/nsbox-image')).trim()).toBe('nsbox-busybox');
    // The host's files are not reachable: a path only the host has is missing inside.
    expect(existsSync(__filename)).toBe(true);
    expect((await sh(`[ -e '${__filename}' ] && echo visible || echo missing`)).trim()).toBe('missing');
  });

  it('starts in the working directory asked for', async () => {
    expect((await sh('pwd', { cwd: '/etc' })).trim()).toBe('/etc');
    expect((await sh('pwd')).trim()).toBe('/');
  });

  it('with network none, has only lo, and lo is up', async () => {
    const hostLinks = readdirSync('/sys/class/net');
    expect(hostLinks.filter((l) => l !== 'lo').length).toBeGreaterThan(0); // something to hide
    const links = parseLinks(await sh('ip -o link show', { network: 'none' }));
    expect([...links.keys()]).toEqual(['lo']);
    expect(links.get('lo')).toContain('UP');
    // lo works: a TCP connection to 127.0.0.1 carries a line.
    const echo = await sh(
      'timeout 15 nc -l -p 5555 >/dev/shm/got & ' +
        'for i in $(seq 50); do echo ping-lo | nc -w 1 127.0.0.1 5555 && break; sleep 0.1; done; ' +
        'wait; cat /dev/shm/got',
      { network: 'none' },
    );
    expect(echo.trim()).toBe('ping-lo');
  });

  it("with network host, sees the host's interfaces", async () => {
    const hostLinks = readdirSync('/sys/class/net').sort();
    const links = parseLinks(await sh('ip -o link show', { network: 'host' }));
    expect([...links.keys()].sort()).toEqual(hostLinks);
  });

  it('defaults to network none', async () => {
    const links = parseLinks(await sh('ip -o link show'));
    expect([...links.keys()]).toEqual(['lo']);
  });

  it("keeps the output of a container apart from another one's", async () => {
    // Two at once, each with its own hostname: neither sees the other's.
    const a = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sh', '-c', 'sleep 0.2; hostname'], hostname: 'alpha' });
    const b = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sh', '-c', 'sleep 0.2; hostname'], hostname: 'beta' });
    const [oa, ob] = await Promise.all([collect(a.stdout), collect(b.stdout), a.wait(), b.wait()]);
    expect(oa.trim()).toBe('alpha');
    expect(ob.trim()).toBe('beta');
  });
});
