#!/usr/bin/env node
// One in-process start against another build and against the C floor, in the same run
// (issue 14, goals 2 and 3). `--rm` starts of /bin/true (busybox, overlay write layer, net ns),
// this build and the build in --base DIR (a tree holding dist/ and build/Release/) interleaved
// start by start in one process, each with its own state directory (on this machine's disk,
// or with --tmpfs on a tmpfs); between rounds a block of `floor -F` (the C floor doing the same
// steps as nsbox, nsbox-init included: bench/floor.c), of `floor -f` (nsbox's extra mounts, no
// init: the row of earlier rounds) and of `floor` (the minimum), in turn. Each start is cut in
// two: run() and from run()'s return to wait() (the command, its exit, the removal).
//
//   node bench/ab-start.mjs [--base DIR[,DIR...]] [--runs 200] [--tmpfs] [--gap MS] [--json FILE]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

import { floorCgroup, nsboxInitArgs, removeFloorCgroup } from './lib/init-argv.mjs';
import { floor } from './lib/measure.mjs';
import { CACHE, REPO, busyboxRootfs, compileHelpers } from './lib/setup.mjs';
import { summarize } from './lib/stats.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const runs = Number(opt('--runs', 200));
const base = opt('--base', undefined);
const gap = Number(opt('--gap', 0));
const onTmpfs = args.includes('--tmpfs');
const jsonOut = opt('--json', undefined);
const require = createRequire(import.meta.url);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const bin = compileHelpers(() => {});
const busybox = busyboxRootfs(() => {});
const root = onTmpfs ? path.join(os.tmpdir(), `nsbox-ab-${process.pid}`) : path.join(CACHE, `ab-${process.pid}`);
fs.mkdirSync(root, { recursive: true, mode: 0o700 });
if (onTmpfs) execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=1g', 'nsbox-ab', root]);
const scratch = path.join(root, 'scratch');
fs.mkdirSync(scratch);

// --base A,B: several other builds, named by their directory's last component.
const others = base ? base.split(',').map((d) => [path.basename(path.resolve(d)), path.resolve(d)]) : [];
const builds = [['current', REPO], ...others].map(([name, dir]) => {
  const { Runtime } = require(path.join(dir, 'dist', 'index.js'));
  return { name, rt: new Runtime({ root: path.join(root, `state-${name}`) }), samples: [], cpu: 0 };
});
const floors = { same: [], full: [], min: [] };
const floorCpu = { same: [], full: [], min: [] };
const nsboxInit = nsboxInitArgs(REPO);
let floorCg;
const load = [];

// CPU time of this process and of the containers it reaped (nsbox-init and what it reaped), in
// ms: the kernel's per-task accounting, as the floor's getrusage(SELF + CHILDREN). The
// children's share comes in clock ticks: summed over a run's starts, not read per start.
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
function cpuMs() {
  const f = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000 + (Number(f[13]) + Number(f[14])) * TICK_MS;
}

async function once(b, keep) {
  const c0 = cpuMs();
  const t0 = now();
  const c = await b.rt.run({ image: 'busybox', command: ['/bin/true'], stdio: 'ignore', network: 'none', remove: true });
  const t1 = now();
  const st = await c.wait();
  const t2 = now();
  if (st.exitCode !== 0) throw new Error(`exit ${JSON.stringify(st)}`);
  if (keep) {
    b.samples.push({ total: t2 - t0, run: t1 - t0, rest: t2 - t1 });
    b.cpu += cpuMs() - c0;
  }
}

try {
  const block = 25;
  for (let i = -10; i < runs; i += block) {
    load.push(os.loadavg()[0]);
    for (let j = 0; j < block; j++) {
      // Alternate which build goes first.
      const order = (i + j) % 2 ? [...builds].reverse() : builds;
      for (const b of order) {
        if (gap) await sleep(gap);
        await once(b, i >= 0);
      }
    }
    if (i < 0) continue;
    if (floorCg === undefined) floorCg = floorCgroup() ?? null;
    const s = await floor(bin, busybox.dir, scratch, { n: block, warmup: 2, nsboxInit: { ...nsboxInit, cgroup: floorCg ?? undefined } });
    floors.same.push(...s.total);
    floorCpu.same.push(...s.cpu);
    const f = await floor(bin, busybox.dir, scratch, { n: block, warmup: 2, full: true });
    floors.full.push(...f.total);
    floorCpu.full.push(...f.cpu);
    const m = await floor(bin, busybox.dir, scratch, { n: block, warmup: 2 });
    floors.min.push(...m.total);
    floorCpu.min.push(...m.cpu);
  }
} finally {
  removeFloorCgroup(floorCg);
  if (onTmpfs) execFileSync('umount', ['-l', root]);
  fs.rmSync(root, { recursive: true, force: true });
}

const fmt = (x) => x.toFixed(2);
const rows = {};
console.log(
  `state on ${onTmpfs ? 'tmpfs' : 'disk'}, ${runs} starts each, load ${load.map((x) => x.toFixed(1)).join(' ')}; ` +
    `floor -F: ${floorCg ? 'a cgroup per run' : 'no cgroup'}, seccomp ${nsboxInit.seccompInsns} instructions`,
);
console.log('| | median | p90 | p99 | p99 / median | CPU / start | run() median | run() → wait() median | / floor -F: median, p90, CPU | / floor -f |');
console.log('| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: |');
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const ff = summarize(floors.full).median;
const fs_ = summarize(floors.same);
const fsCpu = mean(floorCpu.same);
for (const b of builds) {
  const t = summarize(b.samples.map((x) => x.total));
  const r = summarize(b.samples.map((x) => x.run)).median;
  const w = summarize(b.samples.map((x) => x.rest)).median;
  const cpu = b.cpu / b.samples.length;
  rows[b.name] = { median: t.median, p90: t.p90, p99: t.p99, cpu, run: r, rest: w };
  console.log(
    `| nsbox ${b.name} | ${fmt(t.median)} | ${fmt(t.p90)} | ${fmt(t.p99)} | ${fmt(t.p99 / t.median)} | ${fmt(cpu)} | ${fmt(r)} | ${fmt(w)} | ` +
      `${fmt(t.median / fs_.median)}×, ${fmt(t.p90 / fs_.p90)}×, ${fmt(cpu / fsCpu)}× | ${fmt(t.median / ff)}× |`,
  );
}
for (const [k, xs] of Object.entries(floors)) {
  const t = summarize(xs);
  const cpu = mean(floorCpu[k]);
  rows[`floor-${k}`] = { median: t.median, p90: t.p90, p99: t.p99, cpu };
  const name = { same: 'floor -F', full: 'floor -f', min: 'floor' }[k];
  console.log(`| ${name} | ${fmt(t.median)} | ${fmt(t.p90)} | ${fmt(t.p99)} | ${fmt(t.p99 / t.median)} | ${fmt(cpu)} | | | | |`);
}
if (jsonOut) fs.writeFileSync(jsonOut, `${JSON.stringify({ date: new Date().toISOString(), runs, onTmpfs, load, floorCgroup: !!floorCg, rows }, null, 1)}\n`);
