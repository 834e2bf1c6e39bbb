// cgroup v2 without a kernel: what each limit writes where, how the files read back are
// parsed, and how the host's mode is told from /proc/self/mountinfo and /proc/self/cgroup.
import { describe, expect, it } from 'vitest';

import {
  cpuSharesToWeight,
  detectCgroupMode,
  kernelAtLeast,
  parseCpuStat,
  parseKeyed,
  oomKillCount,
  parseMemoryPeak,
  parseOomKilled,
  v2LimitFiles,
} from '../../src/cgroup-v2';
import { cgroupLimits, type Limits } from '../../src/limits';
import { buildPlan } from '../../src/plan';

const files = (l: Limits) => v2LimitFiles(cgroupLimits(l)).map((f) => [f.controller, f.file, f.value]);

describe('v2LimitFiles', () => {
  it('memory: memory.max, and no swap unless asked (docker: --memory-swap equal to --memory)', () => {
    expect(files({ memory: '64m' })).toEqual([
      ['memory', 'memory.max', String(64 * 1024 * 1024)],
      ['memory', 'memory.swap.max', '0'],
    ]);
  });

  it('memorySwap is memory + swap (docker), memory.swap.max is the swap alone; -1 is max', () => {
    expect(files({ memory: '64m', memorySwap: '96m' })).toContainEqual(['memory', 'memory.swap.max', String(32 * 1024 * 1024)]);
    expect(files({ memory: '64m', memorySwap: '64m' })).toContainEqual(['memory', 'memory.swap.max', '0']);
    expect(files({ memory: '64m', memorySwap: -1 })).toContainEqual(['memory', 'memory.swap.max', 'max']);
  });

  it('cpus: cpu.max as "quota period" with docker\'s 100 ms period', () => {
    expect(files({ cpus: 0.5 })).toEqual([['cpu', 'cpu.max', '50000 100000']]);
    expect(files({ cpus: 2 })).toEqual([['cpu', 'cpu.max', '200000 100000']]);
  });

  it('cpuShares: cpu.weight converted as crun does (2 -> 1, 1024 -> 39, 262144 -> 10000)', () => {
    expect(files({ cpuShares: 1024 })).toEqual([['cpu', 'cpu.weight', '39']]);
    expect(cpuSharesToWeight(2)).toBe(1);
    expect(cpuSharesToWeight(262144)).toBe(10000);
    expect(cpuSharesToWeight(512)).toBe(1 + Math.floor((510 * 9999) / 262142));
  });

  it('pids and cpuset: pids.max and cpuset.cpus; cpuset first (before any memory setting)', () => {
    expect(files({ pids: 32 })).toEqual([['pids', 'pids.max', '32']]);
    expect(files({ cpuset: '0-1,3', pids: 8 })).toEqual([
      ['cpuset', 'cpuset.cpus', '0-1,3'],
      ['pids', 'pids.max', '8'],
    ]);
  });

  it("cpuTime and per-process limits write nothing (cpu.stat needs no controller; rlimits are nsbox-init's)", () => {
    expect(files({ cpuTime: 2, files: 64, fileSize: '1m' })).toEqual([]);
    expect(files({})).toEqual([]);
  });

  it('everything at once: every file once, each with its controller', () => {
    const all = files({ memory: '1g', memorySwap: '2g', cpus: 1.5, cpuShares: 2048, pids: 100, cpuset: '0' });
    expect(all.map(([, f]) => f).sort()).toEqual(['cpu.max', 'cpu.weight', 'cpuset.cpus', 'memory.max', 'memory.swap.max', 'pids.max']);
    for (const [c, f] of all) expect(f!.startsWith(`${c}.`)).toBe(true);
  });
});

describe('parsing what v2 reports', () => {
  it('memory.events: oomKilled from oom_kill, not from oom or max', () => {
    expect(parseOomKilled('low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n')).toBe(true);
    expect(parseOomKilled('low 0\nhigh 0\nmax 40\noom 0\noom_kill 0\noom_group_kill 0\n')).toBe(false);
    // A near match in another key must not count.
    expect(parseOomKilled('oom_group_kill 3\noom_kill 0\n')).toBe(false);
    expect(parseOomKilled('')).toBe(false);
  });

  it('the OOM kill count, from v2 memory.events and v1 memory.oom_control alike', () => {
    expect(oomKillCount('low 0\nhigh 0\nmax 40\noom 3\noom_kill 2\noom_group_kill 7\n')).toBe(2);
    expect(oomKillCount('oom_kill_disable 0\nunder_oom 0\noom_kill 5\n')).toBe(5);
    expect(oomKillCount('oom_kill_disable 1\nunder_oom 1\n')).toBe(0);
  });

  it('cpu.stat: usage, user and system microseconds', () => {
    const text = 'usage_usec 1503\nuser_usec 1002\nsystem_usec 501\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n';
    expect(parseCpuStat(text)).toEqual({ usageUs: 1503, userUs: 1002, systemUs: 501 });
    expect(parseCpuStat('core_sched.force_idle_usec 0\n')).toEqual({ usageUs: undefined, userUs: undefined, systemUs: undefined });
  });

  it('memory.peak: a number of bytes, else undefined', () => {
    expect(parseMemoryPeak('16773120\n')).toBe(16773120);
    expect(parseMemoryPeak('max\n')).toBeUndefined();
    expect(parseMemoryPeak('')).toBeUndefined();
  });

  it('cgroup.events: populated and frozen', () => {
    expect(parseKeyed('populated 1\nfrozen 0\n')).toEqual(
      new Map([
        ['populated', 1],
        ['frozen', 0],
      ]),
    );
  });
});

