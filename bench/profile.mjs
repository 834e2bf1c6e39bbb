#!/usr/bin/env node
// Where one in-process start goes, phase by phase: wraps the functions Runtime.run calls
// (from dist/, nothing in src/ changes) and times them over many starts.
//
//   node bench/profile.mjs [RUNS] [--net host]
//   node bench/profile.mjs --images TARBALL [REPEAT]     import and commit, phase by phase
//   node bench/profile.mjs --ab trash,volatile [RUNS]   A/B of proposed speed-ups (see below)
//
// Prints the median of each phase and its share of the median start-to-exit time. For the
// kernel side, run the same loop under strace or perf:
//   strace -f -c -o /tmp/s.txt node bench/profile.mjs 200
//   perf record -g -a -o /tmp/p.data -- node bench/profile.mjs 300
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

import { CACHE, REPO } from './lib/setup.mjs';
import { summarize } from './lib/stats.mjs';

const args = process.argv.slice(2);
const runs = Number(args.find((a) => /^\d+$/.test(a)) ?? 300);
const network = args.includes('--net') ? args[args.indexOf('--net') + 1] : 'none';
const require = createRequire(import.meta.url);
const dist = path.join(REPO, 'dist');
const now = () => Number(process.hrtime.bigint()) / 1e6;

const phases = new Map();
const record = (name, ms) => {
  if (!phases.has(name)) phases.set(name, []);
  phases.get(name).push(ms);
};
let current = null;

/** Replaces obj[key] with a timed wrapper (sync, or async: timed until the promise settles). */
function timeIt(obj, key, name = key) {
  const orig = obj[key];
  obj[key] = function timed(...a) {
    const t0 = now();
    const add = () => {
      if (current) current[name] = (current[name] ?? 0) + now() - t0;
    };
    let r;
    try {
      r = orig.apply(this, a);
    } catch (e) {
      add();
      throw e;
    }
    if (r && typeof r.then === 'function') return r.finally(add);
    add();
    return r;
  };
}

const layout = require(path.join(dist, 'layout.js'));
const plan = require(path.join(dist, 'plan.js'));
const nativeMod = require(path.join(dist, 'native.js'));
const workspace = require(path.join(dist, 'workspace.js'));
const { Runtime } = require(path.join(dist, 'runtime.js'));

timeIt(layout, 'writeJsonAtomic', 'write JSON (temp + rename)');
timeIt(layout, 'processStartTime', 'read /proc/PID/stat');
timeIt(layout, 'newId', 'new id');
timeIt(plan, 'buildPlan', 'build plan (JS)');
timeIt(workspace.Workspace.prototype, 'create', 'workspace create (mkdir)');
timeIt(workspace.Workspace.prototype, 'destroy', 'workspace destroy (rm -r)');
const binding = nativeMod.native();
const spawn = binding.spawn;
let spawnedAt = 0;
binding.spawn = function timedSpawn(p, onExit) {
  const t0 = now();
  const r = spawn.call(this, p, (...x) => {
    if (current) current['spawn returned -> exit seen by JS'] = now() - spawnedAt;
    onExit(...x);
  });
  spawnedAt = now();
  if (current) current['native spawn (clone .. execve)'] = spawnedAt - t0;
  return r;
};
nativeMod.native = () => binding;

const root = path.join(CACHE, `profile-state-${process.pid}`);
const rt = new Runtime({ root });

