// Long operations on a big tree give the event loop turns (src/loop-turns.ts), and what they
// guarantee holds across those turns: each test does something at a turn taken in the middle
// of the walk (seen by its partial output), which a walk holding the loop would never let it
// do, and checks the walk's rules, its result, the state directory and this process's fds.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { NsboxError } from '../src/errors';
import { removeTree } from '../src/fsat';
import { Runtime } from '../src/runtime';
import { collectBuffer, distModule, openFds, runNode } from './helpers';

const SECRET = `host-secret-${process.pid}-${Math.random().toString(36).slice(2)}`;
const DIRS = 30;
const PER_DIR = 100;

let scratch: string;
let root: string;
let tree: string;
let rt: Runtime;

beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-loop-turns-'));
  root = path.join(scratch, 'state');
  rt = new Runtime({ root });
  // 3,000 small files in 30 directories: a walk of some hundred milliseconds at least.
  tree = path.join(scratch, 'data');
  fs.mkdirSync(tree);
  for (let d = 0; d < DIRS; d++) {
    fs.mkdirSync(path.join(tree, `d${String(d).padStart(2, '0')}`));
    for (let f = 0; f < PER_DIR; f++) fs.writeFileSync(path.join(tree, `d${String(d).padStart(2, '0')}`, `f${f}`), `file ${d} ${f}\n`);
  }
});
afterAll(() => removeTree(scratch, { force: true }));

/** A stopped container whose write layer holds the tree at /data. */
async function bigContainer(): Promise<string> {
  const c = await rt.run({ image: 'busybox', command: ['true'], stdio: 'ignore' });
  await c.wait();
  await rt.copyIn(c.id!, tree, '/');
  return c.id!;
}

/** Directories under `dir` (0 when it does not exist yet). */
function count(dir: string): number {
  try {
    return fs.readdirSync(dir).length;
  } catch {
    return 0;
  }
}

/**
 * Runs `op`, calling `atTurn` at each turn of the loop (a setImmediate chain) until it returns
 * true; resolves with op's outcome and how many turns `atTurn` saw.
 */
async function withTurns<T>(
  op: () => Promise<T>,
  atTurn: () => boolean | Promise<boolean>,
): Promise<{ result: PromiseSettledResult<T>; turns: number; acted: boolean }> {
  let done = false;
  let turns = 0;
  let acted = false;
  const watcher = (async () => {
    while (!done && !acted) {
      await new Promise((r) => setImmediate(r));
      if (done) break;
      turns++;
      acted = await atTurn();
    }
  })();
  const result = await Promise.allSettled([op()]);
  done = true;
  await watcher;
  return { result: result[0]!, turns, acted };
}

/** The commit's tree being built: tmp/commit-*\/rootfs/data. */
function committing(): string | undefined {
  const tmp = path.join(root, 'tmp');
  const t = count(tmp) ? fs.readdirSync(tmp).find((n) => n.startsWith('commit-')) : undefined;
  return t && path.join(tmp, t, 'rootfs', 'data');
}

/** True once the commit's tree holds some but not all of the directories: the middle of the walk. */
function midCommit(): boolean {
  const data = committing();
  const n = data ? count(data) : 0;
  return n > 0 && n < DIRS - 1;
}

