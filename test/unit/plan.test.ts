// Plan building and input validation: pure logic, no containers.
import { describe, expect, it } from 'vitest';

import { NsboxError } from '../../src/errors';
import { buildEnv, buildPlan, containerPath, execCandidates, overlayLowerdir, validateHostname } from '../../src/plan';

const root = { type: 'bind' as const, path: '/srv/rootfs' };

function refused(fn: () => unknown, code: string, message: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(NsboxError);
  expect((err as NsboxError).code).toBe(code);
  expect((err as NsboxError).message).toMatch(message);
}

describe('containerPath', () => {
  it('normalises an absolute path', () => {
    expect(containerPath('/data//sub/./x/', 'v')).toBe('/data/sub/x');
    expect(containerPath('/', 'v')).toBe('/');
  });
  it('refuses relative paths and ..', () => {
    refused(() => containerPath('../../etc', 'volume'), 'INVALID_ARGUMENT', /absolute/);
    refused(() => containerPath('/x/../../..', 'volume'), 'INVALID_ARGUMENT', /'\.\.'/);
    refused(() => containerPath('', 'volume'), 'INVALID_ARGUMENT', /empty/);
    refused(() => containerPath('/a\0b', 'volume'), 'INVALID_ARGUMENT', /NUL/);
  });
});

describe('command lookup', () => {
  it('tries each PATH entry in order', () => {
    expect(execCandidates('sh', '/usr/bin:/bin')).toEqual(['/usr/bin/sh', '/bin/sh']);
    expect(execCandidates('sh', '/usr/bin/::/bin')).toEqual(['/usr/bin/sh', './sh', '/bin/sh']);
  });
  it('takes a path with a slash as it is', () => {
    expect(execCandidates('/bin/true', '/usr/bin')).toEqual(['/bin/true']);
    expect(execCandidates('./run', '/usr/bin')).toEqual(['./run']);
  });
});

describe('environment', () => {
  it('is the defaults plus what is given, nothing from the host', () => {
    process.env.NSBOX_PLAN_TEST_SECRET = 'x';
    const env = buildEnv({ A: '1', PATH: '/bin' }, false, 'h');
    expect(env).toContain('A=1');
    expect(env).toContain('PATH=/bin');
    expect(env).toContain('HOSTNAME=h');
    expect(env.some((e) => e.startsWith('NSBOX_PLAN_TEST_SECRET'))).toBe(false);
    expect(buildEnv({}, true, 'h')).toContain('TERM=xterm');
  });
  it('refuses a key with = or a NUL', () => {
    refused(() => buildEnv({ 'A=B': '1' }, false, 'h'), 'INVALID_ARGUMENT', /without '='/);
    refused(() => buildEnv({ A: 'x\0y' }, false, 'h'), 'INVALID_ARGUMENT', /NUL/);
  });
});

describe('hostname', () => {
  it('accepts up to 64 bytes of a DNS label set', () => {
    expect(validateHostname('a'.repeat(64))).toHaveLength(64);
    refused(() => validateHostname('a'.repeat(300)), 'INVALID_ARGUMENT', /300 bytes, at most 64/);
    refused(() => validateHostname('bad host'), 'INVALID_ARGUMENT', /letters, digits/);
  });
});

describe('overlay lowerdir', () => {
  it("escapes overlay's separator", () => {
    expect(overlayLowerdir(['/a:b', '/c\\d', '/e'])).toBe('/a\\:b:/c\\\\d:/e');
  });
});

describe('buildPlan', () => {
  it('walks root, system mounts, volumes, pivot, network, hostname, cwd in that order', () => {
    const plan = buildPlan({
      root,
      command: ['sh'],
      hostname: 'box',
      cwd: '/tmp',
      mounts: [
        { source: '/h/b', target: '/data/sub', readonly: false },
        { source: '/h/a', target: '/data', readonly: true },
      ],
    });
    const ops = plan.steps.map((s) => s.name);
    expect(ops[0]).toBe('make / private');
    expect(ops[1]).toBe('root /srv/rootfs');
    const pivot = ops.indexOf('pivot_root');
    expect(ops.indexOf('mount /proc')).toBeLessThan(pivot);
    // parents first, so /data/sub lands on the /data volume
    expect(ops.indexOf('volume /data')).toBeLessThan(ops.indexOf('volume /data/sub'));
    expect(ops.indexOf('volume /data/sub')).toBeLessThan(pivot);
    expect(ops.slice(pivot)).toEqual(['pivot_root', 'bring up lo', 'set hostname', 'working directory /tmp']);
    expect(plan.newNet).toBe(true);
    expect(plan.steps.find((s) => s.name === 'volume /data')!.attrs! & 1).toBe(1); // read-only
  });
  it('shares the host network only when asked', () => {
    const plan = buildPlan({ root, command: ['sh'], network: 'host' });
    expect(plan.newNet).toBe(false);
    expect(plan.steps.some((s) => s.op === 'loopbackUp')).toBe(false);
  });
  it('refuses bad input before anything is started', () => {
    refused(() => buildPlan({ root, command: [] }), 'INVALID_ARGUMENT', /non-empty/);
    refused(() => buildPlan({ root, command: ['echo', 'a\0b'] }), 'INVALID_ARGUMENT', /NUL/);
    refused(() => buildPlan({ root, command: ['sh'], hostname: 'x'.repeat(300) }), 'INVALID_ARGUMENT', /hostname/);
    refused(() => buildPlan({ root, command: ['sh'], mounts: [{ source: '/a', target: '/', readonly: false }] }), 'INVALID_ARGUMENT', /cannot be a volume/);
  });
});

