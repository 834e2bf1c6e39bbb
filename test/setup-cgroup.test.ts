// The setup below the loop (issue 14, core/spawner.h): a root start's child is born in
// `<caller's cpu cgroup>/nsbox-setup` (low cpu.shares) with its spawner thread, and leaves it
// for the caller's cpu cgroup as its last step. What these attack: a container's own processes
// (nsbox-init, the command, an exec'd process) left in the setup cgroup or anywhere but where
// the caller is, at a nice value other than the caller's, or seeing the setup cgroup through
// their cgroup namespace; in every way a container starts.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { SETUP_CGROUP, SETUP_SHARES, v1Hierarchies } from '../src/cgroup';
import { Runtime } from '../src/runtime';
import { Container, ROOTFS, distModule, openFds, runNode, until } from './helpers';

const cpu = v1Hierarchies(fs.readFileSync('/proc/self/mountinfo', 'utf8'), fs.readFileSync('/proc/self/cgroup', 'utf8')).get('cpu');
const d = cpu ? describe : describe.skip;
// The compiled runtime, for a Node process of the test's own (`npm test` runs tsc first).
const RUNTIME_JS = path.join(path.dirname(distModule('container')), 'runtime.js');

/** The cpu hierarchy's line of /proc/PID/cgroup ("N:cpu:/path"); `self` for this process. */
const cpuLine = (pid: number | string) =>
  fs
    .readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => l.split(':')[1]?.split(',').includes('cpu'))!;
/** The nice field of /proc/PID/stat (the 19th). */
const niceOf = (pid: number) => Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);
/** `pid` and every descendant (children are per thread: a container is its spawner thread's). */
function tree(pid: number): number[] {
  const kids: number[] = [];
  try {
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      kids.push(...fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    }
  } catch {
    // gone
  }
  return [pid, ...kids.flatMap(tree)];
}
/** This process's threads in the setup cgroup. */
const threadsInSetup = () => fs.readdirSync('/proc/self/task').filter((t) => cpuLine(`self/task/${t}`).endsWith(`/${SETUP_CGROUP}`));

let base: string;
let rt: Runtime;
beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-setupcg-'));
  rt = new Runtime({ root: path.join(base, 'root') });
});
afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

