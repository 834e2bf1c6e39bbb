#!/usr/bin/env node
// What `nsbox run --rm busybox true` costs on top of `node -e 0`, and what would cut it:
// the CLI as it is, without the modules `run` never calls, as one bundled file, and as that
// bundle in a Node startup snapshot. Nothing in src/ or dist/ changes: the variants are made
// under bench/.cache/cli-startup (the bundle needs rolldown, which vite brings along).
//
//   node bench/cli-startup.mjs [ROUNDS]      # default 6 rounds of 12 runs per variant
//   node bench/cli-startup.mjs --timeline    # where one CLI process spends its time
import * as fs from 'node:fs';
import * as path from 'node:path';

import { loop } from './lib/measure.mjs';
import { CACHE, REPO, compileHelpers, sh } from './lib/setup.mjs';
import { summarize } from './lib/stats.mjs';

const dir = path.join(CACHE, 'cli-startup');
const state = path.join(dir, 'state');
fs.mkdirSync(path.join(dir, 'dist'), { recursive: true });
const node = process.execPath;
const bin = compileHelpers(() => {});
const dist = path.join(REPO, 'dist');

// Modules `run` never calls, replaced by stubs: what lazy requires in src/ would give.
fs.writeFileSync(
  path.join(dir, 'lazy.cjs'),
  `
const Module = require('module');
const load = Module._load;
const unused = new Set(['node:child_process', 'node:zlib', 'node:worker_threads', './image/extract', './extract', './image/merged-tar', './tar']);
Module._load = function (req, parent) {
  // newId() only needs random bytes: from /dev/urandom rather than the whole of node:crypto.
  if (req === 'node:crypto') return { randomBytes(n) { const fs = require('fs'); const b = Buffer.alloc(n); const fd = fs.openSync('/dev/urandom', 'r'); fs.readSync(fd, b); fs.closeSync(fd); return b; } };
  // The addon by its path, without node-gyp-build's search.
  if (req === 'node-gyp-build') return () => load(${JSON.stringify(path.join(REPO, 'build', 'Release', 'nsbox.node'))}, parent, false);
  if (unused.has(req)) return new Proxy({}, { get: (_t, k) => (k === '__esModule' ? false : () => { throw new Error('not loaded: ' + req); }) });
  return load.apply(this, arguments);
};
`,
);

// `nsbox --root DIR run ...` as dist/cli/main.js does it, with the run command required
// statically so that a bundler sees it (main.js picks the command module at run time).
const runEntry = (snapshot) => `
const { parseArgs } = require(${JSON.stringify(path.join(dist, 'cli', 'args.js'))});
const { COMMANDS } = require(${JSON.stringify(path.join(dist, 'cli', 'specs.js'))});
const { printError } = require(${JSON.stringify(path.join(dist, 'cli', 'output.js'))});
const run = require(${JSON.stringify(path.join(dist, 'cli', 'commands', 'run.js'))}).default;
function main(argv) {
  run(parseArgs(COMMANDS.run, argv.slice(3)), { root: argv[1], storageDriver: undefined }).then(
    (code) => { process.exitCode = code; },
    (err) => { printError(err); process.exitCode = 125; },
  );
}
${
  snapshot
    ? `require('node:v8').startupSnapshot.setDeserializeMainFunction(() => {
  // A snapshot's own require loads built-ins only; node-gyp-build takes this one for the addon.
  globalThis.__webpack_require__ = () => {};
  globalThis.__non_webpack_require__ = require('node:module').createRequire(__filename);
  main(process.argv.slice(1));
});`
    : 'main(process.argv.slice(2));'
}
`;

