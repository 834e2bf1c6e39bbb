// run's docker habits, parsed without a kernel: -e VAR, --entrypoint, --network, --mount, the
// /etc/hosts steps' place and flags, and image names with an implicit :latest.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import { parseArgs } from '../../src/cli/args';
import { envFrom, mountsFrom, networkFrom, withEntrypoint } from '../../src/cli/run-habits';
import { COMMANDS } from '../../src/cli/specs';
import { validateImageName } from '../../src/image/store';
import { MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, STEP_NO_FOLLOW_FINAL, STEP_TARGET_IS_FILE } from '../../src/native';
import { buildPlan, hostsFile } from '../../src/plan';

describe('run habits', () => {
  it('-e NAME takes the host value or nothing; K=V as given', () => {
    expect(envFrom([], ['A', 'B', 'C=1=2', 'D='], { A: 'a' })).toEqual(['A=a', 'C=1=2', 'D=']);
    expect(() => envFrom([], ['=x'], {})).toThrow(/expected NAME=VALUE or NAME/);
  });

  it('--env-file: comments, blank lines, CRLF, bare names; -e after it', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-envfile-')), 'env');
    fs.writeFileSync(file, '# c\r\n\r\n  A=1\r\nH\r\nGONE\r\n');
    expect(envFrom([file], ['A=2'], { H: 'h' })).toEqual(['A=1', 'H=h', 'A=2']);
    fs.rmSync(path.dirname(file), { recursive: true });
  });

  it('--entrypoint comes first; empty means none', () => {
    expect(withEntrypoint('/bin/echo', ['a', 'b'])).toEqual(['/bin/echo', 'a', 'b']);
    expect(withEntrypoint('', ['ls'])).toEqual(['ls']);
    expect(withEntrypoint(undefined, [])).toEqual([]);
  });

  it('--network is --net', () => {
    expect(networkFrom(undefined, 'host')).toBe('host');
    expect(networkFrom('none', 'none')).toBe('none');
    expect(() => networkFrom('host', 'none')).toThrow(/disagree/);
    expect(() => networkFrom(undefined, 'bridge')).toThrow(/none or host/);
    const p = parseArgs(COMMANDS.run, ['--network=host', '--entrypoint', 'sh', '--env-file', 'f', '--mount', 'type=tmpfs,target=/t', 'img']);
    expect(p.flags).toMatchObject({ network: 'host', entrypoint: 'sh', 'env-file': ['f'], mount: ['type=tmpfs,target=/t'] });
  });

  it('--mount: bind and tmpfs, aliases, and refusals', () => {
    const dir = os.tmpdir();
    expect(
      mountsFrom([
        `type=bind,src=${dir},dst=/a,ro`,
        `type=bind,source=${dir},target=/b,readonly=false`,
        'type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=700',
      ]),
    ).toEqual({
      volumes: [
        { source: dir, target: '/a', readonly: true },
        { source: dir, target: '/b', readonly: false },
      ],
      tmpfs: ['/t:size=1m,mode=700'],
    });
    expect(() => mountsFrom([`type=bind,source=${dir},target=/a,target=/b`])).toThrow(/given twice/);
    expect(() => mountsFrom([`source=${dir},target=/a`])).toThrow(/type=\(missing\): bind or tmpfs/);
    expect(() => mountsFrom([`type=bind,source=${dir},target=/a:b`])).toThrow(/':' is not supported/);
    expect(() => mountsFrom([`type=bind,source=${dir},target=/a,readonly=maybe`])).toThrow(/readonly=maybe/);
    expect(() => mountsFrom(['type=tmpfs,target=/t,source=/x'])).toThrow(/source: not an option of type=tmpfs/);
  });
});

describe('/etc files in the plan', () => {
  it('bound after /sys and before the volumes, as files, never through a final link', () => {
    const plan = buildPlan({
      root: { type: 'bind', path: '/r' },
      command: ['sh'],
      etcFiles: [{ source: '/state/c/hosts', target: '/etc/hosts' }],
      mounts: [{ source: '/data', target: '/etc', readonly: false }],
    });
    const names = plan.steps.map((s) => s.name);
    const at = names.indexOf('bind /etc/hosts');
    expect(at).toBeGreaterThan(names.indexOf('mount /sys'));
    expect(at).toBeLessThan(names.indexOf('volume /etc'));
    const step = plan.steps[at]!;
    expect(step).toMatchObject({ op: 'bindInRoot', source: '/state/c/hosts', target: 'etc/hosts' });
    expect(step.flags).toBe(STEP_NO_FOLLOW_FINAL | STEP_TARGET_IS_FILE);
    expect(step.attrs).toBe(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  });

  it('hosts names localhost and the hostname, which must be a hostname', () => {
    expect(hostsFile('box')).toMatch(/^127\.0\.0\.1\tlocalhost\n[\s\S]*\n127\.0\.1\.1\tbox\n$/);
    expect(() => hostsFile('a b\n1.2.3.4 evil')).toThrow(/hostname/);
  });
});

describe('image names', () => {
  it(':latest is implicit', () => {
    expect(validateImageName('busybox:latest')).toBe('busybox');
    expect(validateImageName('busybox')).toBe('busybox');
    expect(validateImageName('debian:12')).toBe('debian:12');
    expect(validateImageName('x:latest2')).toBe('x:latest2');
    expect(() => validateImageName(':latest')).toThrow(/image name/);
  });
});
