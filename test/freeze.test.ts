// freezeContainer (src/cgroup.ts): a commit of a running container holds every one of its
// processes still while it reads the layers. The freezer cgroup is made at commit time and
// the processes moved into it (a start pays nothing for it); thawing puts them back where
// they were. A committer killed while the container is frozen leaves it to prune to thaw.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { freezeContainer, pruneStaleCgroups } from '../src/cgroup';
import { Container } from '../src/container';
import { ROOTFS, until } from './helpers';

let work: string;
const FREEZER = '/sys/fs/cgroup/freezer';

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'nsbox-freeze-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const freezerOf = (pid: number) =>
  readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => /^\d+:freezer:/.test(l))!
    .split(':')[2]!;
const freezeDirs = () => (existsSync(path.join(FREEZER, 'nsbox')) ? readdirSync(path.join(FREEZER, 'nsbox')).filter((d) => d.startsWith('freeze-')) : []);

/** A container with two processes appending to files in a volume, and its progress. */
async function busy(): Promise<{ c: Container; read: () => number[] }> {
  const data = mkdtempSync(path.join(work, 'data-'));
  const c = Container.start({
    // /tmp exists in the fixture: a missing mount point would be made in the shared rootfs.
    root: { type: 'bind', path: ROOTFS },
    stdio: 'ignore',
    mounts: [{ source: data, target: '/tmp', readonly: false }],
    command: ['sh', '-c', '(while :; do echo x >> /tmp/b; done) & while :; do echo x >> /tmp/a; done'],
  });
  const read = () =>
    ['a', 'b'].map((f) => {
      try {
        return statSync(path.join(data, f)).size;
      } catch {
        return 0;
      }
    });
  await until('both writers to run', () => read().every((n) => n > 10));
  return { c, read };
}

describe.skipIf(!existsSync(FREEZER))('freezeContainer', () => {
  it('holds every process of a running container still, then thaws it and puts it back', async () => {
    const { c, read } = await busy();
    const before = freezerOf(c.pid);
    try {
      const thaw = await freezeContainer(c.pid, readlinkSync(`/proc/${c.pid}/ns/pid`));
      expect(thaw).not.toBeNull();
      const frozen = read();
      await new Promise((r) => setTimeout(r, 300));
      expect(read()).toEqual(frozen);
      thaw!();
      await until('both writers to move again', () => read().every((n, i) => n > frozen[i]!));
      expect(freezerOf(c.pid)).toBe(before);
      expect(freezeDirs()).toEqual([]);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
  });

  it("this process's own freezer left by an earlier commit (its rmdir met an exiting process) is no obstacle", async () => {
    const { c, read } = await busy();
    const { ownStartTime } = await import('../src/proc');
    // What a commit whose rmdir failed leaves: its own name for this container, empty.
    const left = path.join(FREEZER, 'nsbox', `freeze-${process.pid}-${ownStartTime()}-${c.pid}`);
    mkdirSync(left, { recursive: true });
    try {
      const thaw = await freezeContainer(c.pid, readlinkSync(`/proc/${c.pid}/ns/pid`));
      expect(thaw).not.toBeNull();
      const frozen = read();
      await new Promise((r) => setTimeout(r, 200));
      expect(read()).toEqual(frozen);
      thaw!();
      expect(freezeDirs()).toEqual([]);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
  });

  it('a committer killed while the container is frozen: prune thaws it', async () => {
    const { c, read } = await busy();
    try {
      const ns = readlinkSync(`/proc/${c.pid}/ns/pid`);
      const script = `
        const { freezeContainer } = require(${JSON.stringify(path.resolve(__dirname, '../dist/cgroup.js'))});
        freezeContainer(${c.pid}, ${JSON.stringify(ns)}).then(() => { console.log('frozen'); setInterval(() => {}, 1000); });
      `;
      const committer = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => committer.stdout.once('data', () => resolve()));
      committer.kill('SIGKILL');
      await new Promise((r) => committer.once('exit', r));
      const frozen = read();
      const mine = freezeDirs().filter((d) => d.startsWith(`freeze-${committer.pid}-`));
      expect(mine.length).toBe(1);
      await new Promise((r) => setTimeout(r, 200));
      // Any Runtime on the host thaws a dead committer's freezer (another test file's, running
      // in parallel, may have): only while its freezer is still there is it ours to prove.
      if (freezeDirs().includes(mine[0]!)) {
        expect(read()).toEqual(frozen); // still frozen: nobody thawed it
        const pruned = pruneStaleCgroups();
        // Unless another Runtime thawed it between the check above and this prune.
        const thawedElsewhere = !pruned.length && !freezeDirs().includes(mine[0]!);
        if (!thawedElsewhere) expect(pruned.some((d) => path.basename(d).startsWith('freeze-'))).toBe(true);
      }
      await until('both writers to move again', () => read().every((n, i) => n > frozen[i]!));
      expect(freezeDirs()).toEqual([]);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
  });
});