d('the setup cgroup', () => {
  const mine = () => cpuLine('self');
  /** Each process `pid` heads (nsbox-init and the command): where this process is, at its nice. */
  async function expectAtCallers(pid: number) {
    // The command is nsbox-init's child: wait for it to be there.
    await until('the command', () => tree(pid).length >= 2);
    const seen = tree(pid).map((p) => ({ cgroup: cpuLine(p), nice: niceOf(p) }));
    expect(seen).toEqual(seen.map(() => ({ cgroup: mine(), nice: os.getPriority() })));
  }

  it('is made with its shares, the spawner threads are in it, and a container is not: default and userns auto', async () => {
    const c = await rt.run({ image: 'busybox', command: ['sleep', '30'], stdio: 'ignore', remove: true });
    try {
      // The feature is on here: else everything below would hold without it.
      expect(threadsInSetup().length).toBeGreaterThan(0);
      const dir = path.join(cpu!.mount, cpu!.path, SETUP_CGROUP);
      expect(fs.readFileSync(path.join(dir, 'cpu.shares'), 'utf8').trim()).toBe(String(SETUP_SHARES));
      await expectAtCallers(c.pid);
      // Nothing but spawner threads is in it: never a process's main thread, as a container's
      // processes are (single-threaded). Not "this process's threads only": every nsbox in
      // this cpu cgroup (other test files in parallel, other programs) shares it.
      const tasks = fs.readFileSync(path.join(dir, 'tasks'), 'utf8').trim().split('\n').filter(Boolean);
      const leaders = tasks.filter((t) => {
        try {
          return /^Tgid:\s*(\d+)$/m.exec(fs.readFileSync(`/proc/${t}/status`, 'utf8'))![1] === t;
        } catch {
          return false; // gone meanwhile
        }
      });
      expect(leaders).toEqual([]);
      expect(tasks.filter((t) => fs.existsSync(`/proc/self/task/${t}`)).length).toBeGreaterThan(0);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
    const auto = await rt.run({ image: 'busybox', command: ['sleep', '30'], stdio: 'ignore', remove: true, userns: 'auto' });
    try {
      await expectAtCallers(auto.pid);
    } finally {
      auto.kill('SIGKILL');
      await auto.wait();
    }
  });

  it('Container.start (the start the JS thread waits for) comes back the same way', async () => {
    const c = Container.start({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '30'], stdio: 'ignore' });
    try {
      expect(threadsInSetup().length).toBeGreaterThan(0);
      await expectAtCallers(c.pid);
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
  });

  it("inside, the cgroup namespace is rooted where the container is, not at the setup cgroup (default, userns auto, a cpu limit's own cgroup)", async () => {
    for (const extra of [{}, { userns: 'auto' as const }, { limits: { cpus: 0.5 } }]) {
      const r = await rt.output({ image: 'busybox', command: ['cat', '/proc/self/cgroup'], ...extra });
      const line = r.stdout
        .toString()
        .split('\n')
        .find((l) => l.split(':')[1]?.split(',').includes('cpu'));
      expect(line, JSON.stringify(extra)).toMatch(/^\d+:[a-z,]*cpu[a-z,]*:\/$/);
    }
  });

  it('a container with a cpu cgroup of its own is in that one, never in the setup cgroup', async () => {
    const c = await rt.run({ image: 'busybox', command: ['sleep', '30'], stdio: 'ignore', remove: true, limits: { cpus: 0.5 } });
    try {
      await until('the command', () => tree(c.pid).length >= 2);
      for (const p of tree(c.pid)) {
        expect(cpuLine(p)).toMatch(/:\/nsbox\/[^/]+$/);
        expect(niceOf(p)).toBe(os.getPriority());
      }
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
  });

  it("exec's process and a detached container (-d) are where the caller is, at its nice", async () => {
    const c = await rt.run({ image: 'busybox', command: ['sleep', '30'], stdio: 'ignore', remove: true });
    try {
      const e = rt.exec(c.id!, { command: ['sleep', '30'], stdio: 'ignore' });
      try {
        await expectAtCallers(e.pid);
      } finally {
        e.kill('SIGKILL');
        await e.wait();
      }
    } finally {
      c.kill('SIGKILL');
      await c.wait();
    }
    const dc = await rt.run({ image: 'busybox', command: ['sleep', '30'], detach: true });
    try {
      await expectAtCallers(dc.pid);
    } finally {
      await rt.remove(dc.id, { force: true });
    }
  });

  it('a caller at nice 5 in a cpu cgroup of its own: the setup cgroup is made below it, the containers come back to it at nice 5; a failing start leaves nothing in it', async () => {
    const own = path.join(cpu!.mount, cpu!.path, `nsbox-test-caller-${process.pid}`);
    const runtime = RUNTIME_JS;
    const script = `
      const fs = require('fs');
      const { Runtime } = require(${JSON.stringify(runtime)});
      const line = (p) => fs.readFileSync('/proc/' + p + '/cgroup', 'utf8').split('\\n').find((l) => l.split(':')[1].split(',').includes('cpu'));
      const nice = (p) => Number(fs.readFileSync('/proc/' + p + '/stat', 'utf8').split(') ')[1].split(' ')[16]);
      (async () => {
        const rt = new Runtime({ root: ${JSON.stringify(path.join(base, 'root-caller'))} });
        const out = [];
        for (const extra of [{}, { userns: 'auto' }]) {
          const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'echo $(cut -d" " -f19 /proc/self/stat) $(grep -E "^[0-9]+:([a-z]+,)*cpu(,[a-z]+)*:" /proc/self/cgroup); sleep 30'], stdio: ['ignore', 'pipe', 'ignore'], remove: true, ...extra });
          const inside = await new Promise((r) => c.stdout.once('data', (d) => r(String(d).trim())));
          const cmd = Number(fs.readFileSync('/proc/' + c.pid + '/task/' + c.pid + '/children', 'utf8').trim());
          out.push({ init: line(c.pid), cmd: line(cmd), niceInit: nice(c.pid), niceCmd: nice(cmd), inside });
          c.kill('SIGKILL');
          await c.wait();
        }
        const failed = await rt.run({ image: 'busybox', command: ['/no/such/program'], stdio: 'ignore', remove: true }).then(() => 'started', (e) => e.code);
        const tasks = fs.readFileSync(${JSON.stringify(path.join(own, SETUP_CGROUP, 'tasks'))}, 'utf8').trim().split('\\n').filter(Boolean);
        console.log(JSON.stringify({ self: line('self'), out, failed, strangers: tasks.filter((t) => !fs.existsSync('/proc/self/task/' + t)) }));
      })().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exitCode = 1; });
    `;
    fs.mkdirSync(own);
    try {
      const r = await runNode(script, { prelude: `echo $$ > ${own}/cgroup.procs && renice -n 5 -p $$ >/dev/null`, timeoutMs: 60_000 });
      expect(r.stderr).toBe('');
      const got = JSON.parse(r.stdout.trim().split('\n').pop()!);
      expect(got.self).toMatch(new RegExp(`:${cpu!.path === '/' ? '' : cpu!.path}/nsbox-test-caller-${process.pid}$`));
      for (const o of got.out) {
        // Inside: nice 5, and the cpu cgroup as the container's namespace shows it: its root
        // (not the caller's path, nor "/.." from a namespace rooted in the setup cgroup).
        expect(o).toEqual({ init: got.self, cmd: got.self, niceInit: 5, niceCmd: 5, inside: `5 ${got.self.split(':').slice(0, 2).join(':')}:/` });
      }
      expect(got.out).toHaveLength(2);
      expect(got.failed).toBe('ENOENT');
      expect(got.strangers).toEqual([]);
    } finally {
      fs.rmdirSync(path.join(own, SETUP_CGROUP));
      fs.rmdirSync(own);
    }
  });

  it('the CLI: `nsbox run` at nice 5 in a cpu cgroup of its own leaves its container there, at nice 5', async () => {
    const own = path.join(cpu!.mount, cpu!.path, `nsbox-test-cli-${process.pid}`);
    const cli = path.join(path.dirname(distModule('container')), 'cli', 'start.js');
    fs.mkdirSync(own);
    const sh = spawn(
      'bash',
      [
        '-c',
        `echo $$ > ${own}/cgroup.procs && renice -n 5 -p $$ >/dev/null && exec "$0" "$1" --root "$2" run --rm busybox sleep 30`,
        process.execPath,
        cli,
        rt.root,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    sh.stderr!.on('data', (d: Buffer) => (stderr += d));
    try {
      // bash became the CLI's node; below it nsbox-init (after the busybox image is made),
      // below that the command.
      const comm = (p: number) => {
        try {
          return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim();
        } catch {
          return ''; // gone meanwhile (the image's making)
        }
      };
      let sleeper: number | undefined;
      await until('the command', () => (sleeper = tree(sh.pid!).find((p) => comm(p) === 'sleep')) !== undefined, 30_000).catch((e: Error) => {
        throw new Error(`${e.message}: ${stderr}`);
      });
      const init = Number(fs.readFileSync(`/proc/${sleeper}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
      expect(comm(init)).toBe('nsbox-init');
      const seen = [sh.pid!, init, sleeper!].map((p) => ({ cgroup: cpuLine(p), nice: niceOf(p) }));
      expect(seen[0]!.cgroup).toMatch(new RegExp(`/nsbox-test-cli-${process.pid}$`));
      expect(seen).toEqual(seen.map(() => ({ cgroup: seen[0]!.cgroup, nice: 5 })));
      // It went through the setup cgroup made below the caller's.
      expect(fs.existsSync(path.join(own, SETUP_CGROUP))).toBe(true);
    } finally {
      const exited = new Promise((r) => sh.once('exit', r));
      sh.kill('SIGTERM');
      await exited;
      await until('the container gone', () => fs.readFileSync(path.join(own, 'tasks'), 'utf8').trim() === '', 10_000);
      if (fs.existsSync(path.join(own, SETUP_CGROUP))) fs.rmdirSync(path.join(own, SETUP_CGROUP));
      fs.rmdirSync(own);
    }
  });

  it('a caller moved to another cpu cgroup (cgroup.procs): its next containers run where it is now, and a start still works once the cgroup it left is removed', async () => {
    // Found by the attack review: the leave fd was opened once, on the cgroup the process was
    // in at its first start, so a moved process sent its containers back there, and every
    // start failed (ENODEV) once that cgroup was removed.
    const x = path.join(cpu!.mount, cpu!.path, `nsbox-test-moved-x-${process.pid}`);
    const y = path.join(cpu!.mount, cpu!.path, `nsbox-test-moved-y-${process.pid}`);
    const script = `
      const fs = require('fs');
      const { Runtime } = require(${JSON.stringify(RUNTIME_JS)});
      const line = (p) => fs.readFileSync('/proc/' + p + '/cgroup', 'utf8').split('\\n').find((l) => l.split(':')[1].split(',').includes('cpu'));
      (async () => {
        const rt = new Runtime({ root: ${JSON.stringify(path.join(base, 'root-moved'))} });
        const first = (await rt.output({ image: 'busybox', command: ['true'] })).exitCode;
        fs.writeFileSync(${JSON.stringify(path.join(y, 'cgroup.procs'))}, String(process.pid));
        fs.rmdirSync(${JSON.stringify(path.join(x, SETUP_CGROUP))});
        fs.rmdirSync(${JSON.stringify(x)});
        const c = await rt.run({ image: 'busybox', command: ['sleep', '30'], stdio: 'ignore', remove: true });
        const cmd = Number(fs.readFileSync('/proc/' + c.pid + '/task/' + c.pid + '/children', 'utf8').trim() || c.pid);
        const seen = { first, self: line('self'), init: line(c.pid), cmd: line(cmd) };
        c.kill('SIGKILL');
        await c.wait();
        console.log(JSON.stringify(seen));
      })().catch((e) => { console.log(JSON.stringify({ error: e.code + ' ' + e.message })); process.exitCode = 1; });
    `;
    fs.mkdirSync(x);
    fs.mkdirSync(y);
    try {
      const r = await runNode(script, { prelude: `echo $$ > ${x}/cgroup.procs`, timeoutMs: 60_000 });
      const got = JSON.parse(r.stdout.trim().split('\n').pop()!);
      expect(got.error).toBeUndefined();
      expect(got.self).toMatch(new RegExp(`/nsbox-test-moved-y-${process.pid}$`));
      expect(got).toEqual({ first: 0, self: got.self, init: got.self, cmd: got.self });
    } finally {
      for (const dir of [path.join(x, SETUP_CGROUP), x, path.join(y, SETUP_CGROUP), y]) if (fs.existsSync(dir)) fs.rmdirSync(dir);
    }
  });

  it('no fd on a cgroup file reaches a container, and its cgroup namespace is rooted at its cgroups for every controller: tty, host network, privileged, a device, memory, pids and cpu limits, another user without capabilities', async () => {
    const variants = [
      { tty: true },
      { network: 'host' as const },
      { security: { privileged: true } },
      { devices: [{ source: '/dev/null', target: '/dev/mynull' }] },
      { limits: { memory: '64m' } },
      { limits: { pids: 50 } },
      { limits: { cpus: 0.5 } },
      // The leave is the child's write to a root-owned `tasks`: before the user is changed.
      { security: { user: '1000:1000', capDrop: ['ALL'] } },
    ];
    for (const extra of variants) {
      const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'cat /proc/self/cgroup > /tmp/cg; sleep 30'], stdio: 'ignore', remove: true, ...extra });
      try {
        await until(
          'the command',
          () => tree(c.pid).length >= 2 && fs.existsSync(`/proc/${c.pid}/root/tmp/cg`) && fs.statSync(`/proc/${c.pid}/root/tmp/cg`).size > 0,
        );
        const fds = tree(c.pid).flatMap((p) => {
          try {
            return fs.readdirSync(`/proc/${p}/fd`).map((f) => fs.readlinkSync(`/proc/${p}/fd/${f}`));
          } catch {
            return [];
          }
        });
        expect(
          fds.filter((t) => t.startsWith('/sys/fs/cgroup') || t.startsWith(cpu!.mount)),
          JSON.stringify(extra),
        ).toEqual([]);
        const inside = fs.readFileSync(`/proc/${c.pid}/root/tmp/cg`, 'utf8').trim().split('\n');
        expect(
          inside.filter((l) => !l.endsWith(':/')),
          JSON.stringify(extra),
        ).toEqual([]);
        for (const p of tree(c.pid)) expect(cpuLine(p), JSON.stringify(extra)).not.toMatch(new RegExp(`/${SETUP_CGROUP}$`));
      } finally {
        c.kill('SIGKILL');
        await c.wait();
      }
    }
  });

  it('a start failing in the setup cgroup, before the leave (a working directory that is a file): a clear error, no process left in it or below this one, no fd, no container', async () => {
    const dir = path.join(cpu!.mount, cpu!.path, SETUP_CGROUP);
    const fds = openFds();
    for (const extra of [{}, { tty: true }, { limits: { memory: '64m' } }, { userns: 'auto' as const }]) {
      await expect(
        rt.run({ image: 'busybox', command: ['true'], cwd: '/bin/sh', stdio: 'ignore', remove: true, ...extra }),
        JSON.stringify(extra),
      ).rejects.toMatchObject({
        code: 'ENOTDIR',
        message: expect.stringMatching(/^working directory \/bin\/sh: /),
      });
      const tasks = fs.readFileSync(path.join(dir, 'tasks'), 'utf8').trim().split('\n').filter(Boolean);
      const leaders = tasks.filter((t) => {
        try {
          return /^Tgid:\s*(\d+)$/m.exec(fs.readFileSync(`/proc/${t}/status`, 'utf8'))![1] === t;
        } catch {
          return false;
        }
      });
      expect(leaders, JSON.stringify(extra)).toEqual([]);
      expect(tree(process.pid), JSON.stringify(extra)).toEqual([process.pid]);
    }
    expect(openFds()).toEqual(fds);
    expect(rt.list({ all: true })).toEqual([]);
  });

  it('NSBOX_SETUP_CGROUP=0 turns it off: the spawner threads stay where the caller is', async () => {
    const script = `
      const fs = require('fs');
      const { Runtime } = require(${JSON.stringify(RUNTIME_JS)});
      (async () => {
        const rt = new Runtime({ root: ${JSON.stringify(path.join(base, 'root-off'))} });
        const r = await rt.output({ image: 'busybox', command: ['true'] });
        const inSetup = fs.readdirSync('/proc/self/task').filter((t) => fs.readFileSync('/proc/self/task/' + t + '/cgroup', 'utf8').includes('/${SETUP_CGROUP}\\n'));
        console.log(JSON.stringify({ code: r.exitCode, inSetup }));
      })();
    `;
    const r = await runNode(script, { prelude: 'export NSBOX_SETUP_CGROUP=0', timeoutMs: 60_000 });
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual({ code: 0, inSetup: [] });
  });
});
