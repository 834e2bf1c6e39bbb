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
const load = [];
try {
  for (let r = 0; r < rounds; r++) {
    load.push(os.loadavg()[0]);
    const order = r % 2 ? [...variants].reverse() : variants;
    for (const [k, argv] of order) wall.get(k).push(...(await loop(bin, argv, { n, warmup: 2 })).samples);
  }
} finally {
  fs.rmSync(state, { recursive: true, force: true });
}
const floor = summarize(wall.get('node -e 0')).median;
console.log(`${rounds} rounds of ${n}, load ${load.map((x) => x.toFixed(1)).join(' ')}`);
console.log('| | median | p90 | over node -e 0 |');
console.log('| --- | --: | --: | --: |');
for (const [k] of variants) {
  const s = summarize(wall.get(k));
  console.log(`| ${k} | ${s.median.toFixed(1)} ms | ${s.p90.toFixed(1)} ms | ${k === 'node -e 0' ? '' : `+${(s.median - floor).toFixed(1)} ms`} |`);
}
