// userns 'auto': /etc/subuid parsing, slices, and the choice of a free range (pure).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  DEFAULT_BASE,
  DEFAULT_SLICES,
  RANGE_SIZE,
  DEFAULT_CLAIMS_DIR,
  candidateRanges,
  checkUsernsMode,
  claimIsStale,
  claimTarget,
  claimsDir,
  parseClaim,
  hostId,
  hostIdsInUse,
  idMapText,
  insideIdOf,
  parseSubid,
  pickRange,
  slicesOf,
} from '../../src/userns';

describe('parseSubid', () => {
  it("reads the user's name:start:count lines, and its uid's", () => {
    const text = ['# comment', 'alice:100000:65536', 'nsbox:200000:131072', '', '  nsbox:400000:65536  ', '999:500000:65536', 'nsbox:1:2:3'].join('\n');
    expect(parseSubid(text, 'nsbox')).toEqual([
      { start: 200000, count: 131072 },
      { start: 400000, count: 65536 },
    ]);
    expect(parseSubid(text, 'nsbox', 999)).toContainEqual({ start: 500000, count: 65536 });
    expect(parseSubid(text, 'bob')).toEqual([]);
  });

  it('skips what it cannot trust: non-numbers, empty and out-of-range counts', () => {
    const text = [
      'nsbox:abc:65536',
      'nsbox:100000:',
      'nsbox:100000:0',
      'nsbox:-5:65536',
      'nsbox:4294967000:65536',
      'nsbox:12345678901:1',
      'nsbox:0x10:65536',
    ].join('\n');
    expect(parseSubid(text, 'nsbox')).toEqual([]);
  });
});

describe('slicesOf', () => {
  it('cuts whole slices of 65536 and drops a remainder', () => {
    expect(slicesOf([{ start: 100000, count: 65536 * 2 + 100 }])).toEqual([100000, 165536]);
    expect(slicesOf([{ start: 100000, count: 65535 }])).toEqual([]);
  });

  it("never gives the slice holding id 0: its container's root would be the host's", () => {
    expect(slicesOf([{ start: 0, count: 65536 * 2 }])).toEqual([65536]);
    expect(slicesOf([{ start: 0, count: 65536 }])).toEqual([]);
    // Only nsbox's subgid entry starts at 0: no pair, so the default ranges.
    expect(candidateRanges('nsbox:100000:65536\n', 'nsbox:0:65536\n')[0]).toEqual({ uidBase: DEFAULT_BASE, gidBase: DEFAULT_BASE });
  });

  it('never gives overlapping slices when ranges overlap', () => {
    expect(
      slicesOf([
        { start: 100000, count: 131072 },
        { start: 130000, count: 65536 },
        { start: 231072, count: 65536 },
      ]),
    ).toEqual([100000, 165536, 231072]);
  });
});

describe('candidateRanges and pickRange', () => {
  it('pairs subuid and subgid slices of nsbox in order', () => {
    const c = candidateRanges('nsbox:100000:131072\n', 'nsbox:700000:65536\nnsbox:900000:65536\n');
    expect(c).toEqual([
      { uidBase: 100000, gidBase: 700000 },
      { uidBase: 165536, gidBase: 900000 },
    ]);
  });

  it('falls back to the fixed range without entries in both files', () => {
    for (const [u, g] of [
      [null, null],
      ['nsbox:100000:65536\n', null],
      ['other:100000:65536\n', 'nsbox:100000:65536\n'],
    ] as const) {
      const c = candidateRanges(u, g);
      expect(c).toHaveLength(DEFAULT_SLICES);
      expect(c[0]).toEqual({ uidBase: DEFAULT_BASE, gidBase: DEFAULT_BASE });
      expect(c[1]).toEqual({ uidBase: DEFAULT_BASE + RANGE_SIZE, gidBase: DEFAULT_BASE + RANGE_SIZE });
      // The last id of the last slice is a valid id (below 2^32 - 1).
      expect(c[c.length - 1]!.uidBase + RANGE_SIZE - 1).toBeLessThan(2 ** 32 - 1);
    }
  });

  it('picks the first range whose uid and gid bases are both free', () => {
    const c = [
      { uidBase: 1, gidBase: 10 },
      { uidBase: 2, gidBase: 20 },
      { uidBase: 3, gidBase: 30 },
    ];
    expect(pickRange(c, new Set(), new Set())).toEqual({ uidBase: 1, gidBase: 10, size: RANGE_SIZE });
    expect(pickRange(c, new Set([1]), new Set())).toEqual({ uidBase: 2, gidBase: 20, size: RANGE_SIZE });
    expect(pickRange(c, new Set([1]), new Set([20]))).toEqual({ uidBase: 3, gidBase: 30, size: RANGE_SIZE });
    expect(pickRange(c, new Set([1, 2, 3]), new Set())).toBeUndefined();
  });
});

describe('ids and maps', () => {
  const r = { uidBase: 1 << 30, gidBase: (1 << 30) + RANGE_SIZE, size: RANGE_SIZE };
  it('translates both ways within the range only', () => {
    expect(hostId(r, 0)).toBe(1 << 30);
    expect(hostId(r, 1000, true)).toBe((1 << 30) + RANGE_SIZE + 1000);
    expect(hostId(r, RANGE_SIZE)).toBe(-1);
    expect(insideIdOf(r, (1 << 30) + 5)).toBe(5);
    expect(insideIdOf(r, 0)).toBe(65534);
    expect(insideIdOf(r, (1 << 30) + RANGE_SIZE)).toBe(65534);
  });
  it('writes the map as the kernel takes it', () => {
    expect(idMapText(1 << 30, RANGE_SIZE)).toBe(`0 ${1 << 30} 65536\n`);
  });
  it('checks the mode', () => {
    expect(checkUsernsMode('auto')).toBe('auto');
    expect(checkUsernsMode(undefined)).toBeUndefined();
    expect(() => checkUsernsMode('yes')).toThrow(/'auto'.*or 'host'/);
  });
});

