// Container.start with a tracking cgroup v2 directory (NSBOX_CGROUP_V2=track: clone3 +
// CLONE_INTO_CGROUP, cgroup.kill and rmdir at the end) against without (off), interleaved.
// Usage: node bench/cgroup-v2-track.mjs ROOTFS [N]
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
const { Container } = require('../dist/container.js');
const root = process.argv[2];
const n = Number(process.argv[3] ?? 200);
const modes = ['off', 'track'];
const start = { off: [], track: [] };
const whole = { off: [], track: [] };

async function once(mode) {
  process.env.NSBOX_CGROUP_V2 = mode;
  const t0 = performance.now();
  const c = Container.start({ root: { type: 'bind', path: root }, command: ['/bin/true'], stdio: ['ignore', 'ignore', 'ignore'] });
  const t1 = performance.now();
  await c.wait();
  const t2 = performance.now();
  return [t1 - t0, t2 - t0];
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
};
for (let i = 0; i < 10; i++) for (const m of modes) await once(m); // warm-up
for (let i = 0; i < n; i++) {
  for (const m of i % 2 ? modes : [...modes].reverse()) {
    const [s, w] = await once(m);
    start[m].push(s);
    whole[m].push(w);
  }
}
// Each pair ran back to back: the median of its differences cancels the host's drift.
const diff = (a, b) => median(a.map((x, i) => x - b[i]));
console.log(
  `track - off, median of paired differences: start ${diff(start.track, start.off).toFixed(3)} ms, start..wait() ${diff(whole.track, whole.off).toFixed(3)} ms`,
);
for (const m of modes) {
  console.log(`${m.padEnd(6)} Container.start median ${median(start[m]).toFixed(3)} ms   start..wait() median ${median(whole[m]).toFixed(3)} ms   (n=${n})`);
}
