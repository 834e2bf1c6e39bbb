import { constants as osConstants } from 'node:os';

import type { Container, ExitStatus } from '../../container';
import { NsboxError } from '../../errors';
import { parseUlimit, type Limits } from '../../limits';
import type { LogOptions, RunOptions } from '../../runtime';
import type { SecurityOptions } from '../../security';
import type { Parsed } from '../args';
import type { Global } from '../main';
import { printError } from '../output';
import { runBatchesInline } from '../../fsbatch';
import { checkUsernsMode } from '../../userns';
import { SignalRelay, attachAndWait, stdioFor } from '../terminal';
import { envFrom, mountsFrom, networkFrom, withEntrypoint } from '../run-habits';
import { runtimeFrom } from './shared';

/** The exit status of `run`: the command's own, 128+N for signal N. */
export function exitCodeOf(status: ExitStatus): number {
  if (status.exitCode !== null) return status.exitCode;
  const n = status.signal ? (osConstants.signals as Record<string, number>)[status.signal] : undefined;
  return 128 + (n ?? 0);
}

function optionsFrom(p: Parsed): RunOptions {
  const f = p.flags;
  const [image, ...args] = p.args as [string, ...string[]];
  const command = withEntrypoint(f.entrypoint as string | undefined, args);
  const net = networkFrom(f.net as string | undefined, f.network as string | undefined);
  const mounts = mountsFrom((f.mount as string[] | undefined) ?? []);
  const o: RunOptions = { image, remove: !!f.rm };
  if (f['read-only']) o.readOnly = true;
  const userns = checkUsernsMode(f.userns, 'run: --userns');
  if (userns) o.userns = userns;
  if (command.length) o.command = command;
  if (f.name !== undefined) o.name = f.name as string;
  if (f.volume || mounts.volumes.length) o.volumes = [...((f.volume as string[] | undefined) ?? []), ...mounts.volumes];
  const env = envFrom((f['env-file'] as string[] | undefined) ?? [], (f.env as string[] | undefined) ?? []);
  if (env.length) o.env = env;
  if (f.workdir !== undefined) o.cwd = f.workdir as string;
  if (f.hostname !== undefined) o.hostname = f.hostname as string;
  if (net) o.network = net;
  if (f.device) o.devices = f.device as string[];
  const limits = limitsFrom(p);
  if (limits) o.limits = limits;
  if (f.ulimit) o.ulimits = Object.fromEntries((f.ulimit as string[]).map(parseUlimit));
  if (f.timeout !== undefined) o.timeout = parseDuration(f.timeout as string);
  if (f.tmpfs || mounts.tmpfs.length) o.tmpfs = [...((f.tmpfs as string[] | undefined) ?? []), ...mounts.tmpfs];
  const security = securityFrom(p);
  if (security) o.security = security;
  return o;
}

function numberFlag(p: Parsed, flag: string): number | undefined {
  const v = p.flags[flag] as string | undefined;
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new NsboxError('INVALID_ARGUMENT', `run: --${flag} ${v}: expected a number`);
  return n;
}

/** --storage-opt size=BYTES (docker's spelling, its only option here) or --disk BYTES. */
function diskFrom(p: Parsed): string | undefined {
  let size = p.flags.disk as string | undefined;
  for (const o of (p.flags['storage-opt'] as string[] | undefined) ?? []) {
    const m = /^size=(.+)$/.exec(o);
    if (!m) throw new NsboxError('INVALID_ARGUMENT', `run: --storage-opt ${o}: only size=BYTES is supported`);
    if (size !== undefined && size !== m[1]) throw new NsboxError('INVALID_ARGUMENT', `run: --storage-opt ${o}: the size is given twice`);
    size = m[1]!;
  }
  return size;
}

/** -m, --memory-swap, --cpus, --cpuset-cpus, --cpu-shares, --pids-limit, --disk as Limits. */
function limitsFrom(p: Parsed): Limits | undefined {
  const f = p.flags;
  const l: Limits = {};
  if (f.memory !== undefined) l.memory = f.memory as string;
  if (f['memory-swap'] !== undefined) l.memorySwap = f['memory-swap'] as string;
  const cpus = numberFlag(p, 'cpus');
  if (cpus !== undefined) l.cpus = cpus;
  if (f['cpuset-cpus'] !== undefined) l.cpuset = f['cpuset-cpus'] as string;
  const shares = numberFlag(p, 'cpu-shares');
  if (shares !== undefined) l.cpuShares = shares;
  const pids = numberFlag(p, 'pids-limit');
  if (pids !== undefined) l.pids = pids;
  const disk = diskFrom(p);
  if (disk !== undefined) l.disk = disk;
  if (f['cpu-time'] !== undefined) l.cpuTime = parseDuration(f['cpu-time'] as string, 'cpu-time') / 1000;
  return Object.keys(l).length ? l : undefined;
}

