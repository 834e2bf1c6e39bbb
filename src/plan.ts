/**
 * Turns what a caller asks for into the flat list of steps the container's first process
 * walks (src-cc/core/child.cc). Pure: no system calls, so it is unit-tested on its own and
 * everything the child needs is ready before clone.
 */
import { invalid } from './errors';
import {
  MOUNT_ATTR_NODEV,
  MOUNT_ATTR_NOEXEC,
  MOUNT_ATTR_NOSUID,
  MOUNT_ATTR_RDONLY,
  STEP_EXPECT_DEVICE,
  STEP_NO_FOLLOW_FINAL,
  STEP_SOURCE_NO_LINKS,
  STEP_TARGET_IS_FILE,
  S_IFBLK,
  S_IFCHR,
  type NativePlan,
  type NativeStdio,
  type NativeStep,
  type NativeUserNs,
} from './native';
import type { Confinement } from './security';
import type { PlanStdio } from './stdio';
import { arrayOf, boolean, integer, optional, shape, string, type Check } from './validate';

export type RootSource =
  /** An existing root filesystem directory, bound onto itself (writes go to it, unless readonly). */
  | { type: 'bind'; path: string; readonly?: boolean }
  /** An overlay of read-only `lower` layers (topmost first) under a write layer. */
  | {
      type: 'overlay';
      lower: string[];
      upper: string;
      work: string;
      target: string;
      /** Never sync the write layer (it is thrown away on exit): overlay's `volatile`. */
      volatile?: boolean;
      /**
       * A filesystem of bounded size (limits.disk) mounted at `target` in the container's own
       * mount namespace before the overlay, with `upper` and `work` made in it.
       */
      writeLayer?: WriteLayerMount;
    }
  /** The book's driver: aufs branches, the write layer rw over the image layers ro. */
  | { type: 'aufs'; lower: string[]; upper: string; target: string };

/** The write layer's own filesystem: a sized tmpfs, or an ext4 image on a loop device. */
export interface WriteLayerMount {
  fstype: 'tmpfs' | 'ext4';
  /** fsconfig options, key, value, ... ('' value: a flag), for a filesystem the child makes. */
  options?: string[];
  /** A mount the parent made in no namespace (an fd it closes after the start), attached instead. */
  fd?: number;
  /** Host path (a directory of the container's) it is mounted on. */
  target: string;
}

export interface BindMount {
  /** Host path (absolute). */
  source: string;
  /** Absolute path inside the container, normalised (see containerPath). */
  target: string;
  readonly: boolean;
  /** The host path is a file, not a directory. */
  file?: boolean;
  /** The host path already opened (without following links) by the parent: userns 'auto'. */
  fd?: number;
}

/** The plan's stdio as the binding takes it: modes, and the fds given by number. */
export function nativeStdio(stdio: [PlanStdio, PlanStdio, PlanStdio]): { stdio: [NativeStdio, NativeStdio, NativeStdio]; stdioFds?: [number, number, number] } {
  const modes = stdio.map((e) => (typeof e === 'number' ? 'fd' : e)) as [NativeStdio, NativeStdio, NativeStdio];
  if (!stdio.some((e) => typeof e === 'number')) return { stdio: modes };
  return { stdio: modes, stdioFds: stdio.map((e) => (typeof e === 'number' ? e : -1)) as [number, number, number] };
}

/** A tmpfs of the container's own (`--tmpfs`): in its memory, charged to its memory limit. */
export interface TmpfsMount {
  /** Absolute path inside the container. */
  target: string;
  /** Bytes; the kernel's default (half of RAM) when left out. */
  size?: number;
  /** Permission bits of its root, default 0o1777. */
  mode?: number;
  noexec?: boolean;
}

/** The check of a list of TmpfsMount, for the options a start takes and the record that keeps them. */
export const tmpfsMountsCheck: Check<TmpfsMount[] | undefined> = optional(
  arrayOf(
    shape<TmpfsMount>({
      target: string,
      size: optional(integer(0, Number.MAX_SAFE_INTEGER)),
      mode: optional(integer(0, 0o7777)),
      noexec: optional(boolean),
    }),
  ),
);

