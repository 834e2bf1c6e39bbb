// Detached containers (issue 10 item 7, issue 12 item 4): `run -d` and rt.run({ detach: true })
// are supervised by nsbox-monitor, not by a Node process. Attacked here: the monitor's cost,
// that no Node process stays, that signals to the monitor reach the container, that the
// container never outlives the monitor, that the exit status reaches ps/inspect/wait, and that
// a failed start leaves nothing (no process, fd, mount, directory).
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { launchDetached } from '../src/detach';
import { NsboxError } from '../src/errors';
import { processAlive, processStartTime } from '../src/proc';
import { Runtime } from '../src/runtime';
import { ROOTFS, childPids, hostMounts, openFds, processEnded, until } from './helpers';

const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
let root: string;
let rt: Runtime;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-detach-'));
  rt = new Runtime({ root });
});
afterAll(() => {
  for (const c of rt.list({ all: true })) spawnSync(process.execPath, [MAIN, '--root', root, 'rm', '-f', c.id]);
  fs.rmSync(root, { recursive: true, force: true });
});

function nsbox(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, '--root', root, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function status(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

const rssKiB = (pid: number) => Number(/^(\d+) kB$/.exec(status(pid).VmRSS ?? '')?.[1] ?? NaN);

/** Monitors whose container lives under our state directory (their dir= fd says where). */
function monitorsOf(dir: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/comm`, 'utf8').trim() !== 'nsbox-monitor') continue;
      if (status(Number(e)).State?.startsWith('Z')) continue;
      const fd = /\0dir=(\d+)\0/.exec(fs.readFileSync(`/proc/${e}/cmdline`, 'utf8'))?.[1];
      if (fd && fs.readlinkSync(`/proc/${e}/fd/${fd}`).startsWith(dir)) out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Node processes running this CLI against our state directory. */
function cliProcesses(): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.includes(MAIN) && cmd.includes(root)) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

/** Processes whose cgroup path names the container: what is left of it on the host. */
function containerProcesses(id: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/cgroup`, 'utf8').includes(`/${id}`)) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

function monitorOf(ref: string): number {
  const pid = rt.inspect(ref).pid!;
  return Number(status(pid).PPid);
}

describe('nsbox run -d', () => {
  it("is supervised by nsbox-monitor: under 2 MB, nobody's child here, no Node process left", () => {
    const r = nsbox('run', '-d', '--name', 'light', 'busybox', 'sleep', '1000');
    expect(r).toMatchObject({ code: 0, out: expect.stringMatching(/^[0-9a-f]{12}\n$/), err: '' });
    const mon = monitorOf('light');
    expect(fs.readFileSync(`/proc/${mon}/comm`, 'utf8').trim()).toBe('nsbox-monitor');
    // Its program is nsbox-init's sealed memfd, not node.
    expect(fs.readlinkSync(`/proc/${mon}/exe`)).toMatch(/^\/memfd:nsbox-init/);
    expect(rssKiB(mon)).toBeLessThan(2048);
    expect(cliProcesses()).toEqual([]);
    // A session of its own, /dev/null as stdio, "/" as cwd: it holds nothing of the CLI's.
    expect(Number(status(mon).NSpid)).toBe(mon);
    expect(fs.readlinkSync(`/proc/${mon}/cwd`)).toBe('/');
    for (const fd of [0, 1, 2]) expect(fs.readlinkSync(`/proc/${mon}/fd/${fd}`)).toBe('/dev/null');
    // Not in the caller's session, and not a session leader (it can never get a terminal).
    const session = (pid: number | 'self') => {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
    };
    expect(session(mon)).not.toBe(session('self'));
    expect(session(mon)).not.toBe(mon);
    expect(nsbox('rm', '-f', 'light').code).toBe(0);
  });

  it('SIGTERM to the monitor reaches the container; its exit code shows in wait, ps and inspect', async () => {
    const data = fs.mkdtempSync(path.join(root, 'data-'));
    expect(
      nsbox(
        'run',
        '-d',
        '--name',
        'trap',
        '-v',
        `${data}:/data`,
        'busybox',
        'sh',
        '-c',
        'trap "echo got TERM > /data/sig; exit 42" TERM; touch /data/ready; while :; do sleep 0.1; done',
      ).code,
    ).toBe(0);
    await until('the trap to be set', () => fs.existsSync(path.join(data, 'ready')));
    process.kill(monitorOf('trap'), 'SIGTERM');
    expect(nsbox('wait', 'trap')).toMatchObject({ code: 0, out: '42\n' });
    expect(fs.readFileSync(path.join(data, 'sig'), 'utf8')).toBe('got TERM\n');
    expect(rt.inspect('trap')).toMatchObject({ status: 'exited', exitCode: 42, signal: null, finishedAt: expect.any(String) });
    expect(nsbox('ps', '-a').out).toMatch(/trap\s.*Exited \(42\)/);
  });

  it('every signal it passes on: INT, HUP, QUIT, USR1, USR2', async () => {
    const data = fs.mkdtempSync(path.join(root, 'data-'));
    const traps = ['INT', 'HUP', 'QUIT', 'USR1', 'USR2'].map((s) => `trap "echo ${s} >> /data/got" ${s};`).join(' ');
    expect(
      nsbox(
        'run',
        '-d',
        '--name',
        'sigs',
        '-v',
        `${data}:/data`,
        'busybox',
        'sh',
        '-c',
        `${traps} trap "exit 5" TERM; touch /data/ready; while :; do sleep 0.05; done`,
      ).code,
    ).toBe(0);
    await until('the traps to be set', () => fs.existsSync(path.join(data, 'ready')));
    const mon = monitorOf('sigs');
    for (const s of ['SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const) {
      const before = fs.existsSync(path.join(data, 'got')) ? fs.readFileSync(path.join(data, 'got'), 'utf8') : '';
      process.kill(mon, s);
      await until(`${s} to arrive`, () => fs.existsSync(path.join(data, 'got')) && fs.readFileSync(path.join(data, 'got'), 'utf8') !== before);
    }
    expect(fs.readFileSync(path.join(data, 'got'), 'utf8')).toBe('INT\nHUP\nQUIT\nUSR1\nUSR2\n');
    process.kill(mon, 'SIGTERM');
    expect(await rt.wait('sigs')).toEqual({ exitCode: 5, signal: null });
  });

  it('SIGKILL of the monitor kills the container: it never outlives its supervisor', async () => {
    expect(nsbox('run', '-d', '--name', 'orphan', 'busybox', 'sh', '-c', 'sleep 1000 & sleep 1000').code).toBe(0);
    const init = rt.inspect('orphan').pid!;
    const initStart = processStartTime(init)!;
    const kids = fs.readFileSync(`/proc/${init}/task/${init}/children`, 'utf8').trim().split(/\s+/).map(Number);
    const sh = kids[0]!;
    await until('the background sleep', () => fs.readFileSync(`/proc/${sh}/task/${sh}/children`, 'utf8').trim() !== '');
    const sleeps = fs.readFileSync(`/proc/${sh}/task/${sh}/children`, 'utf8').trim().split(/\s+/).map(Number);
    const starts = sleeps.map((p) => [p, processStartTime(p)!] as const);
    process.kill(monitorOf('orphan'), 'SIGKILL');
    await until('the container to die', () => !processAlive(init, initStart), 3000);
    await until('every process of it to die', () => starts.every(([p, s]) => !processAlive(p, s)), 3000);
    // Nobody wrote its status: ps says it exited, with the code unknown.
    expect(rt.inspect('orphan')).toMatchObject({ status: 'exited', exitCode: null });
    expect(nsbox('wait', 'orphan').code).toBe(0);
  });

  it('stop and kill of a detached container', async () => {
    expect(nsbox('run', '-d', '--name', 'stopme', 'busybox', 'sleep', '1000').code).toBe(0);
    expect(nsbox('stop', '-t', '5', 'stopme')).toMatchObject({ code: 0, out: 'stopme\n' });
    expect(nsbox('wait', 'stopme').out).toBe('143\n');
    expect(nsbox('run', '-d', '--name', 'killme', 'busybox', 'sleep', '1000').code).toBe(0);
    const mon = monitorOf('killme');
    expect(nsbox('kill', 'killme').code).toBe(0);
    expect(nsbox('wait', 'killme').out).toBe('137\n');
    expect(rt.inspect('killme')).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
    // The monitor wrote that, then ended.
    await until('the monitor to end', () => processEnded(mon));
  });

  it('--rm: the exited container is removed by the next use of the state directory', async () => {
    const r = nsbox('run', '-d', '--rm', 'busybox', 'true');
    const id = r.out.trim();
    await until('the monitor to go', () => monitorsOf(path.join(root, 'containers', id)).length === 0);
    expect(nsbox('ps', '-a').out).not.toContain(id);
    expect(fs.existsSync(path.join(root, 'containers', id))).toBe(false);
  });

  it('20 detached containers cost less than 40 MB of supervision in all', () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = nsbox('run', '-d', 'busybox', 'sleep', '1000');
      expect(r.code).toBe(0);
      ids.push(r.out.trim());
    }
    let monitors = 0;
    let inits = 0;
    for (const id of ids) {
      const init = rt.inspect(id).pid!;
      inits += rssKiB(init);
      monitors += rssKiB(Number(status(init).PPid));
    }
    console.log(`20 detached containers: monitors ${monitors} KiB, nsbox-inits ${inits} KiB`);
    expect(monitors + inits).toBeLessThan(40 * 1024);
    expect(cliProcesses()).toEqual([]);
    expect(nsbox('rm', '-f', ...ids).code).toBe(0);
  });
});

