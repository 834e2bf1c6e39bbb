#!/usr/bin/env node
// The event loop while starts are in flight (issue 14 goal 1), variants interleaved round by
// round: per round and variant, the loop delay (monitorEventLoopDelay, 1 ms timer) and the rate
// with 10 `--rm` starts in flight (60 containers), the rate one after another (40), and a Node
// process doing nothing (1 s) as the floor of the moment. State on a tmpfs. A variant is a
// build (a dist/ directory) with environment variables of its own, e.g.
//
//   node bench/loop-ab.mjs --rounds 6 off=dist:NSBOX_SETUP_CGROUP=0 on=dist base=/tmp/old/dist
//
// Prints medians and ranges; writes bench/results/loop-ab-<date>.json.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { worker } from './lib/measure.mjs';
import { REPO } from './lib/setup.mjs';

const argv = process.argv.slice(2);
const rounds = argv.includes('--rounds') ? Number(argv[argv.indexOf('--rounds') + 1]) : 5;
const variants = argv
  .filter((a, i) => a.includes('=') && argv[i - 1] !== '--rounds')
  .map((a) => {
    const [label, ...rest] = a.split('=');
    const [dist, ...env] = rest.join('=').split(':');
    return { label, dist: path.resolve(REPO, dist), env: Object.fromEntries(env.map((kv) => kv.split('='))) };
  });
if (!variants.length) {
  process.stderr.write('usage: node bench/loop-ab.mjs [--rounds N] LABEL=DIST[:VAR=VALUE...] ...\n');
  process.exit(2);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-loop-ab-'));
execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=2g', 'nsbox-loop-ab', tmp]);
const res = {};
const push = (k, v) => (res[k] ??= []).push(v);
const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const loads = [];
try {
  for (let r = 0; r < rounds; r++) {
    for (const v of variants) {
      const stateRoot = path.join(tmp, v.label);
      const many = await worker({ dist: v.dist, env: v.env, stateRoot, scenario: 'throughput', count: 60, inflight: 10, repeat: 1, warmup: 5 });
      push(`${v.label}|p99`, many.loopDelay[0].p99);
      push(`${v.label}|max`, many.loopDelay[0].max);
      push(`${v.label}|rate10`, 60 / (many.walls[0] / 1000));
      const one = await worker({ dist: v.dist, env: v.env, stateRoot, scenario: 'throughput', count: 40, inflight: 1, repeat: 1, warmup: 5 });
      push(`${v.label}|rate1`, 40 / (one.walls[0] / 1000));
      const idle = await worker({ dist: v.dist, env: v.env, stateRoot, scenario: 'idle', ms: 1000 });
      push(`${v.label}|idleP99`, idle.loopDelay[0].p99);
      loads.push(Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]));
      process.stderr.write(`[loop-ab] round ${r + 1}/${rounds} ${v.label}: p99 ${many.loopDelay[0].p99.toFixed(1)} ms, load ${loads.at(-1)}\n`);
    }
  }
} finally {
  execFileSync('umount', [tmp]);
  fs.rmdirSync(tmp);
}
const fmt = (a, d = 1) => `${median(a).toFixed(d)} (${Math.min(...a).toFixed(d)}–${Math.max(...a).toFixed(d)})`;
console.log(`${rounds} rounds, load ${Math.min(...loads)}–${Math.max(...loads)}; medians (range)\n`);
console.log('| variant | loop p99, 10 in flight | loop max | idle process p99 | containers/s, 1 | containers/s, 10 |');
console.log('| --- | --: | --: | --: | --: | --: |');
for (const v of variants) {
  const g = (k) => res[`${v.label}|${k}`];
  console.log(`| ${v.label} | ${fmt(g('p99'))} | ${fmt(g('max'))} | ${fmt(g('idleP99'))} | ${fmt(g('rate1'), 0)} | ${fmt(g('rate10'), 0)} |`);
}
const out = path.join(REPO, 'bench', 'results', `loop-ab-${new Date().toISOString().slice(0, 10)}.json`);
fs.writeFileSync(out, JSON.stringify({ rounds, loads, variants, samples: res }, null, 1));
process.stderr.write(`[loop-ab] written: ${path.relative(REPO, out)}\n`);
