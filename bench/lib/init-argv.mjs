// nsbox-init's options for nsbox's default start of /bin/true (`floor -F`), made with nsbox's
// own code from the build in DIR: the confinement (capability sets, no_new_privs, ids, the
// seccomp filter: src/security.ts), the rlimits (src/container.ts) and the candidate path,
// spelled as the addon spells them (src-cc/binding/plan_reader.cc and start.cc).
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

const require = createRequire(import.meta.url);

/** { init: the standalone nsbox-init the addon embeds, options: its argv between report=/parent= and "--" }. */
export function nsboxInitArgs(dir) {
  const init = path.join(dir, 'build', 'Release', 'nsbox_init');
  if (!fs.existsSync(init)) throw new Error(`${init} is missing (npm run build)`);
  const { buildConfinement } = require(path.join(dir, 'dist', 'security.js'));
  const { initRlimits } = require(path.join(dir, 'dist', 'container.js'));
  const { security: s } = buildConfinement({});
  const hex64 = ([lo, hi]) => ((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).toString(16);
  const options = [`bset=${hex64(s.bounding)}`, `eff=${hex64(s.effective)}`];
  if (s.ambient) options.push(`amb=${hex64(s.ambient)}`);
  if (s.noNewPrivs) options.push('nnp');
  if (typeof s.uid === 'number') options.push(`ids=${s.uid}:${s.gid}`);
  if (s.seccomp) options.push(`seccomp=${Buffer.from(s.seccomp.buffer, s.seccomp.byteOffset, s.seccomp.byteLength).toString('hex')}`);
  options.push(...initRlimits(undefined, undefined), 'cand=/bin/true');
  return { init, options, seccompInsns: s.seccomp ? s.seccomp.byteLength / 8 : 0 };
}

/**
 * Where `floor -F` makes its per-run cgroups when nsbox makes one per start: a directory beside
 * nsbox's own in the cgroup v2 hierarchy (made here; removeFloorCgroup takes it away), or
 * undefined when nsbox made none (call after nsbox has started a container).
 */
export function floorCgroup() {
  const v2 = fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[2] === 'cgroup2')?.[1];
  if (!v2 || !fs.existsSync(path.join(v2, 'nsbox'))) return undefined;
  const dir = path.join(v2, `nsbox-floor-${process.pid}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export function removeFloorCgroup(dir) {
  if (dir) fs.rmdirSync(dir);
}