/** A host device node bound into the container's /dev (`--device`), and allowed in its cgroup. */
export interface DeviceNode {
  /** Host path of the node (absolute). */
  source: string;
  /** Path inside the container, normalised, under /dev. */
  target: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
}

export interface PlanInput {
  root: RootSource;
  command: string[];
  env?: Record<string, string> | undefined;
  hostname?: string | undefined;
  cwd?: string | undefined;
  network?: 'none' | 'host' | undefined;
  mounts?: BindMount[] | undefined;
  stdio?: [PlanStdio, PlanStdio, PlanStdio] | undefined;
  tty?: { cols: number; rows: number } | undefined;
  /** What the container may do (src/security.ts): its credentials and filter, its masking steps. */
  confinement?: Confinement | undefined;
  /** Fork-style clone instead of CLONE_VM | CLONE_VFORK (for benchmarks). */
  forkStyle?: boolean | undefined;
  /** Whether the kernel has cgroup namespaces (true on every kernel nsbox supports). */
  cgroupNamespace?: boolean | undefined;
  /**
   * Device nodes work on the root and /dev (privileged): without it every mount the container
   * can write is nodev, and only the host's own nodes bound into /dev are usable.
   */
  deviceNodesAllowed?: boolean | undefined;
  /** Host device nodes bound into /dev besides the standard ones. */
  devices?: DeviceNode[] | undefined;
  /**
   * cgroup.procs files (open fds) the container's first process writes itself into, before
   * anything else: it then makes its cgroup namespace there.
   */
  cgroupProcs?: number[] | undefined;
  /** nsbox-init's options beyond those the plan makes (rlimit=..., see src/limits.ts). */
  initOptions?: string[] | undefined;
  /** tmpfs mounts, placed among the volumes by depth. */
  tmpfs?: TmpfsMount[] | undefined;
  /** A v1 cgroup (its `tasks` file) the container is born in, without a move of its own. */
  bornIn?: string | undefined;
  /** An open cgroup v2 directory the container is born in (clone3 + CLONE_INTO_CGROUP). */
  cgroupFd?: number | undefined;
  /**
   * The setup cgroup (src/cgroup.ts, setupCpuCgroup): the child is born in `tasks` and its
   * last step writes itself into `leaveFd` (the caller's own cpu cgroup); its cgroup
   * namespace is made after that, so that the container sees its cgroups as without it.
   */
  setup?: { tasks: string; leaveFd: number } | undefined;
  /**
   * Files nsbox wrote for this container (/etc/hosts, /etc/hostname, /etc/resolv.conf), bound
   * over the root's own before the volumes (so a volume there wins): see etcFileSteps.
   */
  etcFiles?: Array<{ source: string; target: string }> | undefined;
  /**
   * A user namespace of the container's own (rootless: see rootlessUserNs). Inside one the
   * overlay keeps its metadata in user.overlay.* (`userxattr`), /sys comes from the host
   * (bound read-only) where the container shares the host's network, and devpts takes no
   * gid the namespace does not map.
   */
  userns?: NativeUserNs;
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const HOST_NAME_MAX = 64;

const hasNul = (s: string) => s.includes('\0');

/**
 * An absolute, normalised path inside the container: no '..', no empty or '.' parts.
 * '..' is refused rather than resolved, so that what a user wrote is what is mounted.
 */
export function containerPath(p: string, what: string): string {
  if (typeof p !== 'string' || p === '') throw invalid(`${what}: empty path`);
  if (hasNul(p)) throw invalid(`${what}: path contains a NUL byte`);
  if (!p.startsWith('/')) throw invalid(`${what}: ${p}: must be an absolute path inside the container`, p);
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  if (parts.includes('..')) throw invalid(`${what}: ${p}: '..' is not allowed`, p);
  return '/' + parts.join('/');
}

export function validateCommand(command: unknown): string[] {
  if (!Array.isArray(command) || command.length === 0) throw invalid('command: must be a non-empty array of strings');
  for (const a of command) {
    if (typeof a !== 'string') throw invalid('command: every argument must be a string');
    if (hasNul(a)) throw invalid(`command: argument ${JSON.stringify(a.replace(/\0/g, '\\0'))} contains a NUL byte`);
  }
  if (command[0] === '') throw invalid('command: the program name is empty');
  return command as string[];
}

export function validateHostname(h: string): string {
  if (typeof h !== 'string' || h.length === 0) throw invalid('hostname: must not be empty');
  if (Buffer.byteLength(h) > HOST_NAME_MAX) throw invalid(`hostname: ${Buffer.byteLength(h)} bytes, at most ${HOST_NAME_MAX}`);
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(h)) throw invalid(`hostname: ${JSON.stringify(h)}: letters, digits, '-' and '.' only`);
  return h;
}

