// Starts in flight at once (issue 14): each on a spawner thread, handed back to the event
// loop. These attack what concurrency could break: a failed start among many leaving
// something behind, two starts' pids or pidfds swapped, an abort landing while the clone is
// under way, and an environment torn down with starts still in flight.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { unifiedHierarchy } from '../src/cgroup';
import { NsboxError } from '../src/errors';
import { Runtime } from '../src/runtime';
import { childPids, collect, openFds, runNode, unionMounts, until } from './helpers';

let base: string;
let rt: Runtime;
beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-conc-'));
  rt = new Runtime({ root: path.join(base, 'root') });
});
afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

const threads = () => fs.readdirSync('/proc/self/task').length;
const containersLeft = () => fs.readdirSync(path.join(rt.root, 'containers'));

/** Everything a start could leave behind in this process and on the host. */
function leftovers() {
  return {
    fds: openFds(),
    children: childPids(),
    unions: unionMounts().filter((l) => l.includes(rt.root)),
    containers: containersLeft(),
    listed: rt.list({ all: true }).map((c) => c.id),
  };
}

describe('starts in flight at once', () => {
  it('50 concurrent runs, a third of them failing at different stages, leave nothing behind and each says its own', async () => {
    // One start first: the addon, nsbox-init's memfd and the warm state are made once.
    await rt.output({ image: 'busybox', command: ['true'] });
    const before = leftovers();
    const batch = () =>
      Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => {
          const hostname = `c${i}`;
          switch (i % 6) {
            case 0:
              return rt.output({ image: 'no-such-image', command: ['true'], hostname });
            case 1:
              return rt.output({ image: 'busybox', command: ['/no/such/program'], hostname });
            case 2:
              return rt.output({ image: 'busybox', command: ['true'], cwd: '/etc/hostname/x', hostname });
            default:
              return rt.output({
                image: 'busybox',
                command: ['sh', '-c', 'echo $(hostname) $$ $(cat /etc/hostname)'],
                hostname,
                network: i % 2 ? 'none' : 'host',
              });
          }
        }),
      );
    for (let round = 0; round < 2; round++) {
      const results = await batch();
      results.forEach((r, i) => {
        if (i % 6 < 3) {
          expect(r.status, `start ${i}`).toBe('rejected');
          expect((r as PromiseRejectedResult).reason, `start ${i}`).toBeInstanceOf(NsboxError);
          const msg = String((r as PromiseRejectedResult).reason.message);
          expect(msg, `start ${i}`).toMatch([/no such image/, /\/no\/such\/program/, /hostname\/x|chdir|ENOTDIR/][i % 6]!);
        } else {
          expect(r.status, `start ${i}`).toBe('fulfilled');
          const out = (r as PromiseFulfilledResult<{ stdout: Buffer; exitCode: number | null }>).value;
          // Its own hostname, both from the kernel and from the file bound for it; pid 1 is init.
          expect(out.stdout.toString(), `start ${i}`).toBe(`c${i} 2 c${i}\n`);
          expect(out.exitCode).toBe(0);
        }
      });
      if (round === 0) {
        const t = threads();
        // The spawner threads are made as needed, and bounded: a second batch adds none.
        (before as { threads?: number }).threads = t;
      } else {
        expect(threads()).toBe((before as { threads?: number }).threads);
      }
    }
    await until('the removals', () => containersLeft().length === 0, 10_000);
    const after = leftovers();
    delete (before as { threads?: number }).threads;
    expect(after).toEqual(before);
  });

  it('gives each start its own pid and pidfd: a signal to one reaches that container only', async () => {
    const cs = await Promise.all(
      Array.from({ length: 16 }, (_, i) => rt.run({ image: 'busybox', command: ['sleep', '60'], hostname: `p${i}`, stdio: 'ignore', remove: true })),
    );
    try {
      // The pid each Container reports is the one whose root holds its own hostname file.
      cs.forEach((c, i) => expect(fs.readFileSync(`/proc/${c.pid}/root/etc/hostname`, 'utf8')).toBe(`p${i}\n`));
      expect(new Set(cs.map((c) => c.pid)).size).toBe(16);
      // Kill every other one through its pidfd: exactly those end, the rest run on.
      for (let i = 0; i < cs.length; i += 2) cs[i]!.kill('SIGKILL');
      await Promise.all(cs.filter((_, i) => i % 2 === 0).map((c) => c.wait()));
      cs.forEach((c, i) => expect(c.running, `container ${i}`).toBe(i % 2 === 1));
    } finally {
      for (const c of cs) c.kill('SIGKILL');
      await Promise.all(cs.map((c) => c.wait()));
    }
  });

  it('an abort that lands while a start is under way kills that container only, leaving nothing', async () => {
    const before = leftovers();
    const controllers = Array.from({ length: 12 }, () => new AbortController());
    const starts = controllers.map((ac, i) =>
      rt.run({
        image: 'busybox',
        command: i % 2 ? ['sh', '-c', 'sleep 0.3; echo done'] : ['sleep', '60'],
        stdio: ['ignore', 'pipe', 'ignore'],
        remove: true,
        ...(i % 2 ? {} : { signal: ac.signal }),
      }),
    );
    // Aborted at different moments: before the clone, during it, after it.
    const delays = [0, 2, 5, 10, 20, 40];
    controllers.forEach((ac, i) => {
      if (i % 2 === 0) setTimeout(() => ac.abort(), delays[i / 2]);
    });
    // Each one's output read from the moment it is handed over.
    const outputs = starts.map((p) =>
      p.then(
        (c) => collect(c.stdout),
        () => '',
      ),
    );
    const settled = await Promise.allSettled(starts);
    for (const [i, r] of settled.entries()) {
      if (i % 2 === 1) {
        expect(r.status).toBe('fulfilled');
        const c = (r as PromiseFulfilledResult<Awaited<(typeof starts)[number]>>).value;
        const [out, st] = await Promise.all([outputs[i], c.wait()]);
        expect({ out, code: st.exitCode, aborted: st.aborted }).toEqual({ out: 'done\n', code: 0, aborted: false });
      } else if (r.status === 'rejected') {
        expect((r.reason as NsboxError).code).toBe('ABORT_ERR');
      } else {
        const st = await r.value.wait();
        expect({ aborted: st.aborted, signal: st.signal }).toEqual({ aborted: true, signal: 'SIGKILL' });
      }
    }
    await until('the removals', () => containersLeft().length === 0, 10_000);
    expect(leftovers()).toEqual(before);
  });

  it('makes no more spawner threads than $NSBOX_SPAWN_THREADS, however many starts are in flight', async () => {
    const script = `
      const fs = require('fs');
      const path = require('path');
      const { Runtime } = require(path.join(path.dirname(process.env.NSBOX_DIST), 'index.js'));
      const threads = () => fs.readdirSync('/proc/self/task').length;
      const rt = new Runtime({ root: process.argv[1] });
      (async () => {
        await (await rt.run({ image: 'busybox', command: ['true'], stdio: 'ignore', remove: true })).wait();
        const before = threads();
        const cs = await Promise.all(Array.from({ length: 12 }, () => rt.run({ image: 'busybox', command: ['sleep', '0.3'], stdio: 'ignore', remove: true })));
        const during = threads();
        await Promise.all(cs.map((c) => c.wait()));
        console.log(JSON.stringify({ added: during - before, started: cs.length }));
      })();
    `;
    const root = path.join(base, 'threads');
    process.env.NSBOX_SPAWN_THREADS = '2';
    let r;
    try {
      r = await runNode(script.replace('process.argv[1]', JSON.stringify(root)), { timeoutMs: 30_000 });
    } finally {
      delete process.env.NSBOX_SPAWN_THREADS;
    }
    expect(r.stderr).toBe('');
    // The first start made one thread; the twelve at once make one more, not eleven.
    expect(JSON.parse(r.stdout)).toEqual({ added: 1, started: 12 });
  });

  it('a worker torn down with starts in flight kills and reaps what started, and frees its fds and cgroups', async () => {
    // Its containers' v2 directories in a parent of this test's own: the addon must remove
    // them, since no JS runs in a worker that has ended (they used to stay, empty, on the host).
    const unified = unifiedHierarchy(fs.readFileSync('/proc/self/mountinfo', 'utf8'), fs.readFileSync('/proc/self/cgroup', 'utf8'));
    const v2Parent = unified ? path.join(unified.mount, unified.path, `nsbox-conc-${process.pid}`) : undefined;
    if (v2Parent) {
      fs.mkdirSync(v2Parent);
      process.env.NSBOX_CGROUP_V2_PARENT = v2Parent;
    }
    const script = `
      const fs = require('fs');
      const path = require('path');
      const { Worker } = require('worker_threads');
      const fds = () => fs.readdirSync('/proc/self/fd').length;
      const children = () => fs.readdirSync('/proc/self/task').flatMap((t) => {
        try { return fs.readFileSync('/proc/self/task/' + t + '/children', 'utf8').trim().split(/\\s+/).filter(Boolean); } catch { return []; }
      });
      const worker = \`
        const { parentPort, workerData } = require('worker_threads');
        const { Runtime } = require(workerData.index);
        const rt = new Runtime({ root: workerData.root });
        // The worker ends as soon as the first has started: the rest are in flight on the
        // spawner threads, or writing their state, or not begun.
        for (let i = 0; i < 20; i++) rt.run({ image: 'busybox', command: ['sleep', '1000'], stdio: 'ignore', remove: true }).then((c) => { parentPort.postMessage(c.pid); process.exit(0); }, () => {});
      \`;
      (async () => {
        await new Promise((r) => new Worker('1', { eval: true }).on('exit', r));
        const before = fds();
        const pids = [];
        const code = await new Promise((resolve) => {
          const w = new Worker(worker, { eval: true, workerData: { index: path.join(path.dirname(process.env.NSBOX_DIST), 'index.js'), root: ${JSON.stringify(path.join(os.tmpdir(), `nsbox-conc-worker-${process.pid}`))} } });
          w.on('message', (p) => pids.push(p));
          w.on('exit', resolve);
        });
        for (let i = 0; i < 100 && children().length; i++) await new Promise((r) => setTimeout(r, 20));
        const alive = pids.filter((p) => fs.existsSync('/proc/' + p));
        console.log(JSON.stringify({ code, started: pids.length, alive, children: children(), before, after: fds() }));
      })();
    `;
    try {
      const r = await runNode(script, { timeoutMs: 30_000 });
      expect(r.stderr).toBe('');
      expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null });
      const res = JSON.parse(r.stdout) as { code: number; started: number; alive: number[]; children: string[]; before: number; after: number };
      expect(res.code).toBe(0);
      expect(res.alive).toEqual([]);
      expect(res.children).toEqual([]);
      expect(res.after).toBe(res.before);
      if (v2Parent) expect(fs.readdirSync(v2Parent).filter((n) => /^[0-9a-f]{12}$/.test(n))).toEqual([]);
    } finally {
      delete process.env.NSBOX_CGROUP_V2_PARENT;
      if (v2Parent) fs.rmdirSync(v2Parent);
      fs.rmSync(path.join(os.tmpdir(), `nsbox-conc-worker-${process.pid}`), { recursive: true, force: true });
    }
  });
});
