// limits.disk as pure logic: its size parsing, the write layer's step in the plan (before the
// overlay, after / is made private, nosuid and nodev), and the CLI's spellings of it.
import { describe, expect, it } from 'vitest';

import { parseArgs } from '../../src/cli/args';
import { COMMANDS } from '../../src/cli/specs';
import { NsboxError } from '../../src/errors';
import { cgroupLimits, diskLimit, rlimitsFor, withoutDisk } from '../../src/limits';
import { MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID } from '../../src/native';
import { buildPlan } from '../../src/plan';

const MIB = 1024 * 1024;
const overlay = { type: 'overlay' as const, lower: ['/img'], upper: '/c/layer/upper', work: '/c/layer/work', target: '/c/merged' };

describe('limits.disk', () => {
  it('is bytes or a size, at least 1m', () => {
    expect(diskLimit({ disk: '1m' })).toBe(MIB);
    expect(diskLimit({ disk: '1.5g' })).toBe(1.5 * 1024 * MIB);
    expect(diskLimit({ disk: 64 * MIB })).toBe(64 * MIB);
    for (const bad of ['0', '-1', 'abc', '', '1x', 0, -5, 1.5, MIB - 1, NaN, null, {}]) {
      expect(() => diskLimit({ disk: bad as never })).toThrow(NsboxError);
    }
  });
  it("is the write layer's: never silently dropped where there is none (Container.start)", () => {
    expect(() => cgroupLimits({ disk: '8m' })).toThrow(/limits\.disk: needs a write layer/);
    expect(cgroupLimits(withoutDisk({ disk: '8m', pids: 5 }))).toEqual({ pids: 5 });
    expect(rlimitsFor({ disk: '8m' }, undefined).fsize).toEqual([Infinity, Infinity]);
  });
});

describe('the write layer step', () => {
  it('mounts the write layer after / is private and before the overlay that uses it', () => {
    const plan = buildPlan({
      command: ['true'],
      root: { ...overlay, writeLayer: { fstype: 'tmpfs', options: ['size', String(8 * MIB), 'mode', '755'], target: '/c/layer' } },
    });
    const ops = plan.steps.map((s) => s.op);
    const wl = ops.indexOf('mountWriteLayer');
    expect(ops.indexOf('makeRootPrivate')).toBeLessThan(wl);
    expect(ops[wl + 1]).toBe('mountRootFs');
    const step = plan.steps[wl]!;
    expect(step).toMatchObject({ fstype: 'tmpfs', target: '/c/layer', options: ['size', String(8 * MIB), 'mode', '755'] });
    expect(step.attrs! & (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)).toBe(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    expect(step.fd).toBeUndefined();
  });
  it('passes a mount made by the parent as an fd', () => {
    const plan = buildPlan({ command: ['true'], root: { ...overlay, writeLayer: { fstype: 'ext4', fd: 42, target: '/c/layer' } } });
    expect(plan.steps.find((s) => s.op === 'mountWriteLayer')).toMatchObject({ fd: 42, options: [] });
  });
  it('is not there without limits.disk', () => {
    expect(buildPlan({ command: ['true'], root: overlay }).steps.some((s) => s.op === 'mountWriteLayer')).toBe(false);
  });
});

describe('CLI', () => {
  it('takes --storage-opt size= (docker) and --disk', () => {
    const p = parseArgs(COMMANDS.run, ['--storage-opt', 'size=64m', '--disk', '64m', 'busybox']);
    expect(p.flags['storage-opt']).toEqual(['size=64m']);
    expect(p.flags.disk).toBe('64m');
  });
});