describe('storage drivers in the plan', () => {
  it('mounts overlay with the escaped image layer, and aufs as the book does', () => {
    const overlay = buildPlan({ root: { type: 'overlay', lower: ['/img:1'], upper: '/c/upper', work: '/c/work', target: '/c/merged' }, command: ['sh'] });
    expect(overlay.steps[1]).toMatchObject({
      op: 'mountRootFs',
      fstype: 'overlay',
      target: '/c/merged',
      options: ['lowerdir', '/img\\:1', 'upperdir', '/c/upper', 'workdir', '/c/work'],
    });
    const aufs = buildPlan({ root: { type: 'aufs', lower: ['/img'], upper: '/c/upper', target: '/c/merged' }, command: ['sh'] });
    // the write layer rw over the image layer ro
    expect(aufs.steps[1]).toMatchObject({ op: 'mountRootFs', fstype: 'aufs', options: ['br', '/c/upper=rw:/img=ro'] });
  });
});

describe('disposable write layers', () => {
  it('are mounted volatile (never synced), others are not', async () => {
    const { Workspace } = await import('../../src/workspace');
    const ws = new Workspace('/c', '/img', 'overlay');
    const opts = (disposable: boolean) => buildPlan({ root: ws.rootSource(disposable), command: ['sh'] }).steps[1]!.options!;
    expect(opts(true)).toEqual(expect.arrayContaining(['volatile']));
    expect(opts(false)).not.toContain('volatile');
  });
});

describe('the setup cgroup (issue 14: the setup below the loop)', () => {
  const base = { command: ['/bin/true'], root };
  it('leaves it as the last step, and only then makes the cgroup namespace', () => {
    const plan = buildPlan({ ...base, setup: { tasks: '/sys/fs/cgroup/cpu/nsbox-setup/tasks', leaveFd: 41 } });
    expect(plan.setupIn).toBe('/sys/fs/cgroup/cpu/nsbox-setup/tasks');
    // Born in the setup cgroup, a namespace made at clone would be rooted there.
    expect(plan.newCgroup).toBe(false);
    expect(plan.steps.slice(-2)).toEqual([
      { op: 'joinCgroup', name: 'leave the setup cgroup', fd: 41 },
      { op: 'unshareCgroupNs', name: 'cgroup namespace' },
    ]);
    expect(plan.steps.filter((s) => s.op === 'unshareCgroupNs')).toHaveLength(1);
  });
  it("with cgroups of the container's own: joined first, the namespace still after the leave", () => {
    const plan = buildPlan({ ...base, cgroupProcs: [30, 31], setup: { tasks: '/t', leaveFd: 41 } });
    expect(plan.steps.slice(0, 2).map((s) => s.op)).toEqual(['joinCgroup', 'joinCgroup']);
    expect(plan.steps.map((s) => s.op).indexOf('unshareCgroupNs')).toBe(plan.steps.length - 1);
    expect(plan.steps.filter((s) => s.op === 'unshareCgroupNs')).toHaveLength(1);
  });
  it('without cgroup namespaces: the leave only; without a setup cgroup: the plan as before', () => {
    const off = buildPlan({ ...base, cgroupNamespace: false, setup: { tasks: '/t', leaveFd: 41 } });
    expect(off.steps.at(-1)).toEqual({ op: 'joinCgroup', name: 'leave the setup cgroup', fd: 41 });
    expect(off.steps.some((s) => s.op === 'unshareCgroupNs')).toBe(false);
    const none = buildPlan(base);
    expect(none.setupIn).toBeUndefined();
    expect(none.newCgroup).toBe(true);
    expect(none.steps.some((s) => s.op === 'joinCgroup' || s.op === 'unshareCgroupNs')).toBe(false);
  });
});