describe('rt.run({ detach: true })', () => {
  it('returns once started; no child, fd or mount of this process stays; the status comes back', async () => {
    const fds = openFds();
    const mounts = hostMounts();
    const kids = childPids();
    const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'sleep 0.3; exit 9'], detach: true });
    expect(c).toMatchObject({ id: expect.stringMatching(/^[0-9a-f]{12}$/), pid: expect.any(Number), monitorPid: expect.any(Number) });
    expect(childPids()).toEqual(kids);
    expect(openFds()).toEqual(fds);
    expect(hostMounts()).toEqual(mounts);
    expect(rt.inspect(c.id).status).toBe('running');
    expect(await rt.wait(c.id)).toEqual({ exitCode: 9, signal: null });
    await rt.remove(c.id);
  });

  it('refuses what nothing would serve: tty, an abort signal; log options without detach', async () => {
    await expect(rt.run({ image: 'busybox', detach: true, tty: true } as never)).rejects.toThrow(/tty/);
    await expect(rt.run({ image: 'busybox', detach: true, signal: new AbortController().signal } as never)).rejects.toThrow(/abort signal/);
    await expect(rt.run({ image: 'busybox', detach: true, timeout: 0 })).rejects.toThrow(/timeout/);
    await expect(rt.run({ image: 'busybox', logMaxFiles: 3 } as never)).rejects.toThrow(/detach/);
    await expect(rt.run({ image: 'busybox', detach: true, logMaxSize: '1b' })).rejects.toThrow(/logMaxSize/);
    expect(rt.list({ all: true }).filter((c) => c.status === 'creating')).toEqual([]);
  });

  it('the monitor enforces a timeout on the whole container: children that ignore SIGTERM and daemonise die too', async () => {
    const data = fs.mkdtempSync(path.join(root, 'data-'));
    const started = Date.now();
    const c = await rt.run({
      image: 'busybox',
      detach: true,
      timeout: 1200,
      volumes: [`${data}:/data`],
      command: ['sh', '-c', 'trap "" TERM; (trap "" TERM HUP; setsid sleep 1000 & echo $! > /data/bg; wait) & while :; do sleep 0.1; done'],
    });
    await until('the background child', () => fs.existsSync(path.join(data, 'bg')) && fs.readFileSync(path.join(data, 'bg'), 'utf8').trim() !== '');
    const mon = monitorOf(c.id);
    const monStart = processStartTime(mon);
    expect(await rt.wait(c.id)).toEqual({ exitCode: null, signal: 'SIGKILL' });
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(1200);
    expect(rt.inspect(c.id)).toMatchObject({ status: 'exited', killedFor: 'timeout' });
    expect(nsbox('ps', '-a').out).toMatch(new RegExp(`${c.id}\\s.*Exited \\(137, timeout\\)`));
    // Nothing of it is left: not the monitor, not a process in its pid namespace.
    await until('the monitor to exit', () => !processAlive(mon, monStart));
    expect(containerProcesses(c.id)).toEqual([]);
    await rt.remove(c.id);
  });

  it('a container that ends before its timeout, or uses no CPU, is not called killed', async () => {
    const c = await rt.run({ image: 'busybox', detach: true, timeout: 60_000, limits: { cpuTime: 5 }, command: ['sh', '-c', 'sleep 0.5; exit 3'] });
    expect(await rt.wait(c.id)).toEqual({ exitCode: 3, signal: null });
    expect(rt.inspect(c.id).killedFor).toBeUndefined();
    await rt.remove(c.id);
  });

  it("the monitor enforces limits.cpuTime on all the container's processes together, through the API and the CLI", async () => {
    // Two busy processes: 0.6 s of CPU is used in about 0.3 s on two cores, well before the
    // sleeping third would be killed by anything else.
    const c = await rt.run({
      image: 'busybox',
      detach: true,
      limits: { cpuTime: 0.6 },
      command: ['sh', '-c', 'while :; do :; done & while :; do :; done & sleep 1000'],
    });
    expect(await rt.wait(c.id)).toEqual({ exitCode: null, signal: 'SIGKILL' });
    expect(rt.inspect(c.id)).toMatchObject({ killedFor: 'cpuTime' });
    expect(containerProcesses(c.id)).toEqual([]);
    await rt.remove(c.id);
    const r = nsbox('run', '-d', '--name', 'spin', '--cpu-time', '300ms', 'busybox', 'sh', '-c', 'while :; do :; done');
    expect(r.code).toBe(0);
    expect(nsbox('wait', 'spin')).toMatchObject({ code: 0, out: '137\n' });
    expect(nsbox('ps', '-a').out).toMatch(/spin\s.*Exited \(137, CPU time\)/);
    expect(nsbox('rm', 'spin').code).toBe(0);
  });

  it('start -d enforces the timeout the container was run with, again', async () => {
    const c = await rt.run({ image: 'busybox', detach: true, timeout: 500, command: ['sleep', '1000'] });
    expect(await rt.wait(c.id)).toEqual({ exitCode: null, signal: 'SIGKILL' });
    await rt.start(c.id, { detach: true });
    expect(rt.inspect(c.id).status).toBe('running');
    expect(await rt.wait(c.id)).toEqual({ exitCode: null, signal: 'SIGKILL' });
    expect(rt.inspect(c.id)).toMatchObject({ killedFor: 'timeout' });
    await rt.remove(c.id);
  });

  it('a failed start leaves nothing: bad command, bad working directory', async () => {
    const fds = openFds();
    const mounts = hostMounts();
    const kids = childPids();
    const before = rt.list({ all: true }).length;
    const err = await rt.run({ image: 'busybox', command: ['no-such-command'], detach: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NsboxError);
    expect(err).toMatchObject({ code: 'ENOENT', step: 'exec' });
    const err2 = await rt.run({ image: 'busybox', command: ['true'], cwd: '/no/such/dir', detach: true }).catch((e: unknown) => e);
    expect(err2).toMatchObject({ code: 'ENOENT' });
    expect(rt.list({ all: true }).length).toBe(before);
    expect(monitorsOf(root)).toEqual([]);
    expect(childPids()).toEqual(kids);
    expect(openFds()).toEqual(fds);
    expect(hostMounts()).toEqual(mounts);
  });
});

