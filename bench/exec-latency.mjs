#!/usr/bin/env node
// exec latency alone (issue 12, item 9): nsbox's exec against `crun exec`, in one run (the
// series of bench/lib/exec.mjs, also measurement 8 of bench/run.mjs). Prints a table and
// writes bench/results/exec-<date>.json.
//
//   node bench/exec-latency.mjs [--rounds 5]
import * as fs from 'node:fs';
import * as path from 'node:path';

import { measureExec } from './lib/exec.mjs';
import { quietGate } from './lib/measure.mjs';
import { BENCH, CACHE, REPO, busyboxRootfs, compileHelpers, detectPeers, machine } from './lib/setup.mjs';
import { summarize } from './lib/stats.mjs';

const argv = process.argv.slice(2);
const rounds = argv.includes('--rounds') ? Number(argv[argv.indexOf('--rounds') + 1]) : 5;
const log = (...a) => console.log('[bench]', ...a);
const bin = compileHelpers(log);
const busybox = busyboxRootfs(log);
const peers = detectPeers();
const stateRoot = path.join(CACHE, `exec-state-${process.pid}`);
const series = {};
const skipped = [];
await measureExec({
  bin,
  dist: path.join(REPO, 'dist'),
  cli: path.join(REPO, 'dist', 'cli', 'main.js'),
  rootfs: busybox.dir,
  stateRoot,
  crun: peers.crun.path,
  rounds,
  n: { inproc: 60, peer: 30, cli: 10 },
  log,
  add: (id, label, samples) => {
    series[id] ??= { label, samples: [] };
    series[id].samples.push(...samples);
  },
  skip: (line) => skipped.push(line),
  gate: quietGate({ budgetMs: 600_000 }),
});
fs.rmSync(stateRoot, { recursive: true, force: true });
const results = { date: new Date().toISOString().slice(0, 10), machine: machine(), crun: peers.crun.version ?? 'missing', rounds, skipped, exec: {} };
for (const [id, s] of Object.entries(series)) results.exec[id] = { label: s.label, ...summarize(s.samples) };
const ms = (v) => (v === undefined ? '–' : `${v.toFixed(2)} ms`);
const crun = results.exec['crun-exec'];
console.log('\n| | runs | median | p90 | p99 | crun exec median / this |\n|---|--:|--:|--:|--:|--:|');
for (const [, s] of Object.entries(results.exec)) {
  console.log(`| ${s.label} | ${s.n} | ${ms(s.median)} | ${ms(s.p90)} | ${ms(s.p99)} | ${crun ? `${(crun.median / s.median).toFixed(2)}×` : '–'} |`);
}
if (skipped.length) console.log(`\nskipped: ${skipped.join('; ')}`);
const file = path.join(BENCH, 'results', `exec-${results.date}.json`);
fs.writeFileSync(file, `${JSON.stringify(results, (_k, v) => (typeof v === 'number' && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v), 1)}\n`);
log(`wrote ${path.relative(REPO, file)}`);
