// nsbox inside worker_threads, attacked: pools of workers that are terminated (or die of an
// uncaught exception) in the middle of run, exec, cp, commit, image import, or with attached
// containers running. Each attack runs test/workers/attack.js in a node process of its own (a
// crash of the process at a worker's teardown is seen whole), with many workers terminated at
// several timings, and then checks what they left: in the main thread (its fds), on the host
// (processes, mounts, cgroup directories, commit freezers) and in the state directory (a
// Runtime of the same, live process must run, list, remove and prune, with nothing stuck).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { TARBALL } from './helpers';

const DIST = path.resolve(__dirname, '../dist');
const ATTACK = path.join(__dirname, 'workers', 'attack.js');

let base: string;
beforeAll(() => {
  const index = path.join(DIST, 'index.js');
  if (!fs.existsSync(index) || fs.statSync(index).mtimeMs < fs.statSync(path.resolve(__dirname, '../src/index.ts')).mtimeMs) {
    throw new Error(`${index} is missing or stale: run \`npx tsc -p .\` first`);
  }
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-workers-'));
});
afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

interface Report {
  before: string[];
  after: string[];
  processes: number[];
  mounts: string[];
  cgroupsBeforePrune: string[];
  cgroups: string[];
  running: string[];
  errors: string[];
  frozen: Array<{ pid: number; gone: boolean; freezer: { dir: string; state: string } | null; state: string | null }>;
  out: string;
  ps: string[];
  psAfterRm: number;
}

let serial = 0;
/** Runs `n` workers of one attack; the node process must end cleanly (no crash at any teardown). */
async function attack(name: string, n: number, opts: { trackUnmanagedFds?: boolean } = {}): Promise<Report> {
  const root = path.join(base, `${name}-${serial++}`, 'root');
  const tag = (0x1000 + Math.floor(Math.random() * 0xefff)).toString(16);
  const node = spawn(process.execPath, [ATTACK], {
    env: {
      ...process.env,
      NSBOX_DIST: DIST,
      ROOT: root,
      ATTACK: name,
      N: String(n),
      TAG: tag,
      TARBALL,
      TRACK_FDS: opts.trackUnmanagedFds === false ? '0' : '1',
    },
  });
  let stdout = '';
  let stderr = '';
  node.stdout.on('data', (d: Buffer) => (stdout += d));
  node.stderr.on('data', (d: Buffer) => (stderr += d));
  const timer = setTimeout(() => node.kill('SIGKILL'), 240_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => node.on('close', (c, s) => r([c, s])));
  clearTimeout(timer);
  // Node warns when a worker's fs.closeSync closes an fd it did not open (the addon's: cp and
  // the layer walks close theirs so); that warning is all stderr may hold.
  expect({ code, signal, stderr: stderr.replace(/^.*closed but not opened in unmanaged mode.*\n(\(Use .*\n)?/gm, '') }).toEqual({
    code: 0,
    signal: null,
    stderr: '',
  });
  return JSON.parse(stdout) as Report;
}

/** What every attack must leave: nothing on the host, a state directory that works. */
function expectNothingLeft(r: Report): void {
  expect(r.errors).toEqual([]);
  expect(r.processes).toEqual([]); // no process of the workers' containers, no child of this process
  expect(r.mounts).toEqual([]); // nothing mounted from the state directory
  expect(r.cgroupsBeforePrune.filter((d) => path.basename(d).startsWith('freeze-'))).toEqual([]); // no commit freezer, even before prune
  expect(r.cgroups).toEqual([]); // no cgroup directory of theirs after prune
  expect(r.running).toEqual([]); // none listed as running
  expect(r.out).toBe('fine\n'); // a new container runs in the same state directory
  expect(r.ps.length).toBe(1);
  expect(r.psAfterRm).toBe(0); // and everything (theirs included) could be removed: no stuck lock
}

const newFds = (r: Report) => r.after.filter((f) => !r.before.includes(f));

describe('workers terminated in the middle of nsbox work', () => {
  it('a pool of 12 workers that each ran one container leaves no fd in the main thread, even without trackUnmanagedFds (the setup cgroup leave fd is the addon environment’s)', async () => {
    const r = await attack('leave', 12, { trackUnmanagedFds: false });
    expectNothingLeft(r);
    expect(newFds(r)).toEqual([]);
  });

  it('mid run() (terminated on setImmediate and 1-80 ms after the call, kept, --rm and limited containers): no crash, nothing left', async () => {
    const r = await attack('run', 18);
    expectNothingLeft(r);
    expect(newFds(r)).toEqual([]);
  });

  it('with attached containers running: they die with the worker (as with a dead supervisor process), nothing left', async () => {
    const r = await attack('attached', 9);
    expectNothingLeft(r);
    expect(newFds(r)).toEqual([]);
  });

  it('mid exec(): no pidfd or pipe of the exec left in the process, nothing left', async () => {
    const r = await attack('exec', 18);
    expectNothingLeft(r);
    expect(newFds(r)).toEqual([]);
  });

  it('by an uncaught exception while starting containers: nothing left', async () => {
    const r = await attack('throw', 9);
    expectNothingLeft(r);
    expect(newFds(r)).toEqual([]);
  });

  it("mid commit, its own container frozen: the container is thawed and dies with the worker, the freezer removed at the worker's teardown", async () => {
    const r = await attack('commit-frozen', 9);
    expectNothingLeft(r);
    expect(r.frozen.length).toBe(9);
    for (const f of r.frozen) expect(f.gone).toBe(true);
    expect(newFds(r)).toEqual([]);
  });

  it('mid commit of a detached container: it runs on, thawed, back in its own freezer cgroup', async () => {
    const r = await attack('commit-detached', 9);
    expectNothingLeft(r);
    expect(r.frozen.length).toBe(9);
    for (const f of r.frozen) {
      expect(f.gone).toBe(false);
      expect(f.state).toMatch(/^[RS]$/); // not D: frozen tasks wait in the freezer
      expect(f.freezer === null || !path.basename(f.freezer.dir).startsWith('freeze-')).toBe(true);
    }
    expect(newFds(r)).toEqual([]);
  });

  // Known gap (docs/DESIGN.md, "Worker threads"): the directory and file fds the addon opens
  // for a cp, a commit's layer walk or an image import are held by JS across awaits and closed
  // by fs.closeSync; Node does not track them, so a worker terminated in the middle leaves
  // them open. What is checked: everything else, and that nothing but such fds is left.
  const onlyWalkFds = (r: Report, under: string[]) => {
    for (const f of newFds(r)) {
      const target = f.slice(f.indexOf(' -> ') + 4);
      expect(target.startsWith('/') && under.some((u) => target.startsWith(u)) && !target.startsWith('/sys/')).toBe(true);
    }
  };

  it('mid cp into and out of a container: nothing left but (known gap) directory fds of the copy', async () => {
    const r = await attack('cp', 10);
    expectNothingLeft(r);
    onlyWalkFds(r, ['/']); // the container's own paths (/tmp, /bin) and the host source
    expect(newFds(r).filter((f) => /pipe:|socket:|anon_inode:|memfd:|\/sys\/fs\/cgroup/.test(f))).toEqual([]);
  });

  it('mid commit: nothing left but (known gap) fds of the layer walk under the state directory', async () => {
    const r = await attack('commit', 9);
    expectNothingLeft(r);
    onlyWalkFds(r, [base]);
  });

  it('mid image import: nothing left but (known gap) the fd of the image being made', async () => {
    const r = await attack('import', 9);
    expectNothingLeft(r);
    onlyWalkFds(r, [base]);
  });
});