/** The environment as execve gets it: the defaults, then the caller's, nothing from the host. */
export function buildEnv(env: Record<string, string> | undefined, tty: boolean, hostname: string): string[] {
  const merged: Record<string, string> = { PATH: DEFAULT_PATH, HOSTNAME: hostname, HOME: '/root' };
  if (tty) merged.TERM = 'xterm';
  for (const [k, v] of Object.entries(env ?? {})) {
    if (k === '' || k.includes('=')) throw invalid(`env: ${JSON.stringify(k)}: a name must be non-empty and without '='`);
    if (typeof v !== 'string') throw invalid(`env: ${k}: the value must be a string`);
    if (hasNul(k) || hasNul(v)) throw invalid(`env: ${k}: contains a NUL byte`);
    merged[k] = v;
  }
  return Object.entries(merged).map(([k, v]) => `${k}=${v}`);
}

/** Where execve looks for the command: its own path, or each PATH entry in turn. */
export function execCandidates(program: string, pathVar: string): string[] {
  if (program.includes('/')) return [program];
  return pathVar.split(':').map((dir) => `${dir === '' ? '.' : dir.replace(/\/+$/, '')}/${program}`);
}

/**
 * The user namespace of a container run by an unprivileged user: its own uid and gid are root
 * inside, nothing else is mapped (a one-id map needs no helper and no /etc/subuid).
 */
export function rootlessUserNs(uid: number, gid: number): NativeUserNs {
  return { uidMap: `0 ${uid} 1\n`, gidMap: `0 ${gid} 1\n`, setgroupsDeny: true };
}

/** Whether an id map ("inside outside count" lines) gives `id` inside a meaning. */
export function mapsId(map: string, id: number): boolean {
  return map.split('\n').some((line) => {
    const [inside, , count] = line.trim().split(/\s+/).map(Number);
    return inside !== undefined && count !== undefined && id >= inside && id < inside + count;
  });
}

/** overlayfs separates lower layers with ':' and escapes with '\'. */
export function overlayLowerdir(layers: string[]): string {
  return layers.map((l) => l.replace(/[\\:]/g, (c) => `\\${c}`)).join(':');
}

const rel = (p: string) => p.replace(/^\/+/, '');

/** nosuid and nodev: nothing on the write layer's own mount is ever a way to privileges. */
function writeLayerStep(w: WriteLayerMount): NativeStep {
  return {
    op: 'mountWriteLayer',
    name: `write layer ${w.fstype} ${w.target}`,
    fstype: w.fstype,
    target: w.target,
    options: w.options ?? [],
    attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    ...(w.fd !== undefined ? { fd: w.fd } : {}),
  };
}

/** No device node on the root works unless the container is privileged (nodev). */
function rootSteps(root: RootSource, nodev: number, userxattr: boolean): NativeStep[] {
  switch (root.type) {
    case 'bind':
      return [{ op: 'bindRoot', name: `root ${root.path}`, source: root.path, attrs: nodev | (root.readonly ? MOUNT_ATTR_RDONLY : 0) }];
    case 'overlay':
      return [
        ...(root.writeLayer ? [writeLayerStep(root.writeLayer)] : []),
        {
          op: 'mountRootFs',
          name: `overlay root ${root.target}`,
          fstype: 'overlay',
          target: root.target,
          attrs: nodev,
          options: [
            'lowerdir',
            overlayLowerdir(root.lower),
            'upperdir',
            root.upper,
            'workdir',
            root.work,
            ...(root.volatile ? ['volatile', ''] : []),
            // In a user namespace trusted.* xattrs are out of reach: overlay's own go to user.overlay.*.
            ...(userxattr ? ['userxattr', ''] : []),
          ],
        },
      ];
    case 'aufs':
      return [
        {
          op: 'mountRootFs',
          name: `aufs root ${root.target}`,
          fstype: 'aufs',
          target: root.target,
          attrs: nodev,
          options: ['br', [`${root.upper}=rw`, ...root.lower.map((l) => `${l}=ro`)].join(':')],
        },
      ];
  }
}

