// What exec reads of a running container's init, turned into its own confinement, rlimits and
// cgroups (src/exec.ts): pure functions over /proc texts.
import { describe, expect, it } from 'vitest';

import { cgroupJoins, oomCounterFile, rlimitsOf, securityOf } from '../../src/exec';
import { seccompFilter } from '../../src/seccomp';

const STATUS = (o: { uid?: string; prm?: string; bnd?: string; amb?: string; nnp?: string; seccomp?: string } = {}) =>
  [
    'Name:\tnsbox-init',
    `Uid:\t${o.uid ?? '0'}\t${o.uid ?? '0'}\t${o.uid ?? '0'}\t${o.uid ?? '0'}`,
    `Gid:\t${o.uid ?? '0'}\t${o.uid ?? '0'}\t${o.uid ?? '0'}\t${o.uid ?? '0'}`,
    'CapInh:\t0000000000000000',
    `CapPrm:\t${o.prm ?? '00000000a80425fb'}`,
    `CapEff:\t${o.prm ?? '00000000a80425fb'}`,
    `CapBnd:\t${o.bnd ?? '00000000a80425fb'}`,
    `CapAmb:\t${o.amb ?? '0000000000000000'}`,
    `NoNewPrivs:\t${o.nnp ?? '1'}`,
    `Seccomp:\t${o.seccomp ?? '2'}`,
    'Seccomp_filters:\t1',
    '',
  ].join('\n');

describe('securityOf', () => {
  it('a root container: its bounding and permitted sets, ids, no_new_privs, and the filter for its bounding set', () => {
    const s = securityOf(STATUS(), undefined);
    expect(s).toMatchObject({ bounding: [0xa80425fb, 0], effective: [0xa80425fb, 0], noNewPrivs: true, uid: 0, gid: 0 });
    expect(s.ambient).toBeUndefined();
    if (s.seccomp) expect(Buffer.from(s.seccomp)).toEqual(Buffer.from(seccompFilter(process.arch === 'arm64' ? 'aarch64' : 'x86_64', 0xa80425fbn)));
  });

  it('a non-root container keeps its ambient caps; -u 0 gets the bounding set; -u 1000 of a root container gets none', () => {
    const nonRoot = STATUS({ uid: '1000', prm: '0000000000001000', amb: '0000000000001000' });
    expect(securityOf(nonRoot, undefined)).toMatchObject({ uid: 1000, gid: 1000, effective: [0x1000, 0], ambient: [0x1000, 0] });
    expect(securityOf(nonRoot, '1001:1002')).toMatchObject({ uid: 1001, gid: 1002, effective: [0x1000, 0], ambient: [0x1000, 0] });
    const asRoot = securityOf(nonRoot, '0');
    expect(asRoot).toMatchObject({ uid: 0, gid: 0, effective: [0xa80425fb, 0] });
    expect(asRoot.ambient).toBeUndefined();
    const user = securityOf(STATUS(), '1000');
    expect(user).toMatchObject({ uid: 1000, gid: 1000, effective: [0, 0] });
    expect(user.ambient).toBeUndefined();
  });

  it('no filter for an unconfined container; refuses a mode nsbox never sets, and a bad user', () => {
    expect(securityOf(STATUS({ seccomp: '0', nnp: '0' }), undefined)).toMatchObject({ noNewPrivs: false });
    expect(securityOf(STATUS({ seccomp: '0' }), undefined).seccomp).toBeUndefined();
    expect(() => securityOf(STATUS({ seccomp: '1' }), undefined)).toThrow(/seccomp mode 1/);
    expect(() => securityOf(STATUS(), 'root')).toThrow(/UID or UID:GID/);
    expect(() => securityOf(STATUS(), '4294967295')).toThrow(/ids go up to/);
    expect(() => securityOf('Name:\tx\n', undefined)).toThrow(/no CapBnd/);
  });
});