describe("the monitor's ack", () => {
  it('a caller that dies before its record names the monitor leaves no container running', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'bare-'));
    const started = launchDetached({ root: { type: 'bind', path: ROOTFS }, command: ['sleep', '1000'] }, 'abcdefabcdef', dir, {});
    const start = processStartTime(started.pid)!;
    // Still running while the caller may yet write its record...
    await new Promise((r) => setTimeout(r, 200));
    expect(processAlive(started.pid, start)).toBe(true);
    // ...and killed once the caller is gone without acknowledging (its ack fd closed).
    fs.closeSync(started.ack);
    await until('the container to die', () => !processAlive(started.pid, start), 3000);
    await until('exit.json', () => fs.existsSync(path.join(dir, 'exit.json')), 3000);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'exit.json'), 'utf8'))).toMatchObject({ exitCode: null, signal: 9 });
  });
});

describe('run -d killed at random moments', () => {
  it('every container left running is one ps lists as running; rm -f of them leaves no monitor', async () => {
    const crashRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-detach-crash-'));
    try {
      spawnSync(process.execPath, [MAIN, '--root', crashRoot, 'run', '--rm', 'busybox', 'true']);
      for (let i = 0; i < 40; i++) {
        const p = spawn(process.execPath, [MAIN, '--root', crashRoot, 'run', '-d', 'busybox', 'sleep', '1000'], { stdio: 'ignore' });
        const gone = new Promise((r) => p.on('exit', r));
        await new Promise((r) => setTimeout(r, 80 + Math.random() * 220));
        p.kill('SIGKILL');
        await gone;
      }
      await new Promise((r) => setTimeout(r, 300));
      const crt = new Runtime({ root: crashRoot });
      const running = new Set(crt.list().map((c) => c.pid));
      // Each live monitor's container is accounted for by a running record.
      for (const mon of monitorsOf(crashRoot)) {
        const init = Number(fs.readFileSync(`/proc/${mon}/task/${mon}/children`, 'utf8').trim().split(/\s+/)[0]);
        expect(running.has(init)).toBe(true);
      }
      spawnSync(process.execPath, [MAIN, '--root', crashRoot, 'rm', '-f', ...crt.list({ all: true }).map((c) => c.id)]);
      spawnSync(process.execPath, [MAIN, '--root', crashRoot, 'prune']);
      await until('every monitor to end', () => monitorsOf(crashRoot).length === 0, 5000);
      expect(fs.readdirSync(path.join(crashRoot, 'containers'))).toEqual([]);
    } finally {
      fs.rmSync(crashRoot, { recursive: true, force: true });
    }
  });
});

describe('nsbox run -d failures', () => {
  it('a bad image: 125 and one line; a bad command: 127 and one line; nothing remains', () => {
    const before = fs.readdirSync(path.join(root, 'containers')).sort();
    const mounts = hostMounts();
    const img = nsbox('run', '-d', 'no-such-image', 'true');
    expect(img.code).toBe(125);
    expect(img.out).toBe('');
    expect(img.err.split('\n')[0]).toMatch(/^nsbox: image no-such-image: no such image$/);
    const cmd = nsbox('run', '-d', 'busybox', 'no-such-command');
    expect(cmd).toMatchObject({ code: 127, out: '', err: 'nsbox: exec no-such-command: not found in PATH (ENOENT)\n' });
    expect(fs.readdirSync(path.join(root, 'containers')).sort()).toEqual(before);
    expect(monitorsOf(root)).toEqual([]);
    expect(cliProcesses()).toEqual([]);
    expect(hostMounts()).toEqual(mounts);
  });
});