if (args.includes('--ab')) {
  // Proposals measured against the code as it is, in alternating blocks of 50 starts:
  //   trash     the workspace leaves containers/ by one rename, the recursive delete runs on
  //             the thread pool while the next container starts;
  //   volatile  the overlay is mounted with "volatile": no sync of the upper filesystem when
  //             the container's overlay superblock goes away (its write layer is thrown away);
  //   privileged  security: { privileged: true }: no masked or read-only paths, no seccomp
  //             filter, all capabilities: what the default confinement costs;
  //   memo      buildConfinement memoised per options: the seccomp program and the steps are
  //             the same for every container with the same security options;
  //   fastrm    removal by the known layout (unlink the record, rmdir the empty layer dirs),
  //             falling back to the recursive delete when the container wrote anything.
  const wanted = args[args.indexOf('--ab') + 1].split(',');
  const asIsDestroy = workspace.Workspace.prototype.destroy;
  const asIsPlan = plan.buildPlan;
  const security = require(path.join(dist, 'security.js'));
  const asIsConfine = security.buildConfinement;
  const trash = path.join(root, 'trash');
  fs.mkdirSync(trash, { recursive: true });
  let extra = {};
  const patches = {
    memo: () => {
      const memo = new Map();
      security.buildConfinement = (opts = {}, ...rest) => {
        const key = JSON.stringify([opts, rest]);
        if (!memo.has(key)) memo.set(key, asIsConfine(opts, ...rest));
        return memo.get(key);
      };
    },
    privileged: () => {
      extra = { security: { privileged: true } };
    },
    trash: () => {
      workspace.Workspace.prototype.destroy = function toTrash() {
        this.unmount();
        const to = path.join(trash, path.basename(this.dir));
        fs.renameSync(this.dir, to);
        fs.rm(to, { recursive: true, force: true }, () => {});
      };
    },
    fastrm: () => {
      workspace.Workspace.prototype.destroy = function fastRemove() {
        try {
          for (const f of ['container.json']) fs.rmSync(path.join(this.dir, f), { force: true });
          for (const d of ['upper', 'work/work', 'work', 'merged', '']) fs.rmdirSync(path.join(this.dir, d));
        } catch {
          asIsDestroy.call(this);
        }
      };
    },
    volatile: () => {
      plan.buildPlan = (input) => {
        const p = asIsPlan(input);
        for (const st of p.steps)
          if (st.op === 'mountRootFs' && st.fstype === 'overlay' && !st.options.includes('volatile')) st.options = [...st.options, 'volatile', ''];
        return p;
      };
    },
  };
  const unpatch = () => {
    extra = {};
    security.buildConfinement = asIsConfine;
    workspace.Workspace.prototype.destroy = asIsDestroy;
    plan.buildPlan = asIsPlan;
  };
  const label = wanted.join(' + ');
  const res = { 'as is': [], [label]: [] };
  for (let block = 0; block < 2 * Math.ceil(runs / 50); block++) {
    unpatch();
    if (block % 2) for (const w of wanted) patches[w]();
    for (let i = 0; i < 55; i++) {
      const t0 = now();
      const c = await rt.run({ image: 'busybox', command: ['/bin/true'], stdio: 'ignore', network, remove: true, ...extra });
      await c.wait();
      if (i >= 5) res[block % 2 ? label : 'as is'].push(now() - t0);
    }
  }
  await new Promise((r) => setTimeout(r, 200));
  fs.rmSync(root, { recursive: true, force: true });
  for (const [k, v] of Object.entries(res)) {
    const st = summarize(v);
    console.log(`${k.padEnd(24)} n ${st.n}  median ${st.median.toFixed(2)} ms  p90 ${st.p90.toFixed(2)} ms  p99 ${st.p99.toFixed(2)} ms`);
  }
  process.exit(0);
}

if (args.includes('--images')) {
  const tarball = path.resolve(args[args.indexOf('--images') + 1]);
  const repeat = Number(args[args.indexOf('--images') + 2] ?? 3);
  const extract = require(path.join(dist, 'image', 'extract.js'));
  const merged = require(path.join(dist, 'image', 'merged-tar.js'));
  timeIt(extract, 'extractTarball', 'extractTarball');
  timeIt(merged, 'writeMergedTar', 'writeMergedTar (export)');
  timeIt(rt.images, 'publish', 'publish (rename into place)');
  const rows = [];
  for (let i = 0; i < repeat; i++) {
    current = {};
    let t0 = now();
    await rt.import(tarball, `p${i}`);
    current['= import total'] = now() - t0;
    const imp = current;
    current = null;
    const c = await rt.run({ image: `p${i}`, command: ['/bin/true'], stdio: 'ignore', remove: false });
    await c.wait();
    current = {};
    t0 = now();
    await c.commit(`p${i}c`, { output: path.join(root, 'out.tar') });
    current['= commit total'] = now() - t0;
    rows.push(['import', imp], ['commit', current]);
    current = null;
    await c.remove();
    await rt.removeImage(`p${i}c`);
    await rt.removeImage(`p${i}`);
    fs.rmSync(path.join(root, 'out.tar'), { force: true });
  }
  fs.rmSync(root, { recursive: true, force: true });
  console.log(`${path.basename(tarball)}, ${repeat} times: median ms per phase`);
  for (const what of ['import', 'commit']) {
    const keys = [...new Set(rows.filter((r) => r[0] === what).flatMap((r) => Object.keys(r[1])))];
    for (const k of keys) {
      const v = rows.filter((r) => r[0] === what).map((r) => r[1][k] ?? 0);
      console.log(`${what.padEnd(7)} ${k.padEnd(32)} ${summarize(v).median.toFixed(1).padStart(9)}`);
    }
  }
  process.exit(0);
}
const totals = [];
for (let i = 0; i < runs + 20; i++) {
  current = i >= 20 ? {} : null;
  const t0 = now();
  const c = await rt.run({ image: 'busybox', command: ['/bin/true'], stdio: 'ignore', network, remove: true });
  const t1 = now();
  await c.wait();
  const t2 = now();
  if (current) {
    current['run() total'] = t1 - t0;
    current['exit seen -> wait() resolved (incl. destroy)'] = t2 - (spawnedAt + current['spawn returned -> exit seen by JS']);
    totals.push(t2 - t0);
    for (const [k, v] of Object.entries(current)) record(k, v);
  }
}
fs.rmSync(root, { recursive: true, force: true });

const total = summarize(totals).median;
console.log(
  `${runs} starts of /bin/true (net: ${network}); start -> wait() resolved: median ${total.toFixed(2)} ms, p90 ${summarize(totals).p90.toFixed(2)} ms\n`,
);
console.log('phase'.padEnd(48), 'median ms'.padStart(10), 'p90 ms'.padStart(9), 'share'.padStart(7));
for (const [k, v] of phases) {
  const s = summarize(v);
  console.log(k.padEnd(48), s.median.toFixed(3).padStart(10), s.p90.toFixed(3).padStart(9), `${((s.median / total) * 100).toFixed(0)}%`.padStart(7));
}
