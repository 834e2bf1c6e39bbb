// Fault injection (issue 10, item 1): node scripts loop run/wait/remove, rm -f of whatever is
// there, commit (-o), and import/rmi on one state directory, and are SIGKILLed and SIGINTed at
// random moments, hundreds of times. Afterwards nothing is invisible (ps -a lists every
// directory under containers/, every name points to a listed container or is freed), prune
// leaves nothing (no container directory, name, lock, temp file or cgroup of the killed
// containers), every name can be used again, no image is half made and no -o tarball is
// truncated under its final name.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { v1Hierarchies } from '../src/cgroup';
import { processAlive } from '../src/proc';
import { Runtime } from '../src/runtime';
import { TARBALL, distModule, unionMounts, until } from './helpers';

const DIST = path.join(__dirname, '..', 'dist');
const NAMES = ['n0', 'n1', 'n2', 'c0', 'c1'];

let base: string;
let root: string;
let out: string;

beforeAll(async () => {
  distModule('container'); // dist is built and current
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-crash-'));
  root = path.join(base, 'root');
  out = path.join(base, 'out');
  fs.mkdirSync(out);
  // busybox made once, before anyone is killed making it.
  new Runtime({ root }).images.get('busybox');
});
afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

/** The loop each kind of script runs until it is killed; `ready` once its Runtime is made. */
function script(kind: 'run' | 'rm' | 'commit' | 'import'): string {
  return `
    const { Runtime } = require(${JSON.stringify(DIST)});
    const root = ${JSON.stringify(root)}, out = ${JSON.stringify(out)}, tarball = ${JSON.stringify(TARBALL)};
    const quiet = () => {};
    const kind = ${JSON.stringify(kind)};
    async function once(rt, i) {
      if (kind === 'run') {
        const remove = i % 2 === 0;
        const name = 'n' + (i % 3);
        await rt.remove(name, { force: true }).catch(quiet);
        const c = await rt.run({ image: 'busybox', command: ['true'], name, stdio: 'ignore', readOnly: i % 3 === 0, remove });
        await c.wait();
        if (!remove) await rt.remove(c.id);
      } else if (kind === 'rm') {
        for (const c of rt.list({ all: true, onError: quiet })) await rt.remove(c.id, { force: true }).catch(quiet);
        for (const n of ${JSON.stringify(NAMES)}) await rt.remove(n, { force: true }).catch(quiet);
        await new Promise((r) => setTimeout(r, 5));
      } else if (kind === 'commit') {
        const name = 'c' + (i % 2);
        await rt.remove(name, { force: true }).catch(quiet);
        const c = await rt.run({ image: 'busybox', command: ['sh', '-c', 'echo new > /new-file; rm /etc/passwd'], name, stdio: 'ignore' });
        await c.wait();
        const image = 'img' + (i % 2);
        try { await rt.removeImage(image, { force: true }); } catch {}
        await rt.commit(c.id, image, i % 2 ? { output: out + '/img' + (i % 4) + '.tar' } : {});
        await rt.remove(c.id);
      } else {
        const image = 'imp' + (i % 2);
        try { await rt.removeImage(image, { force: true }); } catch {}
        await rt.import(tarball, image);
      }
    }
    (async () => {
      // A new Runtime now and then: each one finishes what the killed ones left.
      let rt = new Runtime({ root });
      process.stdout.write('ready\\n');
      for (let i = Math.floor(Math.random() * 1000); ; i++) {
        if (i % 5 === 0) rt = new Runtime({ root });
        await once(rt, i).catch(quiet);
      }
    })();`;
}

interface Lane {
  kinds: Array<'run' | 'rm' | 'commit' | 'import'>;
}

interface Script {
  kind: Lane['kinds'][number];
  child: ChildProcess;
  ready: Promise<boolean>;
  exited: Promise<void>;
}

