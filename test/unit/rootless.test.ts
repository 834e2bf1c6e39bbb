// Rootless: the plan of a container in a user namespace of its own, and the state directory
// of a user. Pure logic; test/rootless.test.ts runs real rootless containers.
import { describe, expect, it } from 'vitest';

import { describeFailure } from '../../src/container';
import { defaultRoot } from '../../src/layout';
import { insideId } from '../../src/rootless';
import { buildPlan, mapsId, rootlessUserNs } from '../../src/plan';

const overlay = { type: 'overlay' as const, lower: ['/s/img'], upper: '/s/c/upper', work: '/s/c/work', target: '/s/c/merged' };

describe('rootless plan', () => {
  const userns = rootlessUserNs(1001, 1002);

  it("maps the user's own uid and gid to 0, one id each, with setgroups denied", () => {
    expect(userns).toEqual({ uidMap: '0 1001 1\n', gidMap: '0 1002 1\n', setgroupsDeny: true });
    expect(mapsId(userns.uidMap, 0)).toBe(true);
    expect(mapsId(userns.uidMap, 1)).toBe(false);
    expect(mapsId('0 100000 65536\n', 5)).toBe(true);
    expect(mapsId('0 100000 65536\n', 65536)).toBe(false);
  });

  it('carries the user namespace, mounts the overlay with userxattr, devpts without an unmapped gid', () => {
    const plan = buildPlan({ root: overlay, command: ['sh'], userns });
    expect(plan.userns).toEqual(userns);
    const root = plan.steps.find((s) => s.op === 'mountRootFs')!;
    expect(root.options).toContain('userxattr');
    const pts = plan.steps.find((s) => s.name === 'mount /dev/pts')!;
    expect(pts.options).not.toContain('gid');
    expect(plan.steps.find((s) => s.name === 'mount /sys')!.fstype).toBe('sysfs');
  });

  it("keeps devpts gid 5 where the map has it, and root's plan as it was", () => {
    const wide = { uidMap: '0 100000 65536\n', gidMap: '0 100000 65536\n', setgroupsDeny: false };
    expect(buildPlan({ root: overlay, command: ['sh'], userns: wide }).steps.find((s) => s.name === 'mount /dev/pts')!.options).toContain('gid');
    const asRoot = buildPlan({ root: overlay, command: ['sh'] });
    expect(asRoot.userns).toBeUndefined();
    expect(asRoot.steps.find((s) => s.op === 'mountRootFs')!.options).not.toContain('userxattr');
    expect(asRoot.steps.find((s) => s.name === 'mount /dev/pts')!.options).toContain('gid');
  });

  it("binds the host's /sys read-only with the host's network (a new sysfs needs a network namespace of its own)", () => {
    const plan = buildPlan({ root: overlay, command: ['sh'], userns, network: 'host' });
    const sys = plan.steps.find((s) => s.target === 'sys')!;
    expect(sys).toMatchObject({ op: 'bindInRoot', source: '/sys' });
    expect(sys.attrs! & 1).toBe(1); // MOUNT_ATTR_RDONLY
    expect(buildPlan({ root: overlay, command: ['sh'], network: 'host' }).steps.find((s) => s.target === 'sys')!.op).toBe('mountFs');
  });
});

describe('state directory', () => {
  it('is $NSBOX_ROOT, else /var/lib/nsbox for root, else $XDG_DATA_HOME/nsbox or ~/.local/share/nsbox', () => {
    expect(defaultRoot({ NSBOX_ROOT: '/x' }, 1000, '/home/u')).toBe('/x');
    expect(defaultRoot({}, 0, '/root')).toBe('/var/lib/nsbox');
    expect(defaultRoot({ XDG_DATA_HOME: '/home/u/data' }, 1000, '/home/u')).toBe('/home/u/data/nsbox');
    expect(defaultRoot({ XDG_DATA_HOME: 'relative' }, 1000, '/home/u')).toBe('/home/u/.local/share/nsbox');
    expect(defaultRoot({}, 1000, '/home/u')).toBe('/home/u/.local/share/nsbox');
  });
});

describe('rootless errors and ids', () => {
  const plan = buildPlan({ root: overlay, command: ['sh'], userns: rootlessUserNs(1001, 1001) });

  it('clone refused with a user namespace names user namespaces and the knobs that allow them', () => {
    for (const code of ['EPERM', 'ENOSPC']) {
      const e = describeFailure(plan, { step: -1, syscall: 'clone', code, errno: code === 'EPERM' ? 1 : 28 });
      expect(e.code).toBe(code);
      expect(e.message).toMatch(new RegExp(`^start container: clone: ${code}: rootless \\(uid \\d+\\) needs a user namespace`));
      expect(e.hint).toMatch(/user\.max_user_namespaces.*kernel\.unprivileged_userns_clone.*kernel\.apparmor_restrict_unprivileged_userns/);
    }
    // As root (no user namespace in the plan) a clone failure stays what it was.
    const asRoot = buildPlan({ root: overlay, command: ['sh'] });
    expect(describeFailure(asRoot, { step: -1, syscall: 'clone', code: 'EPERM', errno: 1 }).message).toBe('start container: clone: EPERM');
  });

  it('a failed id map names its file', () => {
    const e = describeFailure(plan, { step: -3, detail: 1, syscall: 'write', code: 'EPERM', errno: 1 });
    expect(e.message).toBe('user namespace: write /proc/self/uid_map: EPERM');
  });

  it('translates a host id into the namespace, and refuses one it does not map', () => {
    expect(insideId('         0       1001          1\n', 1001)).toBe(0);
    expect(insideId('0 1001 1\n1 100000 65536\n', 100004)).toBe(5);
    expect(() => insideId('0 1001 1\n', 0)).toThrow(/not mapped/);
  });
});