/** The devices every container gets: the host's own nodes, bound in (see systemSteps). */
export const STANDARD_DEVICES: readonly DeviceNode[] = Object.freeze(
  (
    [
      ['null', 1, 3],
      ['zero', 1, 5],
      ['full', 1, 7],
      ['random', 1, 8],
      ['urandom', 1, 9],
      ['tty', 5, 0],
    ] as const
  ).map(([name, major, minor]): DeviceNode => ({ source: `/dev/${name}`, target: `/dev/${name}`, type: 'c', major, minor })),
);

/** A host device node bound onto a file in the container, checked to be that very device. */
function deviceStep(d: DeviceNode): NativeStep {
  return {
    op: 'bindInRoot',
    name: `device ${d.target}`,
    source: d.source,
    target: rel(d.target),
    flags: STEP_NO_FOLLOW_FINAL | STEP_TARGET_IS_FILE | STEP_EXPECT_DEVICE,
    // The bind keeps device access (no nodev) for this one node; nothing can be created on it.
    attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
    mode: d.type === 'c' ? S_IFCHR : S_IFBLK,
    major: d.major,
    minor: d.minor,
  };
}

/**
 * /proc, a /dev of its own (with the terminal, if any), and a read-only /sys. /dev is a nodev
 * tmpfs holding the host's own device nodes, each bound in (as bubblewrap does): a node made
 * there by mknod opens nothing, and the same holds without CAP_MKNOD (rootless).
 */
function systemSteps(tty: boolean, nodev: number, devices: DeviceNode[], userns?: NativeUserNs, newNet = true): NativeStep[] {
  const steps: NativeStep[] = [
    // /proc and /sys must be real directories of the image, never symlinks to elsewhere.
    {
      op: 'mountFs',
      name: 'mount /proc',
      fstype: 'proc',
      target: 'proc',
      flags: STEP_NO_FOLLOW_FINAL,
      attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    },
    {
      op: 'mountFs',
      name: 'mount /dev',
      fstype: 'tmpfs',
      target: 'dev',
      flags: STEP_NO_FOLLOW_FINAL,
      options: ['mode', '755', 'size', '65536k'],
      attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | nodev,
    },
    ...[...STANDARD_DEVICES, ...devices].map(deviceStep),
  ];
  steps.push(
    {
      op: 'mountFs',
      name: 'mount /dev/pts',
      fstype: 'devpts',
      target: 'dev/pts',
      // gid 5 (tty) only where the namespace maps it: an unmapped gid is EINVAL.
      options: ['newinstance', '', 'ptmxmode', '0666', 'mode', '0620', ...(userns && !mapsId(userns.gidMap, 5) ? [] : ['gid', '5'])],
      attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
    },
    { op: 'symlinkInRoot', name: 'link /dev/ptmx', target: 'dev/ptmx', source: 'pts/ptmx' },
    // From the container's own devpts: inside, the terminal is /dev/pts/0.
    ...(tty ? [{ op: 'openPty' as const, name: 'open the terminal', target: 'dev/pts/ptmx' }] : []),
    {
      op: 'mountFs',
      name: 'mount /dev/shm',
      fstype: 'tmpfs',
      target: 'dev/shm',
      options: ['mode', '1777', 'size', '65536k'],
      attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
    },
    { op: 'symlinkInRoot', name: 'link /dev/fd', target: 'dev/fd', source: '/proc/self/fd' },
    { op: 'symlinkInRoot', name: 'link /dev/stdin', target: 'dev/stdin', source: '/proc/self/fd/0' },
    { op: 'symlinkInRoot', name: 'link /dev/stdout', target: 'dev/stdout', source: '/proc/self/fd/1' },
    { op: 'symlinkInRoot', name: 'link /dev/stderr', target: 'dev/stderr', source: '/proc/self/fd/2' },
    // A new sysfs needs a network namespace owned by the container's user namespace: in its
    // own user namespace with the host's network, the host's /sys is bound in instead, read-only.
    userns && !newNet
      ? {
          op: 'bindInRoot',
          name: 'bind /sys',
          source: '/sys',
          target: 'sys',
          flags: STEP_NO_FOLLOW_FINAL,
          attrs: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        }
      : {
          op: 'mountFs',
          name: 'mount /sys',
          fstype: 'sysfs',
          target: 'sys',
          flags: STEP_NO_FOLLOW_FINAL,
          attrs: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        },
  );
  return steps;
}