const variants = [
  ['node -e 0', [node, '-e', '0']],
  ['nsbox run --rm busybox true (as is)', [node, path.join(dist, 'cli', 'main.js'), '--root', state, 'run', '--rm', 'busybox', 'true']],
  [
    'nsbox run --rm busybox true (installed: bundle + code cache)',
    [node, path.join(dist, 'cli', 'start.js'), '--root', state, 'run', '--rm', 'busybox', 'true'],
  ],
  [
    '… without the modules run never calls',
    [node, '-r', path.join(dir, 'lazy.cjs'), path.join(dist, 'cli', 'main.js'), '--root', state, 'run', '--rm', 'busybox', 'true'],
  ],
];
const rolldown = path.join(REPO, 'node_modules', '.bin', 'rolldown');
if (fs.existsSync(rolldown)) {
  fs.writeFileSync(path.join(dir, 'entry.js'), runEntry(false));
  fs.writeFileSync(path.join(dir, 'snap-entry.js'), runEntry(true));
  // The bundle finds the addon relative to itself (../build), and the version in ../package.json.
  fs.rmSync(path.join(dir, 'build'), { force: true });
  fs.symlinkSync(path.join(REPO, 'build'), path.join(dir, 'build'));
  fs.copyFileSync(path.join(REPO, 'package.json'), path.join(dir, 'package.json'));
  for (const [entry, out] of [
    ['entry.js', 'bundle.js'],
    ['snap-entry.js', 'snap-bundle.js'],
  ]) {
    const r = sh(rolldown, [path.join(dir, entry), '--format', 'cjs', '--platform', 'node', '-o', path.join(dir, 'dist', out)]);
    if (r.code !== 0) throw new Error(`rolldown: ${r.stderr}`);
  }
  const snap = sh(node, ['--snapshot-blob', path.join(dir, 'dist', 'snap.blob'), '--build-snapshot', path.join(dir, 'dist', 'snap-bundle.js')], {
    cwd: path.join(dir, 'dist'),
  });
  variants.push(['… as one bundled file (rolldown)', [node, path.join(dir, 'dist', 'bundle.js'), '--root', state, 'run', '--rm', 'busybox', 'true']]);
  if (snap.code === 0)
    variants.push([
      '… that bundle in a startup snapshot',
      [node, '--snapshot-blob', path.join(dir, 'dist', 'snap.blob'), '--', '--root', state, 'run', '--rm', 'busybox', 'true'],
    ]);
  else console.log(`startup snapshot: node --build-snapshot failed: ${snap.stderr.trim().split('\n')[0]}`);
} else {
  console.log('no node_modules/.bin/rolldown: the bundle and snapshot variants are skipped');
}

if (process.argv.includes('--timeline')) {
  // One CLI-like process, marks at each step, median of 40.
  const script = path.join(dir, 'timeline.js');
  fs.writeFileSync(
    script,
    `
const marks = [['entry', performance.now()]];
const { Runtime } = require(${JSON.stringify(path.join(dist, 'runtime.js'))});
marks.push(['require runtime (and what it loads)', performance.now()]);
const rt = new Runtime({ root: process.argv[2] });
require(${JSON.stringify(path.join(dist, 'native.js'))}).native();
marks.push(['load the addon (node-gyp-build)', performance.now()]);
rt.images.get('busybox'); void rt.storageDriver; rt.layout.ensure();
marks.push(['image, storage driver, state dirs', performance.now()]);
(async () => {
  const c = await rt.run({ image: 'busybox', command: ['true'], stdio: 'inherit', remove: true });
  marks.push(['first run() (a warm one: see profile.mjs)', performance.now()]);
  await c.wait();
  marks.push(['wait() (exit, removal)', performance.now()]);
  process.on('exit', () => process.stdout.write(JSON.stringify(marks)));
})();
`,
  );
  sh(node, [path.join(dist, 'cli', 'main.js'), '--root', state, 'run', '--rm', 'busybox', 'true']);
  const rows = [];
  for (let i = 0; i < 40; i++) rows.push(JSON.parse(sh(node, [script, state]).stdout));
  console.log(
    `${'Node bootstrap (process start .. first line)'.padEnd(48)} ${summarize(rows.map((r) => r[0][1]))
      .median.toFixed(2)
      .padStart(7)} ms`,
  );
  for (let i = 1; i < rows[0].length; i++) {
    console.log(
      `${rows[0][i][0].padEnd(48)} ${summarize(rows.map((r) => r[i][1] - r[i - 1][1]))
        .median.toFixed(2)
        .padStart(7)} ms`,
    );
  }
  process.exit(0);
}

const rounds = Number(process.argv[2] ?? 6);
sh(node, [path.join(dist, 'cli', 'main.js'), '--root', state, 'run', '--rm', 'busybox', 'true']); // makes the image
const wall = new Map(variants.map(([k]) => [k, []]));
const cpu = new Map(variants.map(([k]) => [k, []]));
for (let r = 0; r < rounds; r++) {
  for (const [k, argv] of variants) {
    const x = await loop(bin, argv, { n: 12, warmup: 2 });
    wall.get(k).push(...x.samples);
    cpu.get(k).push(...x.cpu);
  }
}
const base = summarize(wall.get('node -e 0')).median;
const baseCpu = summarize(cpu.get('node -e 0')).median;
console.log(`${'variant'.padEnd(40)} ${'wall median'.padStart(12)} ${'over node -e 0'.padStart(15)} ${'CPU median'.padStart(11)} ${'over'.padStart(8)}`);
for (const [k] of variants) {
  const w = summarize(wall.get(k)).median;
  const c = summarize(cpu.get(k)).median;
  console.log(
    `${k.padEnd(40)} ${w.toFixed(1).padStart(9)} ms ${(w - base).toFixed(1).padStart(12)} ms ${c.toFixed(1).padStart(8)} ms ${(c - baseCpu).toFixed(1).padStart(5)} ms`,
  );
}