describe('rlimitsOf', () => {
  it('every limit of /proc/PID/limits as nsbox-init options', () => {
    const text = [
      'Limit                     Soft Limit           Hard Limit           Units     ',
      'Max cpu time              unlimited            unlimited            seconds   ',
      'Max core file size        0                    0                    bytes     ',
      'Max processes             789                  789                  processes ',
      'Max open files            123                  456                  files     ',
      'Max realtime timeout      unlimited            unlimited            us        ',
    ].join('\n');
    expect(rlimitsOf(text)).toEqual(['rlimit=0:inf:inf', 'rlimit=4:0:0', 'rlimit=6:789:789', 'rlimit=7:123:456', 'rlimit=15:inf:inf']);
  });
});

describe('cgroupJoins', () => {
  const mountinfo = [
    '30 25 0:26 / /sys/fs/cgroup/devices rw,nosuid - cgroup cgroup rw,devices',
    '31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory',
    '32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct',
    '33 25 0:29 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw',
  ].join('\n');
  const ours = '5:devices:/svc\n4:memory:/svc\n2:cpu,cpuacct:/svc\n0::/svc\n';
  const home = '/sys/fs/cgroup/devices/svc/tasks';

  it('a usual container: born in nsbox/std, nothing to join', () => {
    const theirs = '5:devices:/svc/nsbox/std\n4:memory:/svc\n2:cpu,cpuacct:/svc\n0::/svc\n';
    expect(cgroupJoins(theirs, ours, mountinfo, home)).toEqual({ procs: [], bornIn: '/sys/fs/cgroup/devices/svc/nsbox/std/tasks' });
  });

  it('a container with limits and its own device cgroup: each of its cgroups joined once, cloned from our devices cgroup', () => {
    const theirs = '5:devices:/svc/nsbox/abc\n4:memory:/svc/nsbox/abc\n2:cpu,cpuacct:/svc/nsbox/abc\n0::/svc\n';
    expect(cgroupJoins(theirs, ours, mountinfo, home)).toEqual({
      procs: [
        '/sys/fs/cgroup/devices/svc/nsbox/abc/cgroup.procs',
        '/sys/fs/cgroup/memory/svc/nsbox/abc/cgroup.procs',
        '/sys/fs/cgroup/cpu,cpuacct/svc/nsbox/abc/cgroup.procs',
      ],
      bornIn: home,
    });
  });

  it('a v2 device cgroup of its own is joined', () => {
    const theirs = '5:devices:/svc\n4:memory:/svc\n2:cpu,cpuacct:/svc\n0::/svc/nsbox/abc\n';
    expect(cgroupJoins(theirs, ours, mountinfo, home)).toEqual({ procs: ['/sys/fs/cgroup/unified/svc/nsbox/abc/cgroup.procs'], bornIn: home });
  });

  it('the OOM kill count is read from the v1 memory cgroup, else from the v2 cgroup, else nowhere', () => {
    expect(oomCounterFile('4:memory:/svc/nsbox/abc\n0::/svc\n', mountinfo)).toBe('/sys/fs/cgroup/memory/svc/nsbox/abc/memory.oom_control');
    const v2Only = '33 25 0:29 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw';
    expect(oomCounterFile('0::/svc/nsbox/abc\n', v2Only)).toBe('/sys/fs/cgroup/svc/nsbox/abc/memory.events');
    expect(oomCounterFile('', v2Only)).toBeUndefined();
    // Without a memory cgroup of its own the container shares its supervisor's: not counted.
    expect(oomCounterFile('4:memory:/svc\n0::/svc\n', mountinfo)).toBeUndefined();
    expect(oomCounterFile('0::/svc\n', v2Only, undefined)).toBeUndefined();
    expect(oomCounterFile('0::/svc/given/abc\n', v2Only, '/sys/fs/cgroup/svc/given')).toBe('/sys/fs/cgroup/svc/given/abc/memory.events');
  });
});