function startScript(kind: Script['kind']): Script {
  const child: ChildProcess = spawn(process.execPath, ['-e', script(kind)], { stdio: ['ignore', 'pipe', 'ignore'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = Promise.race([new Promise<boolean>((resolve) => child.stdout!.once('data', () => resolve(true))), exited.then(() => false)]);
  return { kind, child, ready, exited };
}

/**
 * Lets a ready script work for a random while, then kills it (SIGKILL mostly, SIGINT a
 * third of the time). True when the signal reached it alive.
 */
async function kill(s: Script): Promise<boolean> {
  if (!(await s.ready)) return false;
  await new Promise((r) => setTimeout(r, Math.random() * (s.kind === 'commit' || s.kind === 'import' ? 300 : 150)));
  const alive = s.child.exitCode === null && s.child.signalCode === null;
  s.child.kill(Math.random() < 0.33 ? 'SIGINT' : 'SIGKILL');
  await s.exited;
  return alive;
}

/** This process's v1 devices cgroup `nsbox` directory, where container cgroups are made. */
function cgroupParent(): string | undefined {
  const h = v1Hierarchies(fs.readFileSync('/proc/self/mountinfo', 'utf8'), fs.readFileSync('/proc/self/cgroup', 'utf8')).get('devices');
  return h && path.join(h.mount, h.path, 'nsbox');
}

/** Containers whose record names a process still alive (read straight from disk). */
function liveContainers(): string[] {
  const out: string[] = [];
  for (const x of ls(path.join(root, 'containers'))) {
    try {
      const rec = JSON.parse(fs.readFileSync(path.join(root, 'containers', x, 'container.json'), 'utf8')) as { pid: number | null; pidStart: string | null };
      if (rec.pid && rec.pidStart && processAlive(rec.pid, rec.pidStart)) out.push(`${x} pid ${rec.pid}`);
    } catch {
      // no record (yet, or any more)
    }
  }
  return out;
}

function ls(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

describe('scripts killed at random moments', () => {
  it('leave nothing invisible, and prune leaves nothing at all', async () => {
    const started = Date.now();
    const seen = new Set<string>();
    // Every container id that ever appears, to look for its cgroup at the end.
    const watcher = setInterval(() => {
      for (const x of ls(path.join(root, 'containers'))) seen.add(x.slice(0, 12));
    }, 5);
    let kills = 0;
    const byKind: Record<string, number> = { run: 0, rm: 0, commit: 0, import: 0 };
    const lanes: Lane[] = [
      { kinds: ['run', 'rm'] },
      { kinds: ['run', 'rm'] },
      { kinds: ['commit', 'import'] },
      { kinds: ['commit', 'run'] },
      { kinds: ['run', 'import'] },
    ];
    // Each lane starts its next script as soon as the current one is ready, so that node's
    // start-up overlaps the work being killed.
    // Bound by the count, not the clock: a busy machine takes longer to reach 200 kills, and
    // the time bound only stops a run that could never reach them.
    const enough = () => kills >= 220 || Date.now() - started > 170_000 || (kills >= 200 && Date.now() - started > 30_000);
    await Promise.all(
      lanes.map(async (lane) => {
        let next = startScript(lane.kinds[0]!);
        for (let i = 1; ; i++) {
          const cur = next;
          await cur.ready;
          if (enough()) {
            cur.child.kill('SIGKILL');
            await cur.exited;
            break;
          }
          next = startScript(lane.kinds[i % lane.kinds.length]!);
          if (await kill(cur)) {
            kills++;
            byKind[cur.kind]!++;
          }
        }
      }),
    );
    // A last round of scripts killed mid-work with nobody after them to clean up: what they
    // leave is what the checks below see.
    const last = (['run', 'run', 'run', 'commit', 'commit', 'import'] as const).map(startScript);
    for (const ok of await Promise.all(last.map(kill))) if (ok) kills++;
    clearInterval(watcher);
    const killedIn = Date.now() - started;
    console.log(`fault injection: ${kills} kills (${JSON.stringify(byKind)}) in ${killedIn} ms; ${seen.size} container ids seen`);
    expect(kills).toBeGreaterThanOrEqual(200);
    for (const k of Object.keys(byKind)) expect(byKind[k]).toBeGreaterThan(10);

    // The killed scripts' containers die with them (nsbox-init follows its supervisor): give
    // the kernel a moment to end them all.
    await until(`the killed scripts' containers to be gone (${liveContainers().join(', ')})`, () => liveContainers().length === 0, 10_000);
    await until('no union mount left', () => unionMounts().filter((l) => l.includes(root)).length === 0, 10_000);

    // ps -a accounts for every directory under containers/, and for every name.
    const before = ls(path.join(root, 'containers'));
    const rt = new Runtime({ root });
    const bad: string[] = [];
    const listed = rt.list({ all: true, onError: (e) => bad.push(e.message) });
    expect(bad).toEqual([]);
    const ids = new Set(listed.map((c) => c.id));
    for (const x of ls(path.join(root, 'containers'))) expect(ids.has(x.slice(0, 12))).toBe(true);
    // What the list() call itself finished (it recovers half-done work first) is gone for good.
    for (const x of before) if (!ids.has(x.slice(0, 12))) expect(fs.existsSync(path.join(root, 'containers', x))).toBe(false);
    for (const n of ls(path.join(root, 'names'))) expect(ids.has(fs.readlinkSync(path.join(root, 'names', n)))).toBe(true);
    console.log(
      `after the kills: ${before.length} container directories, ${listed.length} listed after recovery (${[...new Set(listed.map((c) => c.status))].join(', ')})`,
    );

    // prune leaves nothing.
    await rt.prune();
    expect(ls(path.join(root, 'containers'))).toEqual([]);
    expect(ls(path.join(root, 'names'))).toEqual([]);
    expect(ls(path.join(root, 'tmp'))).toEqual([]);
    expect(ls(path.join(root, 'locks'))).toEqual([]);
    const parent = cgroupParent();
    if (parent) {
      const left = () => [...seen].filter((id) => fs.existsSync(path.join(parent, 'std', id)) || fs.existsSync(path.join(parent, id)));
      await until(`no cgroup of the killed containers (${left().join(', ')})`, () => left().length === 0, 5000);
    }

    // Every image is whole; every tarball is absent or complete under its final name.
    for (const enc of ls(path.join(root, 'images'))) {
      expect(fs.existsSync(path.join(root, 'images', enc, 'image.json'))).toBe(true);
      expect(fs.statSync(path.join(root, 'images', enc, 'rootfs')).isDirectory()).toBe(true);
    }
    for (const f of ls(out).filter((x) => !x.startsWith('.'))) {
      const tar = fs.readFileSync(path.join(out, f));
      expect(tar.length % 512).toBe(0);
      expect(tar.subarray(tar.length - 1024).every((b) => b === 0)).toBe(true);
      expect(spawnSync('tar', ['-tf', path.join(out, f)]).status).toBe(0);
    }

    // Every name is free.
    for (const name of NAMES) {
      const c = await rt.run({ image: 'busybox', command: ['true'], name, stdio: 'ignore', remove: true });
      expect((await c.wait()).exitCode).toBe(0);
    }
    expect(ls(path.join(root, 'containers'))).toEqual([]);
    console.log(`whole test: ${Date.now() - started} ms`);
  }, 240_000);
});
