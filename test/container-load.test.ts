// Load: many containers, one after another and all at once. Every one exits 0, and nothing
// accumulates: no zombie, no fd, no mount on the host. Node's own child_process children,
// running alongside, are still reaped by Node (nsbox reaps only through its pidfds).
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';

import { Container, ROOTFS, type Snapshot, childPids, openFds, rootfsMounts, runNode, snapshot, until, zombies } from './helpers';

const root = { type: 'bind' as const, path: ROOTFS };

/** A child_process child that exits with `code` after `delay` s; resolves with its exit. */
function nodeChild(code: number, delay: number): { pid: number; exited: Promise<[number | null, string | null]> } {
  const child = spawn('sh', ['-c', `sleep ${delay}; exit ${code}`], { stdio: 'ignore' });
  const exited = new Promise<[number | null, string | null]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child_process ${child.pid}: no 'exit' within 20 s (reaped by someone else?)`)), 20_000);
    child.on('exit', (c, s) => {
      clearTimeout(timer);
      resolve([c, s]);
    });
  });
  return { pid: child.pid!, exited };
}

async function expectNoLeaks(before: Snapshot): Promise<void> {
  // Streams close on the loop's next turns after wait(): give them a moment.
  await until('fds back to where they were', () => openFds().join() === before.fds.join(), 2000).catch(() => {});
  expect(zombies()).toEqual([]);
  expect(childPids()).toEqual(before.children);
  expect(openFds()).toEqual(before.fds);
  expect(rootfsMounts()).toEqual(before.mounts);
}

describe('load', () => {
  it('runs 200 containers back to back, with a child_process child alongside', async () => {
    await Container.start({ root, command: ['true'] }).wait(); // warm-up: lazily made state
    const before = snapshot();
    const bystander = nodeChild(7, 0.3);
    const statuses = [];
    for (let i = 0; i < 200; i++) {
      const c = Container.start({ root, command: ['sh', '-c', 'exit 0'] });
      statuses.push(await c.wait());
    }
    expect(statuses.filter((s) => s.exitCode !== 0 || s.signal !== null)).toEqual([]);
    expect(statuses).toHaveLength(200);
    expect(await bystander.exited).toEqual([7, null]);
    await expectNoLeaks(before);
  });

  it('runs 50 containers at once, with child_process children exiting meanwhile', async () => {
    await Container.start({ root, command: ['true'] }).wait();
    const before = snapshot();
    const bystanders = [nodeChild(3, 0.05), nodeChild(4, 0.2)];
    const cs: Container[] = [];
    for (let i = 0; i < 50; i++) {
      cs.push(Container.start({ root, command: ['sh', '-c', `read x; echo "$x-${i}"`], stdio: ['pipe', 'pipe', 'ignore'] }));
    }
    // All 50 alive at the same time, each waiting for its input.
    const live = new Set(childPids());
    expect(cs.filter((c) => !live.has(c.pid))).toEqual([]);
    const outputs = cs.map((c) => {
      let out = '';
      c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      return c.wait().then((s) => ({ ...s, out }));
    });
    cs.forEach((c) => c.stdin!.end('hello\n'));
    const results = await Promise.all(outputs);
    expect(results.filter((r) => r.exitCode !== 0)).toEqual([]);
    expect(results.map((r) => r.out)).toEqual(cs.map((_, i) => `hello-${i}\n`));
    expect(await Promise.all(bystanders.map((b) => b.exited))).toEqual([
      [3, null],
      [4, null],
    ]);
    await expectNoLeaks(before);
  });

  it('runs 30 containers with terminals at once, three times over', async () => {
    await Container.start({ root, command: ['true'], tty: true }).wait();
    const before = snapshot();
    for (let round = 0; round < 3; round++) {
      const cs = Array.from({ length: 30 }, (_, i) => Container.start({ root, command: ['stty', 'size'], tty: { cols: 40 + i, rows: 10 } }));
      const texts = await Promise.all(
        cs.map((c) => {
          let text = '';
          c.terminal!.on('data', (d: Buffer) => (text += d.toString()));
          return c.wait().then((s) => ({ exitCode: s.exitCode, signal: s.signal, text: text.trim() }));
        }),
      );
      expect(texts).toEqual(cs.map((_, i) => ({ exitCode: 0, signal: null, text: `10 ${40 + i}` })));
    }
    await expectNoLeaks(before);
  });

  it('leaves the host mount table as it was, even with / shared', async () => {
    // In a mount namespace of its own whose mounts are all shared, a mount that propagated
    // out of a container would show in the node process's table. (The test process's own
    // table is not used: other test files may mount things meanwhile.)
    const script = `
      const fs = require('fs');
      const { Container } = require(process.env.NSBOX_DIST);
      const root = { type: 'bind', path: process.env.NSBOX_ROOTFS };
      const table = () => fs.readFileSync('/proc/self/mountinfo', 'utf8');
      (async () => {
        const before = table();
        for (let i = 0; i < 20; i++) await Container.start({ root, command: ['true'] }).wait();
        const all = [];
        for (let i = 0; i < 20; i++) all.push(Container.start({ root, command: ['sh', '-c', 'sleep 0.1'] }));
        const statuses = await Promise.all(all.map((c) => c.wait()));
        console.log(JSON.stringify({ before, after: table(), ok: statuses.every((s) => s.exitCode === 0) }));
      })();
    `;
    const r = await runNode(script, { prelude: 'exec unshare --mount --propagation shared -- "$0" -e "$1"' });
    expect(r.stderr).toBe('');
    const { before, after, ok } = JSON.parse(r.stdout) as { before: string; after: string; ok: boolean };
    expect(ok).toBe(true);
    expect(before).toMatch(/^\S+ \S+ \S+ \/ \/ \S+ shared:\d+/m); // / is shared there
    expect(after).toBe(before);
  });
});