describe('commit of a big tree', () => {
  it('gives the loop turns in the middle of the walk, and the image is whole', async () => {
    const id = await bigContainer();
    const fds = openFds();
    const { result, acted } = await withTurns(() => rt.commit(id, 'turns-whole'), midCommit);
    expect(result.status).toBe('fulfilled');
    expect(acted).toBe(true);
    const rootfs = rt.images.get('turns-whole').rootfs;
    expect(count(path.join(rootfs, 'data'))).toBe(DIRS);
    expect(count(path.join(rootfs, 'data', 'd29'))).toBe(PER_DIR);
    expect(fs.readFileSync(path.join(rootfs, 'data', 'd17', 'f42'), 'utf8')).toBe('file 17 42\n');
    expect(openFds()).toEqual(fds);
    await rt.remove(id);
    await rt.removeImage('turns-whole');
  });

  it('runs beside a container started in the same process at one of its turns: both succeed', async () => {
    const id = await bigContainer();
    let started: Promise<number | null> | undefined;
    const { result, acted } = await withTurns(
      () => rt.commit(id, 'turns-beside', { output: path.join(scratch, 'beside.tar') }),
      () => {
        if (!midCommit()) return false;
        started = (async () => {
          const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'echo hi > /x; cat /x'], stdio: 'ignore', remove: true });
          return (await c.wait()).exitCode;
        })();
        return true;
      },
    );
    expect(acted).toBe(true);
    expect(await started).toBe(0);
    expect(result.status).toBe('fulfilled');
    expect(count(path.join(rt.images.get('turns-beside').rootfs, 'data'))).toBe(DIRS);
    expect(fs.statSync(path.join(scratch, 'beside.tar')).size).toBeGreaterThan(DIRS * PER_DIR * 1024);
    await rt.remove(id);
    await rt.removeImage('turns-beside');
  });

  it("a remove of the container asked for at one of its turns waits for the commit's lock", async () => {
    const id = await bigContainer();
    let removed: Promise<void> | undefined;
    let commitDone = false;
    let removedBeforeCommit = false;
    const { result, acted } = await withTurns(
      async () => {
        const info = await rt.commit(id, 'turns-rm');
        commitDone = true;
        return info;
      },
      () => {
        if (!midCommit()) return false;
        removed = rt.remove(id).then(() => {
          removedBeforeCommit = !commitDone;
        });
        return true;
      },
    );
    expect(acted).toBe(true);
    expect(result.status).toBe('fulfilled');
    await removed;
    expect(removedBeforeCommit).toBe(false);
    expect(rt.list({ all: true }).map((c) => c.id)).not.toContain(id);
    expect(count(path.join(rt.images.get('turns-rm').rootfs, 'data', 'd29'))).toBe(PER_DIR);
    await rt.removeImage('turns-rm');
  });

  it('an image layer removed at one of its turns (rmi -f) fails it: no image, nothing left, no fd', async () => {
    // An image of its own, so that its removal touches no other test.
    await rt.commit(await bigContainer(), 'turns-base');
    const c = await rt.run({ image: 'turns-base', command: ['sh', '-c', 'echo written > /new'], stdio: 'ignore' });
    await c.wait();
    const state = () => ({ images: fs.readdirSync(path.join(root, 'images')).sort(), tmp: fs.readdirSync(path.join(root, 'tmp')) });
    const before = state();
    const fds = openFds();
    let rmi: Promise<void> | undefined;
    // Most of the tree comes from the image layer (hard links): the walk is in it.
    const { result, acted } = await withTurns(
      () => rt.commit(c.id!, 'turns-gone'),
      () => {
        if (!midCommit()) return false;
        rmi = rt.removeImage('turns-base', { force: true });
        return true;
      },
    );
    expect(acted).toBe(true);
    await rmi;
    expect(result.status).toBe('rejected');
    const err = (result as PromiseRejectedResult).reason as unknown;
    expect(err).toBeInstanceOf(NsboxError);
    // Whichever comes first: a file gone from under the walk, or the check of the layers after it.
    expect(String((err as Error).message)).toMatch(/^commit (turns-gone|\/)|^commit: \//);
    expect(rt.images.find('turns-gone')).toBeUndefined();
    expect(state()).toEqual({ images: before.images.filter((n) => n !== 'turns-base'), tmp: before.tmp });
    expect(openFds()).toEqual(fds);
    await rt.remove(c.id!, { force: true });
  });
});

