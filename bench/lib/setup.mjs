// Everything the measurements need before they start: the C helpers, the busybox and
// Debian root filesystems, the OCI bundles, which peers are installed, and the machine.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const BENCH = path.dirname(path.dirname(new URL(import.meta.url).pathname));
export const REPO = path.dirname(BENCH);
export const CACHE = path.join(BENCH, '.cache');

/**
 * The builds an A/B bench compares, from its LABEL=DIR arguments (DIR holding dist/ and
 * build/Release/); `isOption` tells the bench's own KEY=VALUE options apart. This tree alone
 * when none is given.
 */
export function buildsFromArgs(args, isOption = () => false) {
  const builds = args
    .filter((a) => a.includes('=') && !isOption(a))
    .map((a) => {
      const [label, dir] = a.split('=');
      return { label, dir: path.resolve(dir) };
    });
  return builds.length ? builds : [{ label: 'this', dir: REPO }];
}

/** Runs a command to completion; never throws on a non-zero status. */
export function sh(cmd, args = [], opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20, ...opts });
  return { code: r.status ?? (r.error ? 127 : 128), stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

export function which(cmd) {
  const r = sh('sh', ['-c', `command -v ${cmd}`]);
  return r.code === 0 ? r.stdout.trim() : null;
}

const newer = (a, b) => fs.existsSync(a) && fs.statSync(a).mtimeMs >= fs.statSync(b).mtimeMs;

/** bench/floor.c and bench/spawnloop.c, compiled with cc -O2 into bench/.cache/bin. */
export function compileHelpers(log) {
  const bin = path.join(CACHE, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  const out = {};
  for (const name of ['floor', 'spawnloop']) {
    const src = path.join(BENCH, `${name}.c`);
    const exe = path.join(bin, name);
    if (!newer(exe, src)) {
      const r = sh('cc', ['-O2', '-Wall', '-o', exe, src]);
      if (r.code !== 0) throw new Error(`cc ${src} failed:\n${r.stderr}`);
      log(`compiled ${path.relative(REPO, src)} -> ${path.relative(REPO, exe)}`);
    }
    out[name] = exe;
  }
  return out;
}

/** The busybox rootfs and tarball every container of the bench is made from. */
export function busyboxRootfs(log) {
  const dir = path.join(CACHE, 'busybox');
  const tar = path.join(CACHE, 'busybox.tar');
  if (!fs.existsSync(path.join(dir, 'bin', 'true')) || !fs.existsSync(tar)) {
    log('making the busybox rootfs (scripts/make-busybox-rootfs.sh)');
    const r = sh('bash', [path.join(REPO, 'scripts', 'make-busybox-rootfs.sh'), dir, tar], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.code !== 0) throw new Error('scripts/make-busybox-rootfs.sh failed');
  }
  return { dir, tar };
}

/** The Debian minbase rootfs, or { skipped } with the reason. */
export function debianRootfs(log) {
  const dir = path.join(CACHE, 'debian');
  const tar = path.join(CACHE, 'debian.tar');
  if (!(fs.existsSync(path.join(dir, '.complete')) && fs.existsSync(tar)))
    log('making the Debian minbase rootfs with debootstrap (cached in bench/.cache, once)');
  const r = sh('bash', [path.join(REPO, 'scripts', 'make-debian-rootfs.sh'), dir, tar], { stdio: ['ignore', 'inherit', 'pipe'] });
  if (r.code !== 0) return { skipped: r.stderr.trim().split('\n').filter(Boolean).join(' / ') || 'make-debian-rootfs.sh failed' };
  return { dir, tar };
}

/** The limits of the limited start rows, for nsbox and (as linux.resources) for crun. */
export const BENCH_LIMITS = Object.freeze({ memory: 64 * 2 ** 20, pids: 64, cpus: 1 });

/**
 * Three OCI bundles on the busybox rootfs, from `crun spec` (or `runc spec`): "default" as
 * generated, "limits" with BENCH_LIMITS in linux.resources (memory with no swap beyond it,
 * pids, a CPU quota of one CPU per 100 ms period, as nsbox writes them), and "lean" without
 * cgroups (no resources, no /sys/fs/cgroup mount) and without a network namespace. All:
 * terminal false, args ["/bin/true"], the shared read-only root.
 */
export function ociBundles(rootfs, specTool) {
  const out = {};
  for (const variant of ['default', 'limits', 'lean']) {
    const dir = path.join(CACHE, 'oci', variant);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const r = sh(specTool, ['spec'], { cwd: dir });
    if (r.code !== 0) throw new Error(`${specTool} spec: ${r.stderr}`);
    const file = path.join(dir, 'config.json');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    config.process.terminal = false;
    config.process.args = ['/bin/true'];
    config.root = { path: rootfs, readonly: true };
    config.hostname = 'bench';
    if (variant === 'limits') {
      config.linux.resources = {
        ...config.linux.resources,
        memory: { limit: BENCH_LIMITS.memory, swap: BENCH_LIMITS.memory },
        pids: { limit: BENCH_LIMITS.pids },
        cpu: { quota: BENCH_LIMITS.cpus * 100000, period: 100000 },
      };
    }
    if (variant === 'lean') {
      delete config.linux.resources;
      config.linux.namespaces = config.linux.namespaces.filter((n) => n.type !== 'network');
      config.mounts = config.mounts.filter((m) => !m.destination.startsWith('/sys/fs/cgroup'));
    }
    fs.writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
    out[variant] = dir;
  }
  return out;
}

const firstLine = (s) => s.trim().split('\n')[0] ?? '';

/** What is installed, with versions; a missing one carries the line that says how to get it. */
export function detectPeers() {
  const peers = {};
  const probe = (name, cmd, versionArgs, pkg) => {
    const p = which(cmd);
    if (!p) {
      peers[name] = { missing: `${name}: not installed, skipped (apt-get install ${pkg})` };
      return;
    }
    const v = sh(p, versionArgs);
    peers[name] = { path: p, version: firstLine(v.stdout || v.stderr) };
  };
  probe('crun', 'crun', ['--version'], 'crun');
  probe('runc', 'runc', ['--version'], 'runc');
  probe('bwrap', 'bwrap', ['--version'], 'bubblewrap');
  probe('unshare', 'unshare', ['--version'], 'util-linux');
  probe('hyperfine', 'hyperfine', ['--version'], 'hyperfine');
  probe('tar', 'tar', ['--version'], 'tar');
  probe('cc', 'cc', ['--version'], 'gcc');
  probe('strace', 'strace', ['-V'], 'strace');
  const deb = sh('dpkg-query', ['-W', '-f', '${Version}', 'debootstrap']);
  peers.debootstrap = which('debootstrap')
    ? { path: which('debootstrap'), version: `debootstrap ${deb.stdout.trim()}` }
    : { missing: 'debootstrap: not installed, the large image is skipped (apt-get install debootstrap)' };
  return peers;
}

export function machine() {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? '?';
  const git = sh('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']).stdout.trim();
  const dirty = sh('git', ['-C', REPO, 'status', '--porcelain', '--', 'src', 'src-cc']).stdout.trim() !== '';
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'));
  const cgroup = fs.existsSync('/sys/fs/cgroup/unified')
    ? 'hybrid (v1 + v2 at /sys/fs/cgroup/unified)'
    : fs.existsSync('/sys/fs/cgroup/cgroup.controllers')
      ? 'v2 (unified)'
      : 'v1';
  return {
    kernel: os.release(),
    cpus: os.cpus().length,
    cpuModel: model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    cgroups: cgroup,
    node: process.version,
    nsbox: `${pkg.version} (git ${git}${dirty ? ', with uncommitted changes in src/' : ''})`,
    storage: firstLine(sh('findmnt', ['-no', 'FSTYPE', '-T', CACHE]).stdout) || '?',
    virtualization: firstLine(sh('systemd-detect-virt').stdout) || '?',
  };
}
