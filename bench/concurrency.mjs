#!/usr/bin/env node
// Starts in flight (issue 14, goals 1, 2 and 6): containers/s with 1, 2, 4, 8, 10, 16 and 32
// starts in flight; how long the event loop was held while 10 were; the start latency's tail
// (median and p99, --rm counted), with the write layer on the state directory's disk and on a
// tmpfs (limits.disk); all of it with the state directory on this machine's disk and on a
// tmpfs. With `--base DIR` (a tree holding dist/ and build/Release/ of another build) every
// row is measured for both builds in the same run, interleaved round by round.
//
//   node bench/concurrency.mjs [--base /tmp/nsbox-base] [--rounds 3] [--quick]
//
// Writes bench/results/concurrency-<date>.json and prints a markdown table.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';

import { worker } from './lib/measure.mjs';
import { CACHE, REPO } from './lib/setup.mjs';
import { summarize } from './lib/stats.mjs';

const argv = process.argv.slice(2);
const opt = (k, d) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const quick = argv.includes('--quick');
const rounds = Number(opt('--rounds', quick ? 1 : 3));
const base = opt('--base', undefined);
const count = quick ? 40 : 100;
const tailRuns = quick ? 60 : 150;
const inflights = [1, 2, 4, 8, 10, 16, 32];
const builds = [['current', path.join(REPO, 'dist')], ...(base ? [['base', path.join(base, 'dist')]] : [])];
const log = (s) => process.stderr.write(`[concurrency] ${s}\n`);

const diskRoot = path.join(CACHE, `conc-${process.pid}`);
const tmpfsMount = path.join(os.tmpdir(), `nsbox-conc-tmpfs-${process.pid}`);
fs.mkdirSync(diskRoot, { recursive: true, mode: 0o700 });
fs.mkdirSync(tmpfsMount, { mode: 0o700 });
execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=2g', 'nsbox-conc', tmpfsMount]);
const places = { disk: diskRoot, tmpfs: tmpfsMount };

const rates = {};
const delays = {};
const tails = {};
const push = (o, k, v) => (o[k] ??= []).push(...(Array.isArray(v) ? v : [v]));

try {
  for (let round = 0; round < rounds; round++) {
    for (const [where, dir] of Object.entries(places)) {
      for (const [build, dist] of builds) {
        const stateRoot = path.join(dir, build);
        log(`round ${round + 1}/${rounds}: ${build}, state on ${where}`);
        for (const inflight of inflights) {
          const r = await worker({ dist, stateRoot, scenario: 'throughput', count, inflight, repeat: 1, warmup: 5 });
          push(
            rates,
            `${build}|${where}|${inflight}`,
            r.walls.map((w) => count / (w / 1000)),
          );
          push(delays, `${build}|${where}|${inflight}`, r.loopDelay);
        }
        const idle = await worker({ dist, stateRoot, scenario: 'idle', ms: 2000 });
        push(delays, `${build}|${where}|idle`, idle.loopDelay);
        for (const [layer, disk] of [
          ['disk', undefined],
          ['tmpfs', '64m'],
        ]) {
          const r = await worker({
            dist,
            stateRoot,
            scenario: 'start',
            runs: tailRuns,
            warmup: 10,
            network: 'none',
            remove: 'counted',
            ...(disk ? { disk } : {}),
          });
          push(tails, `${build}|${where}|${layer}`, r.samples);
        }
      }
    }
  }
} finally {
  execFileSync('umount', [tmpfsMount]);
  fs.rmdirSync(tmpfsMount);
  fs.rmSync(diskRoot, { recursive: true, force: true });
}

const med = (xs) => summarize(xs).median;
const result = {
  date: new Date().toISOString(),
  host: os.hostname(),
  cpus: os.cpus().length,
  load: os.loadavg(),
  rounds,
  count,
  tailRuns,
  rate: {},
  loopDelay: {},
  tail: {},
};
const lines = [];
for (const [build] of builds) {
  for (const where of Object.keys(places)) {
    const seq = med(rates[`${build}|${where}|1`]);
    const row = [];
    for (const n of inflights) {
      const r = med(rates[`${build}|${where}|${n}`]);
      const d = delays[`${build}|${where}|${n}`];
      result.rate[`${build}|${where}|${n}`] = { perSecond: r, ratio: r / seq, all: rates[`${build}|${where}|${n}`] };
      result.loopDelay[`${build}|${where}|${n}`] = { p99Ms: med(d.map((x) => x.p99)), maxMs: med(d.map((x) => x.max)), p50Ms: med(d.map((x) => x.p50)) };
      row.push(`${r.toFixed(0)} (${(r / seq).toFixed(2)}×)`);
    }
    const eld = result.loopDelay[`${build}|${where}|10`];
    const d = delays[`${build}|${where}|idle`];
    const idle = { p99Ms: med(d.map((x) => x.p99)), maxMs: med(d.map((x) => x.max)) };
    result.loopDelay[`${build}|${where}|idle`] = idle;
    lines.push(
      `| ${build} | ${where} | ${row.join(' | ')} | ${eld.p99Ms.toFixed(2)} / ${eld.maxMs.toFixed(1)} | ${idle.p99Ms.toFixed(2)} / ${idle.maxMs.toFixed(1)} |`,
    );
  }
}
const tailLines = [];
for (const [build] of builds) {
  for (const where of Object.keys(places)) {
    for (const layer of ['disk', 'tmpfs']) {
      const s = summarize(tails[`${build}|${where}|${layer}`]);
      result.tail[`${build}|${where}|${layer}`] = {
        median: s.median,
        p90: s.p90,
        p99: s.p99,
        ratio: s.p99 / s.median,
        n: tails[`${build}|${where}|${layer}`].length,
      };
      tailLines.push(
        `| ${build} | ${where} | ${layer === 'disk' ? 'on the state dir' : 'tmpfs (limits.disk 64m)'} | ${s.median.toFixed(2)} | ${s.p99.toFixed(2)} | ${(s.p99 / s.median).toFixed(2)} |`,
      );
    }
  }
}
const out = path.join(REPO, 'bench', 'results', `concurrency-${result.date.slice(0, 10)}.json`);
fs.writeFileSync(out, `${JSON.stringify(result, null, 1)}\n`);
console.log(
  `containers/s (× the one-after-another rate) by starts in flight; event-loop delay with 10 in flight (monitorEventLoopDelay, 1 ms timer: p99 / max, ms, the timer's 1 ms included)\n`,
);
console.log(`| build | state dir | ${inflights.join(' | ')} | loop p99 / max (10 in flight) | the same, a Node process doing nothing |`);
console.log(`| --- | --- | ${inflights.map(() => '---').join(' | ')} | --- | --- |`);
console.log(lines.join('\n'));
console.log(`\nstart latency, --rm counted, one after another (ms, ${tailRuns} × ${rounds} runs)\n`);
console.log('| build | state dir | write layer | median | p99 | p99 / median |');
console.log('| --- | --- | --- | --- | --- | --- |');
console.log(tailLines.join('\n'));
log(
  `written: ${path.relative(REPO, out)} (load ${os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')})`,
);