describe('process.exit() at one of the turns', () => {
  it("of a commit's walk: the container is free again for the next Runtime, and its prune leaves no tree and no mount", async () => {
    const id = await bigContainer();
    const runtimeJs = path.join(path.dirname(distModule('container')), 'runtime.js');
    const script = `
      const fs = require('fs');
      const path = require('path');
      const { Runtime } = require(${JSON.stringify(runtimeJs)});
      const tmp = ${JSON.stringify(path.join(root, 'tmp'))};
      const rt = new Runtime({ root: ${JSON.stringify(root)} });
      const mid = () => {
        const t = fs.readdirSync(tmp).find((n) => n.startsWith('commit-'));
        try {
          const n = t ? fs.readdirSync(path.join(tmp, t, 'rootfs', 'data')).length : 0;
          return n > 0 && n < ${DIRS - 1};
        } catch {
          return false;
        }
      };
      const watch = () => (mid() ? (console.log('exiting'), process.exit(7)) : setImmediate(watch));
      watch();
      rt.commit(${JSON.stringify(id)}, 'turns-exit').then(() => console.log('finished'), (e) => console.log('failed', e.message));
    `;
    const r = await runNode(script, { timeoutMs: 60_000 });
    expect(r.stdout.trim()).toBe('exiting');
    expect(r.code).toBe(7);
    const next = new Runtime({ root });
    expect(next.images.find('turns-exit')).toBeUndefined();
    // Its lock went with the process: the container commits at once, and whole.
    await next.commit(id, 'turns-exit');
    expect(count(path.join(next.images.get('turns-exit').rootfs, 'data', 'd29'))).toBe(PER_DIR);
    // prune removes the dead process's half-built tree (and the exited container).
    await next.prune();
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
    expect(next.list({ all: true }).map((c) => c.id)).not.toContain(id);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(` ${root}/`);
    await next.removeImage('turns-exit');
  });
});

/**
 * What a hostile container does at a turn of a cp: every directory /data/dNN it has (moved
 * aside to /held) and every one still to come becomes a symlink to `target`, a host directory.
 */
function swapForLinks(inside: string, target: string): void {
  const data = path.join(inside, 'data');
  fs.mkdirSync(path.join(inside, 'held'), { recursive: true });
  for (let d = 0; d < DIRS; d++) {
    const name = `d${String(d).padStart(2, '0')}`;
    if (fs.existsSync(path.join(data, name))) fs.renameSync(path.join(data, name), path.join(inside, 'held', name));
    fs.symlinkSync(target, path.join(data, name));
  }
}