describe('host-wide claims', () => {
  const claim = { uidBase: DEFAULT_BASE, gidBase: DEFAULT_BASE + RANGE_SIZE, id: '0123456789ab', stateDir: '/var/lib/nsbox' };

  it('lives in /var/lib/nsbox-idranges (persistent, one for the host) unless NSBOX_IDRANGES_DIR says', () => {
    expect(claimsDir({})).toBe(DEFAULT_CLAIMS_DIR);
    expect(DEFAULT_CLAIMS_DIR).toBe('/var/lib/nsbox-idranges');
    expect(claimsDir({ NSBOX_IDRANGES_DIR: '' })).toBe(DEFAULT_CLAIMS_DIR);
    expect(claimsDir({ NSBOX_IDRANGES_DIR: '/tmp/c/' })).toBe('/tmp/c');
  });

  it('names its range, container and state directory, and reads back as written', () => {
    expect(claimTarget(claim)).toBe(`${DEFAULT_BASE + RANGE_SIZE}:0123456789ab:/var/lib/nsbox`);
    expect(parseClaim(String(DEFAULT_BASE), claimTarget(claim))).toEqual(claim);
    // A state directory with colons and spaces in its name is still one path.
    const odd = { ...claim, stateDir: '/srv/a:b c/nsbox' };
    expect(parseClaim(String(DEFAULT_BASE), claimTarget(odd))).toEqual(odd);
    // Nor does a newline, or a name made to look like a second claim, split it.
    const forged = { ...claim, stateDir: `/srv/x\n${DEFAULT_BASE}:fedcba987654:/srv/y` };
    expect(parseClaim(String(DEFAULT_BASE), claimTarget(forged))).toEqual(forged);
  });

  it('ignores what is not a claim: the lock, other names, malformed or relative targets', () => {
    const t = claimTarget(claim);
    expect(parseClaim('lock', t)).toBeUndefined();
    expect(parseClaim('12345678901', t)).toBeUndefined();
    expect(parseClaim('-1', t)).toBeUndefined();
    for (const bad of [
      '',
      `${DEFAULT_BASE}:0123456789ab`,
      `${DEFAULT_BASE}:0123456789ab:`,
      `${DEFAULT_BASE}:0123456789ab:var/lib/nsbox`,
      `${DEFAULT_BASE}:0123456789AB:/var/lib/nsbox`,
      `${DEFAULT_BASE}:0123456789a:/var/lib/nsbox`,
      `${DEFAULT_BASE}:0123456789ab:/var/lib/../nsbox`,
      `${DEFAULT_BASE}:0123456789ab:/var/lib/nsbox/`,
      `${DEFAULT_BASE}:0123456789ab://var/lib/nsbox`,
      `x:0123456789ab:/var/lib/nsbox`,
      // The previous version's per-state-directory form: not a host-wide claim.
      `0123456789ab:${DEFAULT_BASE}`,
    ]) {
      expect(parseClaim(String(DEFAULT_BASE), bad)).toBeUndefined();
    }
  });

  it('is taken back only on evidence that its container no longer holds the range', () => {
    expect(claimIsStale(claim, { kind: 'gone' })).toBe(true);
    expect(claimIsStale(claim, { kind: 'record', range: { uidBase: DEFAULT_BASE, gidBase: DEFAULT_BASE + RANGE_SIZE } })).toBe(false);
    // Its record names another range (a release that did not get the lock, the id used again).
    expect(claimIsStale(claim, { kind: 'record', range: { uidBase: DEFAULT_BASE + RANGE_SIZE, gidBase: DEFAULT_BASE + RANGE_SIZE } })).toBe(true);
    expect(claimIsStale(claim, { kind: 'record', range: { uidBase: DEFAULT_BASE, gidBase: DEFAULT_BASE } })).toBe(true);
    // A record without one: a first start has claimed it and not written its record yet.
    expect(claimIsStale(claim, { kind: 'record' })).toBe(false);
    // Unreadable, a bad record, a state directory nsbox would refuse: kept.
    expect(claimIsStale(claim, { kind: 'unknown' })).toBe(false);
  });
});

describe('hostIdsInUse', () => {
  it("reads every process's four uids and gids, and skips what is not a process or is gone", () => {
    const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-proc-'));
    try {
      fs.mkdirSync(path.join(proc, '12'));
      fs.writeFileSync(path.join(proc, '12', 'status'), 'Name:\tsleep\nUid:\t1073741824\t1073741825\t1073741826\t1073741827\nGid:\t5\t6\t7\t8\n');
      fs.mkdirSync(path.join(proc, '13')); // exited meanwhile: no status
      fs.mkdirSync(path.join(proc, 'self'));
      fs.writeFileSync(path.join(proc, 'self', 'status'), 'Uid:\t99\t99\t99\t99\n');
      const r = hostIdsInUse(proc);
      expect(r.uids.sort()).toEqual([1073741824, 1073741825, 1073741826, 1073741827]);
      expect(r.gids.sort()).toEqual([5, 6, 7, 8]);
    } finally {
      fs.rmSync(proc, { recursive: true });
    }
  });
});
