#!/usr/bin/env node
// Where one in-process start goes, phase by phase: wraps the functions Runtime.run calls
// (from dist/, nothing in src/ changes) and times them over many starts.
//
//   node bench/profile.mjs [RUNS] [--net host] [--keep]
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

/** Replaces obj[key] with a timed wrapper (sync functions only). */
function timeIt(obj, key, name = key) {
  const orig = obj[key];
  obj[key] = function timed(...a) {
    const t0 = now();
    try {
      return orig.apply(this, a);
    } finally {
      if (current) current[name] = (current[name] ?? 0) + now() - t0;
    }
  };
}

const layout = require(path.join(dist, 'layout.js'));
const plan = require(path.join(dist, 'plan.js'));
const nativeMod = require(path.join(dist, 'native.js'));
const workspace = require(path.join(dist, 'workspace.js'));
const { Runtime } = require(path.join(dist, 'runtime.js'));

timeIt(layout, 'writeJsonAtomic', 'write container.json');
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
console.log(`${runs} starts of /bin/true (net: ${network}); start -> wait() resolved: median ${total.toFixed(2)} ms, p90 ${summarize(totals).p90.toFixed(2)} ms\n`);
console.log('phase'.padEnd(48), 'median ms'.padStart(10), 'p90 ms'.padStart(9), 'share'.padStart(7));
for (const [k, v] of phases) {
  const s = summarize(v);
  console.log(k.padEnd(48), s.median.toFixed(3).padStart(10), s.p90.toFixed(3).padStart(9), `${((s.median / total) * 100).toFixed(0)}%`.padStart(7));
}