function mountSteps(mounts: BindMount[], tmpfs: TmpfsMount[]): NativeStep[] {
  // Parents before children, so /data/sub lands on the /data volume and not under it.
  const all: Array<BindMount | (TmpfsMount & { tmpfs: true })> = [...mounts, ...tmpfs.map((t) => ({ ...t, tmpfs: true as const }))];
  const sorted = all.sort((a, b) => a.target.split('/').length - b.target.split('/').length);
  return sorted.map((m): NativeStep =>
    'tmpfs' in m
      ? {
          op: 'mountFs',
          name: `tmpfs ${m.target}`,
          fstype: 'tmpfs',
          target: rel(m.target),
          flags: STEP_NO_FOLLOW_FINAL,
          options: ['mode', (m.mode ?? 0o1777).toString(8), ...(m.size !== undefined ? ['size', String(m.size)] : [])],
          attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (m.noexec ? MOUNT_ATTR_NOEXEC : 0),
        }
      : {
          op: 'bindInRoot' as const,
          name: `volume ${m.target}`,
          source: m.source,
          target: rel(m.target),
          // A symlink as the target is refused: it could be planted to aim the mount elsewhere.
          // So is one anywhere in the host path (see child.cc's kStepSourceNoLinks).
          flags: STEP_NO_FOLLOW_FINAL | STEP_SOURCE_NO_LINKS | (m.file ? STEP_TARGET_IS_FILE : 0),
          attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (m.readonly ? MOUNT_ATTR_RDONLY : 0),
          ...(m.fd !== undefined ? { fd: m.fd } : {}),
        },
  );
}

/**
 * /etc/hosts and friends: files of the container's own directory bound over the image's (as
 * docker does), so that neither the image layer nor a host file is ever written. A symlink as
 * the target is refused (the runtime leaves out a file the image has as a link); a missing
 * one is made in the write layer. nosuid, nodev, noexec: it is data.
 */
function etcFileSteps(files: Array<{ source: string; target: string }>): NativeStep[] {
  return files.map((f) => ({
    op: 'bindInRoot',
    name: `bind ${f.target}`,
    source: f.source,
    target: rel(containerPath(f.target, 'etc file')),
    flags: STEP_NO_FOLLOW_FINAL | STEP_TARGET_IS_FILE,
    attrs: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
  }));
}

/** The /etc/hosts every container gets: localhost, and its hostname on a loopback address. */
export function hostsFile(hostname: string): string {
  return [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'ff00::0\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
    // 127.0.1.1 as Debian does: on lo in both network modes, and never the host's own name.
    `127.0.1.1\t${validateHostname(hostname)}`,
    '',
  ].join('\n');
}

function tmpfsTarget(target: string): string {
  const t = containerPath(target, 'tmpfs');
  if (t === '/') throw invalid('tmpfs: / cannot be a tmpfs');
  return t;
}

/** `--tmpfs /tmp:size=64m,mode=1777,noexec` (docker's form), or an object. */
export function parseTmpfs(spec: string, parseSize: (v: string, what: string) => number): TmpfsMount {
  const [target, opts = ''] = spec.split(/:(.*)/s) as [string, string | undefined];
  const out: TmpfsMount = { target: tmpfsTarget(target) };
  for (const o of opts.split(',').filter(Boolean)) {
    const [k, v] = o.split('=', 2) as [string, string | undefined];
    if (k === 'size' && v) out.size = parseSize(v, `tmpfs ${target}: size`);
    else if (k === 'mode' && v && /^[0-7]{3,4}$/.test(v)) out.mode = parseInt(v, 8);
    else if (k === 'noexec' && v === undefined) out.noexec = true;
    else if ((k === 'exec' || k === 'rw' || k === 'nosuid' || k === 'nodev') && v === undefined) continue;
    else throw invalid(`tmpfs ${spec}: ${o}: size=BYTES, mode=OCTAL or noexec`);
  }
  return out;
}