// mountinfo lines as the kernel writes them.
const PROC = '22 27 0:21 / /proc rw,relatime - proc proc rw';
const V1 = (n: number, opts: string, where: string) =>
  `${30 + n} 31 0:${30 + n} / /sys/fs/cgroup/${where} rw,nosuid,nodev,noexec,relatime shared:${n} - cgroup cgroup rw,${opts}`;
const V2 = (where: string, root = '/') => `41 31 0:38 ${root} ${where} rw,relatime - cgroup2 cgroup2 rw,nsdelegate`;

describe('detectCgroupMode', () => {
  it('hybrid: v1 controllers and an empty cgroup2 beside (this machine)', () => {
    const mi = [PROC, V1(1, 'cpu', 'cpu'), V1(4, 'memory', 'memory'), V1(9, 'xattr,name=systemd', 'systemd'), V2('/sys/fs/cgroup/unified')].join('\n');
    const cg = '9:name=systemd:/\n4:memory:/a\n1:cpu:/\n0::/\n';
    expect(detectCgroupMode(mi, cg)).toEqual({ mode: 'hybrid', unified: { mount: '/sys/fs/cgroup/unified', path: '/' } });
  });

  it('unified: only cgroup2 (at /sys/fs/cgroup), this process in a systemd scope', () => {
    const mi = [PROC, V2('/sys/fs/cgroup')].join('\n');
    const cg = '0::/user.slice/user-0.slice/session-3.scope\n';
    expect(detectCgroupMode(mi, cg)).toEqual({
      mode: 'unified',
      unified: { mount: '/sys/fs/cgroup', path: '/user.slice/user-0.slice/session-3.scope' },
    });
  });

  it('a v1 mount with no controller (name=systemd) beside cgroup2 is still unified', () => {
    const mi = [PROC, V1(9, 'xattr,name=systemd', 'systemd'), V2('/sys/fs/cgroup/unified')].join('\n');
    expect(detectCgroupMode(mi, '1:name=systemd:/\n0::/x\n').mode).toBe('unified');
  });

  it('legacy: v1 only, or cgroup2 mounted but this process has no 0:: line', () => {
    const v1 = [PROC, V1(1, 'cpu,cpuacct', 'cpu,cpuacct'), V1(4, 'memory', 'memory')].join('\n');
    expect(detectCgroupMode(v1, '4:memory:/\n1:cpu,cpuacct:/\n')).toEqual({ mode: 'legacy' });
    expect(detectCgroupMode(`${v1}\n${V2('/sys/fs/cgroup/unified')}`, '4:memory:/\n')).toEqual({ mode: 'legacy' });
  });

  it("a cgroup2 mount of a subtree (a bind of a child cgroup) is not the hierarchy's root: skipped", () => {
    const mi = [PROC, V2('/some/bind', '/nsbox'), V2('/sys/fs/cgroup')].join('\n');
    expect(detectCgroupMode(mi, '0::/\n').unified?.mount).toBe('/sys/fs/cgroup');
  });

  it('mount points with escaped characters (\\040 for a space) are unescaped', () => {
    const mi = [PROC, V2('/mnt/cgroup\\040two')].join('\n');
    expect(detectCgroupMode(mi, '0::/\n').unified?.mount).toBe('/mnt/cgroup two');
  });
});

describe('kernelAtLeast', () => {
  it('compares major.minor of a release string (CLONE_INTO_CGROUP 5.7, cgroup.kill 5.14)', () => {
    expect(kernelAtLeast('6.18.44-fc-v1045', 5, 14)).toBe(true);
    expect(kernelAtLeast('5.14.0-362.el9.x86_64', 5, 14)).toBe(true);
    expect(kernelAtLeast('5.10.0-28-amd64', 5, 14)).toBe(false);
    expect(kernelAtLeast('5.10.0-28-amd64', 5, 7)).toBe(true);
    expect(kernelAtLeast('4.19.0', 5, 7)).toBe(false);
    expect(kernelAtLeast('garbage', 5, 7)).toBe(false);
  });
});

describe('a plan born in a v2 cgroup', () => {
  const root = { type: 'bind' as const, path: '/img' };
  it('passes the fd on, makes no cgroup namespace at clone, and unshares one as the first step', () => {
    const plan = buildPlan({ root, command: ['sh'], cgroupFd: 42 });
    expect(plan.cgroupFd).toBe(42);
    // clone3 would root a namespace at the cloning thread's cgroup, not the one it is born in.
    expect(plan.newCgroup).toBe(false);
    expect(plan.steps[0]!.op).toBe('unshareCgroupNs');
    expect(plan.steps.filter((s) => s.op === 'unshareCgroupNs')).toHaveLength(1);
  });

  it('with v1 cgroups to join as well: the joins, then one unshare', () => {
    const plan = buildPlan({ root, command: ['sh'], cgroupFd: 42, cgroupProcs: [7, 8] });
    expect(plan.steps.slice(0, 3).map((s) => s.op)).toEqual(['joinCgroup', 'joinCgroup', 'unshareCgroupNs']);
    expect(plan.steps.filter((s) => s.op === 'unshareCgroupNs')).toHaveLength(1);
  });

  it('without: no fd, and the namespace made at clone as before', () => {
    const plan = buildPlan({ root, command: ['sh'] });
    expect(plan.cgroupFd).toBeUndefined();
    expect(plan.newCgroup).toBe(true);
    expect(plan.steps.some((s) => s.op === 'unshareCgroupNs')).toBe(false);
  });
});
