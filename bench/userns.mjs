#!/usr/bin/env node
// The cost of `userns: 'auto'` per start: Runtime.run of busybox `true` with --rm, with and
// without a user namespace of its own, in the same run, rounds interleaved (a burst of load
// from elsewhere lands on both). Measured in-process: from the call until run() resolves (the
// command has been exec'd: clone, maps, idmapped layer, mounts, nsbox-init), and until wait()
// resolves (its exit and the removal of its write layer, cgroups and id range claim).
//   node bench/userns.mjs [--rounds 6] [--n 40]
// Needs root and a built tree. Writes bench/results/userns-<date>.json.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const REPO = path.join(path.dirname(new URL(import.meta.url).pathname), '..');
const arg = (name, dflt) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : dflt);
const rounds = arg('--rounds', 6);
const n = arg('--n', 40);

if (process.getuid() !== 0) {
  console.error('bench/userns: needs root');
  process.exit(2);
}
const { Runtime } = await import(path.join(REPO, 'dist/index.js'));
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-bench-userns-'));
// The host-wide id range claims: a directory of the bench's own unless NSBOX_IDRANGES_DIR
// names one (the same files and flock as /var/lib/nsbox-idranges, which it leaves alone).
const ownClaims = process.env.NSBOX_IDRANGES_DIR ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-bench-claims-'));
if (ownClaims) process.env.NSBOX_IDRANGES_DIR = ownClaims;
const rt = new Runtime({ root });

async function once(userns) {
  const t0 = performance.now();
  const c = await rt.run({ image: 'busybox', command: ['true'], remove: true, stdio: 'ignore', ...(userns ? { userns: 'auto' } : {}) });
  const started = performance.now();
  const status = await c.wait();
  const ended = performance.now();
  if (status.exitCode !== 0) throw new Error(`exit ${status.exitCode}`);
  return { start: started - t0, total: ended - t0 };
}

const series = { host: { start: [], total: [] }, auto: { start: [], total: [] } };
const loads = [];
try {
  for (let i = 0; i < 5; i++) {
    await once(false);
    await once(true);
  }
  for (let r = 0; r < rounds; r++) {
    loads.push(os.loadavg()[0]);
    for (const mode of r % 2 ? ['auto', 'host'] : ['host', 'auto']) {
      for (let i = 0; i < n; i++) {
        const t = await once(mode === 'auto');
        series[mode].start.push(t.start);
        series[mode].total.push(t.total);
      }
    }
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true });
  if (ownClaims) fs.rmSync(ownClaims, { recursive: true, force: true });
}

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
const sum = (xs) => ({ n: xs.length, median: q(xs, 0.5), p10: q(xs, 0.1), p90: q(xs, 0.9), p99: q(xs, 0.99) });
const result = {
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, kernel: os.release(), load1: loads },
  rounds,
  perRound: n,
  host: { start: sum(series.host.start), total: sum(series.host.total) },
  auto: { start: sum(series.auto.start), total: sum(series.auto.total) },
};
result.ratio = { start: result.auto.start.median / result.host.start.median, total: result.auto.total.median / result.host.total.median };
const fmt = (s) => `median ${s.median.toFixed(2)} ms (p10 ${s.p10.toFixed(2)}, p90 ${s.p90.toFixed(2)}, p99 ${s.p99.toFixed(2)})`;
console.log(`loadavg(1) per round: ${loads.map((l) => l.toFixed(2)).join(' ')}`);
for (const m of ['host', 'auto']) {
  console.log(`${m.padEnd(4)} start ${fmt(result[m].start)}`);
  console.log(`${m.padEnd(4)} total ${fmt(result[m].total)}`);
}
console.log(`auto/host: start ${result.ratio.start.toFixed(2)}x, total ${result.ratio.total.toFixed(2)}x`);
const out = path.join(REPO, 'bench/results', `userns-${result.date.slice(0, 10)}.json`);
fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
console.log(`wrote ${path.relative(REPO, out)}`);