describe('cp of a big tree', () => {
  it('into a running container that swaps its directories for links to the host at a turn: nothing lands on the host', async () => {
    const priv = path.join(scratch, 'private-in');
    fs.mkdirSync(priv, { mode: 0o700 });
    const c = await rt.run({ image: 'busybox', command: ['sleep', '60'], stdio: 'ignore' });
    try {
      const inside = `/proc/${c.pid}/root`;
      const fds = openFds();
      // At a turn once the copy is under way: every directory it made, and every one it is
      // still to make, becomes a symlink to the host directory.
      const { result, acted } = await withTurns(
        () => rt.copyIn(c.id!, tree, '/'),
        () => {
          const data = path.join(inside, 'data');
          const n = count(data);
          if (n === 0 || n >= DIRS - 1) return false;
          swapForLinks(inside, priv);
          return true;
        },
      );
      expect(acted).toBe(true);
      // Either outcome is the copy's to choose (it refuses a parent that is a symlink); the
      // host directory stays empty whichever.
      if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(NsboxError);
      expect(fs.readdirSync(priv)).toEqual([]);
      expect(openFds()).toEqual(fds);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
      await rt.remove(c.id!, { force: true });
    }
  });

  it('out of a running container that swaps its directories for links to the host at a turn: the host file is never read', async () => {
    const priv = path.join(scratch, 'private-out');
    fs.mkdirSync(priv, { mode: 0o700 });
    for (let f = 0; f < PER_DIR; f++) fs.writeFileSync(path.join(priv, `f${f}`), SECRET);
    const ctr = await rt.run({ image: 'busybox', command: ['sleep', '60'], stdio: 'ignore' });
    try {
      await rt.copyIn(ctr.id!, tree, '/');
      const inside = `/proc/${ctr.pid}/root`;
      const fds = openFds();
      let out: Buffer | undefined;
      let consumed = 0;
      const { result, acted } = await withTurns(
        async () => {
          const stream = await rt.copyOut(ctr.id!, '/data');
          const parts: Buffer[] = [];
          for await (const chunk of stream) {
            parts.push(chunk as Buffer);
            consumed += (chunk as Buffer).length;
          }
          out = Buffer.concat(parts);
        },
        () => {
          // Some of the tar read, not most of it: the walk is in the middle.
          if (consumed === 0 || consumed > (DIRS * PER_DIR * 1024) / 2) return false;
          swapForLinks(inside, priv);
          return true;
        },
      );
      expect(acted).toBe(true);
      if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(NsboxError);
      else expect(out!.includes(SECRET)).toBe(false);
      expect(openFds()).toEqual(fds);
    } finally {
      ctr.kill('SIGKILL');
      await ctr.wait();
      await rt.remove(ctr.id!, { force: true });
    }
  });

  it("out of a stopped container whose image is removed (rmi -f) at a turn: refused with the directory's path, no fd left", async () => {
    const fds = openFds();
    // The removal runs on the pool beside the walk: a directory the walk has not reached yet is
    // left out as gone, one it opened and then finds removed fails the copy. The second is
    // what this checks; it came first in every run tried, and is given three chances.
    let result: PromiseSettledResult<void> | undefined;
    let id = '';
    for (let attempt = 0; attempt < 3 && result?.status !== 'rejected'; attempt++) {
      const base = await bigContainer();
      await rt.commit(base, 'turns-cp-base');
      await rt.remove(base);
      const c = await rt.run({ image: 'turns-cp-base', command: ['true'], stdio: 'ignore' });
      await c.wait();
      id = c.id!;
      let consumed = 0;
      let rmi: Promise<void> | undefined;
      const turns = await withTurns(
        async () => {
          const stream = await rt.copyOut(id, '/data');
          for await (const chunk of stream) consumed += (chunk as Buffer).length;
        },
        () => {
          if (consumed === 0 || consumed > (DIRS * PER_DIR * 1024) / 2) return false;
          rmi = rt.removeImage('turns-cp-base', { force: true });
          return true;
        },
      );
      expect(turns.acted).toBe(true);
      await rmi;
      await rt.remove(id, { force: true });
      result = turns.result;
    }
    expect(result!.status).toBe('rejected');
    const err = (result as PromiseRejectedResult).reason as NsboxError;
    expect(err).toBeInstanceOf(NsboxError);
    expect(err.message).toMatch(new RegExp(`^cp from ${id.slice(0, 12)}[0-9a-f]*:/data: .*data/d\\d\\d`));
    expect(err.path).toMatch(/^data\/d\d\d/);
    expect(openFds()).toEqual(fds);
  });

  it('a tar Buffer into a stopped container gives the loop turns; the copy is whole', async () => {
    const from = await bigContainer();
    const tar = await collectBuffer(await rt.copyOut(from, '/data'));
    await rt.remove(from);
    const c = await rt.run({ image: 'busybox', command: ['true'], stdio: 'ignore' });
    await c.wait();
    const id = c.id!;
    const fds = openFds();
    // The write layer filling up, seen at a turn: some of the directories there, not all.
    const upper = path.join(root, 'containers', id, 'upper', 'data');
    const { result, acted } = await withTurns(
      () => rt.copyIn(id, tar, '/'),
      () => count(upper) > 0 && count(upper) < DIRS - 1,
    );
    expect(result.status).toBe('fulfilled');
    expect(acted).toBe(true);
    expect((result as PromiseFulfilledResult<{ entries: number }>).value.entries).toBe(1 + DIRS + DIRS * PER_DIR);
    expect(openFds()).toEqual(fds);
    await rt.remove(id);
  });
});

