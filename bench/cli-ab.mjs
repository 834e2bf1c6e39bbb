#!/usr/bin/env node
// The CLI's cost over `node -e 0`, this build against another (issue 14 goal 4), interleaved
// round by round: `nsbox run --rm busybox true` by the installed entry (dist/cli/start.js:
// the bundle and its code cache) of each build, whole processes timed by bench/spawnloop.c.
//
//   node bench/cli-ab.mjs --base DIR [--rounds 8] [--n 12]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loop } from './lib/measure.mjs';
import { CACHE, REPO, compileHelpers, sh } from './lib/setup.mjs';
import { summarize } from './lib/stats.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const base = opt('--base', undefined);
const rounds = Number(opt('--rounds', 8));
const n = Number(opt('--n', 12));
const bin = compileHelpers(() => {});
const node = process.execPath;
const state = path.join(CACHE, `cli-ab-${process.pid}`);
const cli = (dir) => [node, path.join(dir, 'dist', 'cli', 'start.js'), '--root', state, 'run', '--rm', 'busybox', 'true'];
const variants = [['node -e 0', [node, '-e', '0']], ['nsbox current', cli(REPO)], ...(base ? [['nsbox base', cli(path.resolve(base))]] : [])];
sh(node, [path.join(REPO, 'dist', 'cli', 'start.js'), '--root', state, 'run', '--rm', 'busybox', 'true']); // makes the image
const wall = new Map(variants.map(([k]) => [k, []]));
const cpu = new Map(variants.map(([k]) => [k, []]));
/** Per round, each variant's median wall time: the paired differences move less with the load. */
const perRound = [];
const load = [];
try {
  for (let r = 0; r < rounds; r++) {
    load.push(os.loadavg()[0]);
    const order = r % 2 ? [...variants].reverse() : variants;
    const round = {};
    for (const [k, argv] of order) {
      const x = await loop(bin, argv, { n, warmup: 2 });
      wall.get(k).push(...x.samples);
      cpu.get(k).push(...x.cpu);
      round[k] = summarize(x.samples).median;
    }
    perRound.push(round);
  }
} finally {
  fs.rmSync(state, { recursive: true, force: true });
}
const floor = summarize(wall.get('node -e 0')).median;
console.log(`${rounds} rounds of ${n}, load ${load.map((x) => x.toFixed(1)).join(' ')}`);
const cpuFloor = summarize(cpu.get('node -e 0')).median;
console.log('| | median | p90 | over node -e 0 | CPU median | CPU over node -e 0 |');
console.log('| --- | --: | --: | --: | --: | --: |');
for (const [k] of variants) {
  const s = summarize(wall.get(k));
  const c = summarize(cpu.get(k)).median;
  const over = (x, f) => (k === 'node -e 0' ? '' : `+${(x - f).toFixed(1)} ms`);
  console.log(`| ${k} | ${s.median.toFixed(1)} ms | ${s.p90.toFixed(1)} ms | ${over(s.median, floor)} | ${c.toFixed(1)} ms | ${over(c, cpuFloor)} |`);
}
if (base) {
  const d = perRound.map((r) => r['nsbox current'] - r['nsbox base']);
  console.log(`current - base, per round (wall medians): ${d.map((x) => x.toFixed(1)).join(' ')}; median ${summarize(d).median.toFixed(1)} ms`);
}