/** '30s', '2m', '500ms', '1h', or plain seconds, as milliseconds. */
export function parseDuration(text: string, flag = 'timeout'): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new NsboxError('INVALID_ARGUMENT', `run: --${flag} ${text}: expected a duration like 30s, 2m or 500ms`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  const ms = Math.round(Number(m[1]) * unit);
  if (ms < 1) throw new NsboxError('INVALID_ARGUMENT', `run: --${flag} ${text}: too short`);
  return ms;
}

/** --privileged, --cap-add, --cap-drop, --security-opt, --user as SecurityOptions. */
export function securityFrom(p: Parsed): SecurityOptions | undefined {
  const f = p.flags;
  const s: SecurityOptions = {};
  if (f.privileged) s.privileged = true;
  if (f['cap-add']) s.capAdd = f['cap-add'] as string[];
  if (f['cap-drop']) s.capDrop = f['cap-drop'] as string[];
  if (f.user !== undefined) s.user = f.user as string;
  for (const opt of (f['security-opt'] as string[] | undefined) ?? []) {
    const [key, value] = opt.split(/[=:]/, 2) as [string, string | undefined];
    if (key === 'seccomp' && value === 'unconfined') s.seccomp = 'unconfined';
    else if (key === 'seccomp' && value === 'default') s.seccomp = 'default';
    else if (key === 'no-new-privileges' && (value === undefined || value === 'true')) s.noNewPrivileges = true;
    else if (key === 'no-new-privileges' && value === 'false') s.noNewPrivileges = false;
    else throw new NsboxError('INVALID_ARGUMENT', `run: --security-opt ${opt}: seccomp=unconfined, seccomp=default or no-new-privileges[=true|false]`);
  }
  return Object.keys(s).length ? s : undefined;
}

export default async function run(p: Parsed, g: Global): Promise<number> {
  // One container, then the process ends: its few file system batches go on this thread
  // rather than starting libuv's pool for them (src/fsbatch.ts).
  runBatchesInline();
  const options = optionsFrom(p);
  if (p.flags.detach) return detach(p, options, g);
  logOptions(p);
  const tty = !!p.flags.tty;
  const interactive = !!p.flags.interactive;
  if (tty) {
    const out = process.stdout;
    options.tty = out.isTTY ? { cols: out.columns, rows: out.rows } : true;
  } else {
    options.stdio = stdioFor(interactive);
  }
  const signals = new SignalRelay();
  let c: Container;
  try {
    c = await runtimeFrom(g).run(options);
  } catch (e) {
    signals.close();
    if (e instanceof NsboxError && e.step === 'exec') {
      printError(e);
      return e.code === 'ENOENT' ? 127 : 126;
    }
    throw e;
  }

  const status = await attachAndWait(c, tty, interactive, signals);
  const why = status.timedOut ? 'its --timeout passed' : status.oomKilled ? 'it ran out of memory (--memory)' : '';
  if (why) process.stderr.write(`nsbox: the container was killed: ${why}\n`);
  return exitCodeOf(status);
}

/**
 * -d: the container under a monitor of its own (a few pages of static code, not a Node
 * process); its output goes to its log (`nsbox logs`). Prints the id, exits.
 */
async function detach(p: Parsed, options: RunOptions, g: Global): Promise<number> {
  if (p.flags.tty || p.flags.interactive) {
    throw new NsboxError('INVALID_ARGUMENT', 'run: -d with -t or -i: a detached container has no terminal and no stdin (its output is in nsbox logs)');
  }
  // --timeout and --cpu-time are enforced by the container's monitor.
  const { stdio: _s, tty: _t, signal: _a, ...rest } = options;
  void _s;
  void _t;
  void _a;
  try {
    const c = await runtimeFrom(g).run({ ...rest, ...logOptions(p), detach: true });
    process.stdout.write(`${c.id}\n`);
    return 0;
  } catch (e) {
    if (e instanceof NsboxError && e.step === 'exec') {
      printError(e);
      return e.code === 'ENOENT' ? 127 : 126;
    }
    throw e;
  }
}

/** --log-opt max-size=10m --log-opt max-file=3 (or both in one, comma-separated). */
export function logOptions(p: Parsed): LogOptions {
  const o: LogOptions = {};
  for (const item of ((p.flags['log-opt'] as string[] | undefined) ?? []).flatMap((x) => x.split(','))) {
    const [key, value = ''] = item.split('=', 2) as [string, string?];
    if (key === 'max-size') o.logMaxSize = value;
    else if (key === 'max-file' && /^\d+$/.test(value)) o.logMaxFiles = Number(value);
    else throw new NsboxError('INVALID_ARGUMENT', `run: --log-opt ${item}: max-size=SIZE or max-file=N`);
  }
  if (Object.keys(o).length && !p.flags.detach) throw new NsboxError('INVALID_ARGUMENT', 'run: --log-opt is for detached containers (-d)');
  return o;
}