describe('rmi of a big image', () => {
  it('unlists the image at once and deletes its tree off the loop', async () => {
    const id = await bigContainer();
    const id2 = await bigContainer();
    await rt.commit(id, 'turns-rmi');
    await rt.remove(id);
    const p = rt.removeImage('turns-rmi');
    // Gone by name at once: a start finds nothing, a new image may take the name.
    expect(rt.images.find('turns-rmi')).toBeUndefined();
    await expect(rt.run({ image: 'turns-rmi', command: ['true'] })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await p;
    expect(fs.readdirSync(path.join(root, 'tmp')).filter((n) => n.startsWith('rmi-'))).toEqual([]);
    // The loop had turns while the tree was being deleted (it was still there at one of them).
    await rt.commit(id2, 'turns-rmi');
    const doomed = () => fs.readdirSync(path.join(root, 'tmp')).some((n) => n.startsWith('rmi-'));
    const { result, acted } = await withTurns(() => rt.removeImage('turns-rmi'), doomed);
    expect(result.status).toBe('fulfilled');
    expect(acted).toBe(true);
    expect(doomed()).toBe(false);
    expect(() => rt.removeImage('turns-rmi')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    await rt.remove(id2);
  });
  it('a removal that fails (a mount inside the tree) rejects its promise with the cause, and prune in the same process deletes what it left', async () => {
    // Found by the attack review: prune left alone every tmp/ entry of its own pid, so a failed
    // rmi's tree stayed until the process ended.
    const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'mkdir -p /m/m && echo x > /m/m/f'], stdio: 'ignore' });
    await c.wait();
    await rt.commit(c.id!, 'turns-rmi-busy');
    await rt.remove(c.id!);
    const mnt = path.join(rt.images.get('turns-rmi-busy').rootfs, 'm', 'm');
    execFileSync('mount', ['-t', 'tmpfs', 'none', mnt]);
    const leftovers = () => fs.readdirSync(path.join(root, 'tmp')).filter((n) => n.startsWith('rmi-'));
    const ours = () =>
      fs
        .readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .map((l) => l.split(' ')[4])
        .filter((m): m is string => !!m && m.startsWith(`${root}/`));
    try {
      await expect(rt.removeImage('turns-rmi-busy')).rejects.toMatchObject({ code: 'EBUSY' });
      expect(rt.images.find('turns-rmi-busy')).toBeUndefined();
      expect(leftovers()).toHaveLength(1);
    } finally {
      for (const m of ours()) execFileSync('umount', [m]);
    }
    await rt.prune();
    expect(leftovers()).toEqual([]);
  });

  it('the name taken again (commit) while the old tree is still being deleted: the new image is whole once the removal is done', async () => {
    const id = await bigContainer();
    await rt.commit(id, 'turns-rmi-again');
    const removal = rt.removeImage('turns-rmi-again');
    const again = rt.commit(id, 'turns-rmi-again');
    await removal;
    await again;
    const rootfs = rt.images.get('turns-rmi-again').rootfs;
    expect(count(path.join(rootfs, 'data'))).toBe(DIRS);
    expect(count(path.join(rootfs, 'data', 'd29'))).toBe(PER_DIR);
    expect(fs.readdirSync(path.join(root, 'tmp')).filter((n) => n.startsWith('rmi-'))).toEqual([]);
    await rt.remove(id);
    await rt.removeImage('turns-rmi-again');
  });
});

describe('prune of big trees', () => {
  it('deletes them off the loop: a container started at a turn mid-prune runs, and both trees are gone after', async () => {
    // A state directory of its own: prune removes every container that is not running.
    const own = new Runtime({ root: path.join(scratch, 'state-prune') });
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const c = await own.run({ image: 'busybox', command: ['true'], stdio: 'ignore' });
      await c.wait();
      await own.copyIn(c.id!, tree, '/');
      ids.push(c.id!);
    }
    const containers = path.join(scratch, 'state-prune', 'containers');
    const tombstone = () => fs.readdirSync(containers).some((n) => n.includes('.removing-'));
    const fds = openFds();
    let output = '';
    const { result, acted } = await withTurns(
      () => own.prune(),
      async () => {
        // A removal under way: renamed to its tombstone, its tree being deleted.
        if (!tombstone()) return false;
        const c = await own.run({ image: 'busybox', command: ['echo', 'mid-prune'], stdio: ['ignore', 'pipe', 'ignore'], remove: true });
        output = (await collectBuffer(c.stdout)).toString();
        expect(await c.wait()).toMatchObject({ exitCode: 0 });
        return true;
      },
    );
    expect(acted).toBe(true);
    expect(output).toBe('mid-prune\n');
    expect(result.status).toBe('fulfilled');
    expect((result as PromiseFulfilledResult<string[]>).value.sort()).toEqual([...ids].sort());
    expect(fs.readdirSync(containers)).toEqual([]);
    expect(openFds()).toEqual(fds);
  });
});
