#!/usr/bin/env node
// How long each long operation of the API holds the event loop, on a tree of N small files:
// while it runs, perf_hooks.monitorEventLoopDelay (1 ms resolution) records how late a timer
// fires; the longest delay is the longest stretch the loop was not served. Each operation's
// own duration is timed too, so that a fix that gives the loop turns can be checked not to
// slow it down. Builds can be compared in one run (alternating), as bench/commit-walk.mjs does.
//
//   node bench/loop-hold.mjs [N=3000] [RUNS=3] [LABEL=PACKAGE_DIR ...]
//   e.g. node bench/loop-hold.mjs N=30000 RUNS=2 before=/tmp/lh-before after=.
//
// A PACKAGE_DIR holds dist/ and build/Release/nsbox.node (a copy of a built checkout).
// Operations: cp host dir -> container, cp tar Buffer -> container, cp container -> tar
// (read to the end in memory), commit (image), commit -o (image + tarball), import of that
// tarball, rmi of each image, rm of the container.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

import { buildsFromArgs } from './lib/setup.mjs';
import { median } from './lib/stats.mjs';

const args = process.argv.slice(2);
const opt = (k, d) => Number(args.find((a) => a.startsWith(`${k}=`))?.slice(k.length + 1) ?? d);
const N = opt('N', 3000);
const RUNS = opt('RUNS', 3);
// PER_DIR=N: every file in one directory (a listing of N entries at once).
const PER_DIR = opt('PER_DIR', 100);
const builds = buildsFromArgs(args, (a) => /^(N|RUNS|PER_DIR)=/.test(a));

const require = createRequire(import.meta.url);
const now = () => Number(process.hrtime.bigint()) / 1e6;

/** N files of a few bytes, PER_DIR per directory. */
function makeHostTree(dir) {
  fs.mkdirSync(dir);
  for (let i = 0; i < N; i++) {
    const d = path.join(dir, `d${Math.floor(i / PER_DIR)}`);
    if (i % PER_DIR === 0) fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, `f${i}`), `file ${i}\n`);
  }
}

/** Runs `op` while the loop's delay is recorded: its duration, the loop's longest and p99 delay. */
async function measure(op) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  // A turn first, so that the histogram's timer is armed before the operation starts.
  await new Promise((r) => setImmediate(r));
  h.enable();
  await new Promise((r) => setTimeout(r, 5));
  const t0 = now();
  await op();
  const ms = now() - t0;
  await new Promise((r) => setTimeout(r, 5));
  h.disable();
  return { ms, max: h.max / 1e6, p99: h.percentile(99) / 1e6 };
}

/** A stream's chunks, read to the end (joined outside the measurement: a join of 30 MB alone takes 200+ ms here). */
async function readAll(stream) {
  const parts = [];
  for await (const c of stream) parts.push(c);
  return parts;
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-loophold-'));
const hostTree = path.join(scratch, 'tree');
makeHostTree(hostTree);

const results = new Map(); // `${label}\t${op}` -> [{ms,max,p99}]
const record = (label, op, r) => {
  const k = `${label}\t${op}`;
  if (!results.has(k)) results.set(k, []);
  results.get(k).push(r);
};

let seq = 0;
async function oneRun(build) {
  const { Runtime } = require(path.join(build.dir, 'dist', 'index.js'));
  const root = path.join(scratch, `root-${build.label}-${seq++}`);
  const rt = new Runtime({ root });
  const c = await rt.run({ image: 'busybox', command: ['mkdir', '/data', '/data2'], stdio: 'ignore' });
  await c.wait();
  const tag = `i${seq}`;
  const tarball = path.join(scratch, `${tag}.tar`);
  record(build.label, 'cp host dir -> ctr', await measure(() => rt.copyIn(c.id, hostTree, '/data')));
  let parts;
  record(build.label, 'cp ctr -> tar (memory)', await measure(async () => (parts = await readAll(await rt.copyOut(c.id, '/data')))));
  const tar = Buffer.concat(parts);
  record(build.label, 'cp tar Buffer -> ctr', await measure(() => rt.copyIn(c.id, tar, '/data2')));
  record(build.label, 'commit', await measure(() => rt.commit(c.id, `${tag}a`)));
  record(build.label, 'commit -o', await measure(() => rt.commit(c.id, `${tag}b`, { output: tarball })));
  record(build.label, 'import', await measure(() => rt.import(tarball, `${tag}c`)));
  for (const s of ['a', 'b', 'c']) record(build.label, 'rmi', await measure(async () => await rt.removeImage(`${tag}${s}`)));
  record(build.label, 'rm', await measure(() => rt.remove(c.id)));
  fs.rmSync(tarball, { force: true });
  fs.rmSync(root, { recursive: true, force: true });
}

for (let i = 0; i < RUNS; i++) for (const b of builds) await oneRun(b);
fs.rmSync(scratch, { recursive: true, force: true });

// The yardstick: what the loop's delay is on this machine now for pure CPU work cut in 4 ms
// slices with a setImmediate between them (what src/loop-turns.ts does), for 3 s.
const yardstick = await measure(async () => {
  const end = performance.now() + 3000;
  while (performance.now() < end) {
    const t = performance.now();
    while (performance.now() - t < 4);
    await new Promise((r) => setImmediate(r));
  }
});

const f = (x) => x.toFixed(1).padStart(8);
console.log(`yardstick: 4 ms CPU slices with a turn between: max delay ${yardstick.max.toFixed(1)} ms, p99 ${yardstick.p99.toFixed(1)} ms`);
console.log(
  `N=${N} files, ${PER_DIR} per directory, ${RUNS} runs, load ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
console.log(
  `${'build'.padEnd(8)}${'operation'.padEnd(26)}${'op ms'.padStart(8)}${'(range)'.padStart(18)}${'max delay'.padStart(10)}${'(range)'.padStart(18)}${'p99'.padStart(8)}`,
);
for (const [k, rs] of results) {
  const [label, op] = k.split('\t');
  const ms = rs.map((r) => r.ms);
  const max = rs.map((r) => r.max);
  const range = (xs) => `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}`.padStart(18);
  console.log(`${label.padEnd(8)}${op.padEnd(26)}${f(median(ms))}${range(ms)}${f(median(max))}${range(max)}${f(median(rs.map((r) => r.p99)))}`);
}
