// Rootless with a subordinate range (src/subid.ts): reading /etc/subuid and /etc/subgid, the
// maps and newuidmap's arguments, the helpers' paths, the start failure. Pure logic;
// test/rootless-subuid.test.ts runs real containers with the range.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { describeFailure } from '../../src/container';
import { MAP_HELPER_FAILED, findHelper, helperArgs, hostIdOf, idMapFromEnv, mapTexts, subidMapOf, waitStatusText } from '../../src/subid';
import { buildPlan } from '../../src/plan';

describe('subordinate ranges', () => {
  it('finds the user by name or by uid, first entry of each file; the shorter count for both', () => {
    const subuid = '# comment\nother:200000:65536\n1001:100000:65536\nalice:300000:65536\n';
    const subgid = 'alice:400000:1000\nalice:500000:65536\n';
    expect(subidMapOf(subuid, subgid, 'alice', 1001, 1002)).toEqual({ uid: 1001, gid: 1002, subuid: 100000, subgid: 400000, count: 1000 });
    expect(subidMapOf(subuid, null, 'alice', 1001, 1002)).toBeUndefined();
    expect(subidMapOf('bob:1:2\n', subgid, 'alice', 1001, 1002)).toBeUndefined();
    // Malformed lines are skipped, as shadow-utils skips them.
    expect(subidMapOf('alice:x:65536\nalice:100000\nalice:100000:0\n', subgid, 'alice', 7, 7)).toBeUndefined();
  });

  it("never takes an entry holding host id 0 (an id inside would be the host's root) or the user's own id (the kernel refuses the overlap): the next one, else none", () => {
    const good = 'alice:100000:65536\n';
    // 0 inside a range, at its start, or the user's own uid 1001 or gid 1002 at its end or within.
    for (const bad of ['alice:0:65536\n', '1001:0:1\n', 'alice:1001:65536\n', 'alice:1:1001\n']) {
      expect(subidMapOf(bad, good, 'alice', 1001, 1002)).toBeUndefined();
      expect(subidMapOf(bad + good, good, 'alice', 1001, 1002)).toMatchObject({ subuid: 100000, count: 65536 });
    }
    expect(subidMapOf(good, 'alice:1002:10\n', 'alice', 1001, 1002)).toBeUndefined();
    expect(subidMapOf(good, 'alice:0:10\nalice:200000:10\n', 'alice', 1001, 1002)).toMatchObject({ subgid: 200000, count: 10 });
    // Next to them is fine: 1 and the ids after the user's.
    expect(subidMapOf('alice:1:1000\n', 'alice:1003:5\n', 'alice', 1001, 1002)).toEqual({ uid: 1001, gid: 1002, subuid: 1, subgid: 1003, count: 5 });
  });

  it("maps the user as 0 and the range as 1..; newuidmap's arguments say the same", () => {
    const m = { uid: 1001, gid: 1002, subuid: 100000, subgid: 200000, count: 65536 };
    expect(mapTexts(m)).toEqual({ uidMap: '0 1001 1\n1 100000 65536\n', gidMap: '0 1002 1\n1 200000 65536\n' });
    expect(helperArgs(m)).toEqual({ uidArgs: ['0', '1001', '1', '1', '100000', '65536'], gidArgs: ['0', '1002', '1', '1', '200000', '65536'] });
    expect([hostIdOf(m, 0), hostIdOf(m, 1), hostIdOf(m, 1000), hostIdOf(m, 65536), hostIdOf(m, 65537)]).toEqual([1001, 100000, 100999, 165535, -1]);
    expect(hostIdOf(m, 1000, true)).toBe(200999);
  });

  describe('NSBOX_ID_MAP', () => {
    const saved = process.env.NSBOX_ID_MAP;
    afterEach(() => {
      if (saved === undefined) delete process.env.NSBOX_ID_MAP;
      else process.env.NSBOX_ID_MAP = saved;
    });
    it("'single', 'subuid', 'auto' or unset; anything else is refused", () => {
      for (const [v, want] of [
        ['single', 'single'],
        ['subuid', 'subuid'],
        ['auto', undefined],
        ['', undefined],
      ] as const) {
        process.env.NSBOX_ID_MAP = v;
        expect(idMapFromEnv()).toBe(want);
      }
      process.env.NSBOX_ID_MAP = 'range';
      expect(() => idMapFromEnv()).toThrow(/NSBOX_ID_MAP: "range"/);
    });
  });

  it('takes a helper only from the given directories, root-owned and writable by nobody else', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'nsbox-subid-'));
    try {
      const a = path.join(dir, 'a');
      const b = path.join(dir, 'b');
      mkdirSync(a);
      mkdirSync(b);
      writeFileSync(path.join(a, 'newuidmap'), '', { mode: 0o777 });
      chmodSync(path.join(a, 'newuidmap'), 0o777); // writable by anyone: never
      writeFileSync(path.join(b, 'newuidmap'), '', { mode: 0o755 });
      const owner = process.geteuid?.() === 0;
      expect(findHelper('newuidmap', [a, b])).toBe(owner ? path.join(b, 'newuidmap') : undefined);
      expect(findHelper('newuidmap', [a])).toBeUndefined();
      expect(findHelper('newgidmap', [a, b])).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a refused newuidmap becomes an error naming it, its arguments and its status; a failure to run it, the errno', () => {
    const m = { uid: 1001, gid: 1001, subuid: 300000, subgid: 300000, count: 65536 };
    const userns = {
      ...mapTexts(m),
      setgroupsDeny: false,
      external: true,
      mapHelper: { newuidmap: '/usr/bin/newuidmap', newgidmap: '/usr/bin/newgidmap', ...helperArgs(m) },
    };
    const plan = buildPlan({
      root: { type: 'bind', path: '/s/img', readonly: true },
      command: ['true'],
      userns,
    });
    expect(plan.userns?.mapHelper?.uidArgs).toEqual(['0', '1001', '1', '1', '300000', '65536']);
    const e = describeFailure(plan, { step: -1, code: 'E?', syscall: 'newuidmap', errno: MAP_HELPER_FAILED + 1 });
    expect(e.message).toBe('start container: newuidmap PID 0 1001 1 1 300000 65536 failed (exit status 1): the range was refused');
    expect(e.hint).toMatch(/300000:65536 in \/etc\/subuid/);
    const g = describeFailure(plan, { step: -1, code: 'ENOENT', syscall: 'newgidmap', errno: 2 });
    expect(g.message).toBe('start container: run newgidmap: ENOENT');
  });
  it("the mapped helper's wait status in words: an exit code, or the signal that killed it (not the raw status)", () => {
    expect(waitStatusText(0)).toBe('exited with status 0');
    expect(waitStatusText(1 << 8)).toBe('exited with status 1');
    expect(waitStatusText(9)).toBe('was killed by SIGKILL');
    expect(waitStatusText(11 | 0x80)).toBe('was killed by SIGSEGV');
  });
});
