// rt.output() (issue 11, item 6): run to completion with input, both streams collected, a cap
// per stream that kills the container and says `truncated`; and tmpfs mounts of the
// container's own with a size that holds (ENOSPC inside) and nodev/nosuid.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Runtime } from '../src/runtime';
import { TARBALL } from './helpers';

let work: string;
let rt: Runtime;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'nsbox-output-'));
  rt = new Runtime({ root: path.join(work, 'state') });
  await rt.import(TARBALL, 'bb');
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('output()', () => {
  it('passes input, keeps stdout and stderr apart, and removes the container', async () => {
    const r = await rt.output({ image: 'bb', command: ['sh', '-c', 'tr a-z A-Z; echo oops >&2; exit 3'], input: 'hello\n' });
    expect(r).toMatchObject({ exitCode: 3, signal: null, truncated: false, oomKilled: false, timedOut: false });
    expect(r.stdout.toString()).toBe('HELLO\n');
    expect(r.stderr.toString()).toBe('oops\n');
    expect(r.usage.wallMs).toBeGreaterThan(0);
    expect(readdirSync(path.join(work, 'state', 'containers'))).toEqual([]);
  });

  it('maxOutput cuts `yes` at the cap and kills the container', async () => {
    const r = await rt.output({ image: 'bb', command: ['yes'], maxOutput: 4096 });
    expect(r.truncated).toBe(true);
    expect(r.stdout.length).toBe(4096);
    expect(r.stdout.toString().split('\n').slice(0, 3)).toEqual(['y', 'y', 'y']);
    expect(r.signal).toBe('SIGKILL');
  });

  it('kills the container when the output meets the cap exactly and then goes on', async () => {
    // The first read is the cap to the byte; the kill must still come with the next one.
    const r = await rt.output({ image: 'bb', command: ['sh', '-c', 'head -c 4096 /dev/zero; sleep 0.3; exec yes'], maxOutput: 4096 });
    expect(r.truncated).toBe(true);
    expect(r.stdout.length).toBe(4096);
    expect(r.signal).toBe('SIGKILL');
  });

  it('maxOutput 0 keeps nothing and kills at the first byte; output that ends at the cap is not truncated', async () => {
    const zero = await rt.output({ image: 'bb', command: ['yes'], maxOutput: 0 });
    expect(zero).toMatchObject({ truncated: true, signal: 'SIGKILL' });
    expect(zero.stdout.length).toBe(0);
    const exact = await rt.output({ image: 'bb', command: ['head', '-c', '4096', '/dev/zero'], maxOutput: 4096 });
    expect(exact).toMatchObject({ truncated: false, exitCode: 0 });
    expect(exact.stdout.length).toBe(4096);
  });

  it('with a timeout, says timedOut', async () => {
    const r = await rt.output({ image: 'bb', command: ['sleep', '10'], timeout: 200 });
    expect(r).toMatchObject({ timedOut: true, signal: 'SIGKILL' });
  });

  it('refuses options of the wrong type', async () => {
    await expect(rt.output({ image: 'bb', maxOutput: -1 })).rejects.toThrow(/maxOutput/);
    await expect(rt.output({ image: 'bb', input: 42 as never })).rejects.toThrow(/input/);
  });
});

describe('tmpfs', () => {
  it('a sized tmpfs fills up with ENOSPC inside, and is nodev and nosuid', async () => {
    const r = await rt.output({
      image: 'bb',
      tmpfs: { '/scratch': '1m' },
      command: [
        'sh',
        '-c',
        'dd if=/dev/zero of=/scratch/f bs=64k count=64 2>&1 | grep -v records; stat -c %a /scratch; stat -c %s /scratch/f; grep " /scratch " /proc/self/mountinfo',
      ],
    });
    const out = r.stdout.toString();
    expect(out).toMatch(/No space left on device/);
    expect(out).toMatch(/^1777\n1048576$/m);
    expect(out).toMatch(/ \/scratch \S*nosuid,nodev/);
  });

  it("docker's --tmpfs form, with noexec and a mode", async () => {
    const r = await rt.output({
      image: 'bb',
      tmpfs: ['/run/x:size=64k,mode=700,noexec'],
      command: [
        'sh',
        '-c',
        'stat -c %a /run/x; cp /bin/busybox /run/x/ 2>/dev/null; echo "#!/bin/sh" > /run/x/s; chmod +x /run/x/s; /run/x/s && echo ran || echo refused',
      ],
    });
    expect(r.stdout.toString()).toBe('700\nrefused\n');
    await expect(rt.output({ image: 'bb', tmpfs: ['/x:size=lots'] })).rejects.toThrow(/size/);
    await expect(rt.output({ image: 'bb', tmpfs: { '/': '1m' } })).rejects.toThrow(/cannot be a tmpfs/);
  });
});