export function buildPlan(input: PlanInput): NativePlan {
  const command = validateCommand(input.command);
  const hostname = validateHostname(input.hostname ?? 'nsbox');
  const network = input.network ?? 'none';
  if (network !== 'none' && network !== 'host') throw invalid(`network: ${String(network)}: none or host`);
  const cwd = containerPath(input.cwd ?? '/', 'working directory');
  const env = buildEnv(input.env, !!input.tty, hostname);
  const pathVar = env.find((e) => e.startsWith('PATH='))!.slice(5);
  const mounts = (input.mounts ?? []).map((m) => ({ ...m, target: containerPath(m.target, 'volume target') }));
  for (const m of mounts) {
    if (m.target === '/') throw invalid('volume target: / cannot be a volume', m.source);
  }

  const nodev = input.deviceNodesAllowed ? 0 : MOUNT_ATTR_NODEV;
  const devices = (input.devices ?? []).map((d) => ({ ...d, target: containerPath(d.target, 'device') }));
  const steps: NativeStep[] = [
    // Into the container's cgroups first, so that its cgroup namespace is made there.
    ...(input.cgroupProcs ?? []).map((fd): NativeStep => ({ op: 'joinCgroup', name: 'join cgroup', fd })),
    ...((input.cgroupProcs?.length || input.cgroupFd !== undefined) && !input.setup && (input.cgroupNamespace ?? true)
      ? [{ op: 'unshareCgroupNs' as const, name: 'cgroup namespace' }]
      : []),
    // Nothing mounted from here on may propagate back to the host.
    { op: 'makeRootPrivate', name: 'make / private' },
    ...rootSteps(input.root, nodev, !!input.userns),
    ...systemSteps(!!input.tty, nodev, devices, input.userns, network === 'none'),
    ...etcFileSteps(input.etcFiles ?? []),
    ...mountSteps(
      mounts,
      (input.tmpfs ?? []).map((t) => ({ ...t, target: tmpfsTarget(t.target) })),
    ),
    ...(input.confinement?.steps ?? []),
    { op: 'pivotRoot', name: 'pivot_root' },
  ];
  if (network === 'none') steps.push({ op: 'loopbackUp', name: 'bring up lo' });
  steps.push({ op: 'sethostname', name: 'set hostname', source: hostname });
  if (cwd !== '/') steps.push({ op: 'chdir', name: `working directory ${cwd}`, target: cwd });
  if (input.setup) {
    // Out of the setup cgroup before anything of the container's runs (core/spawner.h), and
    // only then its cgroup namespace: rooted where the container's processes are.
    steps.push({ op: 'joinCgroup', name: 'leave the setup cgroup', fd: input.setup.leaveFd });
    if (input.cgroupNamespace ?? true) steps.push({ op: 'unshareCgroupNs', name: 'cgroup namespace' });
  }

  const plan: NativePlan = {
    newNet: network === 'none',
    // After joining its cgroups the child makes the namespace itself (unshareCgroupNs); so
    // too when born in a v2 cgroup: clone3 roots a new namespace at the cloning thread's.
    newCgroup: (input.cgroupNamespace ?? true) && !input.cgroupProcs?.length && input.cgroupFd === undefined && !input.setup,
    shareVm: !input.forkStyle,
    steps,
    argv: command,
    env,
    candidates: execCandidates(command[0]!, pathVar),
    ...nativeStdio(input.stdio ?? ['pipe', 'pipe', 'pipe']),
  };
  if (input.tty) plan.tty = input.tty;
  if (input.confinement) plan.security = input.confinement.security;
  if (input.initOptions?.length) plan.initOptions = input.initOptions;
  if (input.bornIn) plan.bornIn = input.bornIn;
  if (input.setup) plan.setupIn = input.setup.tasks;
  if (input.cgroupFd !== undefined) plan.cgroupFd = input.cgroupFd;
  if (input.userns) plan.userns = { ...input.userns };
  return plan;
}
