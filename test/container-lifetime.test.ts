// Lifetime: an attached container dies with what started it. A SIGKILLed Node process takes
// its container with it (PR_SET_PDEATHSIG: nothing else could run to clean up); one that calls
// process.exit() kills, reaps and removes the cgroups of its containers in its 'exit' listener;
// and a worker thread that ends with a container running kills it, reaps it and gives its fds
// back. (What the Runtime records then: exit-cleanup.test.ts.)
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { ROOTFS, distModule, procState, processEnded, runNode, until } from './helpers';

/** A process that has exited, reaped or not (an orphan's zombie is init's to reap). */
const dead = processEnded;

describe('lifetime', () => {
  it('a SIGKILLed Node process takes its running container with it', async () => {
    const script = `
      const { Container } = require(process.env.NSBOX_DIST);
      const c = Container.start({ root: { type: 'bind', path: process.env.NSBOX_ROOTFS }, command: ['sleep', '1000'], stdio: 'ignore' });
      console.log(c.pid + ' ' + JSON.stringify(c.cgroupDirs));
      setInterval(() => {}, 1000);
    `;
    const env = { ...process.env, NSBOX_DIST: distModule('container'), NSBOX_ROOTFS: ROOTFS };
    const node = spawn(process.execPath, ['-e', script], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    const nodeExit = new Promise<[number | null, string | null]>((r) => node.on('exit', (c, s) => r([c, s])));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        node.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()));
        node.once('exit', () => reject(new Error('node exited before starting the container')));
      });
      const pid = Number(line.split(' ')[0]);
      const cgroups = JSON.parse(line.slice(line.indexOf(' ') + 1)) as string[];
      // The container runs, a child of that node process: nsbox-init as PID 1 of its
      // namespace, sleep as its child.
      expect(procState(pid)).toEqual({ state: expect.stringMatching(/^[RS]$/), ppid: node.pid });
      expect(readFileSync(`/proc/${pid}/comm`, 'utf8')).toBe('nsbox-init\n');
      expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(new RegExp(`^NSpid:\\s+${pid}\\s+1$`, 'm'));
      const command = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim());
      expect(readFileSync(`/proc/${command}/cmdline`, 'utf8')).toBe('sleep\u00001000\u0000');

      node.kill('SIGKILL');
      expect(await nodeExit).toEqual([null, 'SIGKILL']);
      await until(`container ${pid} to die with its node process`, () => dead(pid) && dead(command), 5000);
      // What it leaves: the container's empty cgroup directory (a bare container has no record
      // for a Runtime to find it by: prune removes it once stale). Taken back here.
      for (const d of cgroups) {
        expect(existsSync(d)).toBe(true);
        await until(`${d} to be empty`, () => readFileSync(`${d}/cgroup.procs`, 'utf8') === '');
        rmdirSync(d);
      }
    } finally {
      node.kill('SIGKILL');
    }
  });

  for (const ending of ["returns from its script (container unref'd)", 'calls process.exit()']) {
    it(`a Node process that ${ending} takes its running container with it, reaped, its cgroups removed`, async () => {
      const script = `
        const fs = require('fs');
        const { Container } = require(process.env.NSBOX_DIST);
        const c = Container.start({ root: { type: 'bind', path: process.env.NSBOX_ROOTFS }, command: ['sleep', '1000'], stdio: 'ignore' });
        console.log(JSON.stringify({ pid: c.pid, cgroups: c.cgroupDirs.filter((d) => fs.existsSync(d)) }));
        ${ending.includes('unref') ? 'c.unref();' : 'setTimeout(() => process.exit(3), 50);'}
      `;
      const r = await runNode(script, { timeoutMs: 10_000 });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(ending.includes('unref') ? 0 : 3);
      const { pid, cgroups } = JSON.parse(r.stdout) as { pid: number; cgroups: string[] };
      expect(pid).toBeGreaterThan(0);
      // Its 'exit' listener killed and reaped it before the process ended: nothing to wait for.
      expect(procState(pid)).toBe(null);
      // The cgroup v2 directory it was born in (this host tracks every container there).
      expect(cgroups.length).toBeGreaterThan(0);
      for (const d of cgroups) expect(existsSync(d)).toBe(false);
    });
  }

  it("an 'exit' listener of the program's, registered first, that throws does not keep the container and its cgroups on the host", async () => {
    // Node stops calling 'exit' listeners at the first that throws: nsbox's must come first.
    const script = `
      const fs = require('fs');
      process.on('exit', () => { throw new Error('the program\\'s own listener'); });
      const { Container } = require(process.env.NSBOX_DIST);
      const c = Container.start({ root: { type: 'bind', path: process.env.NSBOX_ROOTFS }, command: ['sleep', '1000'], stdio: 'ignore' });
      console.log(JSON.stringify({ pid: c.pid, cgroups: c.cgroupDirs.filter((d) => fs.existsSync(d)) }));
      setTimeout(() => process.exit(0), 50);
    `;
    const r = await runNode(script, { timeoutMs: 10_000 });
    expect(r.stderr).toContain("the program's own listener");
    const { pid, cgroups } = JSON.parse(r.stdout) as { pid: number; cgroups: string[] };
    expect(procState(pid)).toBe(null);
    expect(cgroups.length).toBeGreaterThan(0);
    for (const d of cgroups) expect(existsSync(d)).toBe(false);
  });

  it("a main thread that calls process.exit() while a worker's container runs leaves neither the container nor its cgroups", async () => {
    // The worker gets no 'exit' event then: its environment's teardown (binding.cc) ends it.
    const script = `
      const fs = require('fs');
      const { Worker } = require('worker_threads');
      const w = new Worker(\`
        const fs = require('fs');
        const { parentPort } = require('worker_threads');
        const { Container } = require(process.env.NSBOX_DIST);
        const c = Container.start({ root: { type: 'bind', path: process.env.NSBOX_ROOTFS }, command: ['sleep', '1000'], stdio: 'ignore' });
        parentPort.postMessage({ pid: c.pid, cgroups: c.cgroupDirs.filter((d) => fs.existsSync(d)) });
      \`, { eval: true });
      w.on('message', (m) => {
        console.log(JSON.stringify(m));
        setTimeout(() => process.exit(0), 50);
      });
    `;
    const r = await runNode(script, { timeoutMs: 10_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const { pid, cgroups } = JSON.parse(r.stdout) as { pid: number; cgroups: string[] };
    expect(procState(pid)).toBe(null);
    expect(cgroups.length).toBeGreaterThan(0);
    for (const d of cgroups) expect(existsSync(d)).toBe(false);
  });

  for (const mainLoadsAddon of [false, true]) {
    it(`a worker thread that ends kills its container, reaps it and frees its fds (main thread ${mainLoadsAddon ? 'also uses' : 'does not use'} the addon)`, async () => {
      // Run in a node process of its own: the worker's teardown (and any crash in it) must
      // be seen whole, and whether the main thread loaded the addon decides whether the
      // worker's exit unloads it.
      const script = `
        const fs = require('fs');
        const { Worker } = require('worker_threads');
        if (${mainLoadsAddon}) require(process.env.NSBOX_DIST);
        const fds = () => fs.readdirSync('/proc/self/fd').length; // nsbox-init's image included: the worker's own
        const state = (pid) => {
          try {
            const s = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
            return s.slice(s.lastIndexOf(')') + 2).split(' ')[0];
          } catch { return 'gone'; }
        };
        const worker = \`
          const { parentPort } = require('worker_threads');
          const { Container } = require(process.env.NSBOX_DIST);
          const c = Container.start({ root: { type: 'bind', path: process.env.NSBOX_ROOTFS }, command: ['sleep', '1000'] });
          parentPort.postMessage(c.pid);
          // The container keeps the worker's loop alive: the worker ends by process.exit.
          setTimeout(() => process.exit(0), 100);
        \`;
        const runWorker = () => new Promise((resolve) => {
          const w = new Worker(worker, { eval: true });
          let pid = 0, during = 0;
          w.on('message', (p) => { pid = p; during = fds(); });
          w.on('exit', (code) => resolve({ pid, code, during }));
        });
        (async () => {
          // A first worker without a container: what any worker leaves behind is not ours.
          await new Promise((r) => new Worker('1', { eval: true }).on('exit', r));
          const before = fds();
          const { pid, code, during } = await runWorker();
          const states = [state(pid)];
          for (let i = 0; i < 50 && states[states.length - 1] !== 'gone'; i++) {
            await new Promise((r) => setTimeout(r, 20));
            states.push(state(pid));
          }
          console.log(JSON.stringify({ pid, code, before, during, after: fds(), states }));
        })();
      `;
      const r = await runNode(script);
      expect(r.stderr).toBe('');
      expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null }); // no crash at teardown
      const res = JSON.parse(r.stdout) as { pid: number; code: number; before: number; during: number; after: number; states: string[] };
      expect(res.pid).toBeGreaterThan(0);
      expect(res.code).toBe(0);
      expect(res.during).toBeGreaterThan(res.before); // the worker held fds for the container
      // Gone at once: killed and reaped by the teardown, not left a zombie of this process.
      expect(res.states).toEqual(['gone']);
      expect(res.after).toBe(res.before);
    });
  }
});
