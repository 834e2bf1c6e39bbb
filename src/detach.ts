/**
 * Detached containers (`run({ detach: true })`, `nsbox run -d`): started like any other, but
 * supervised by nsbox-monitor (src-cc/init/monitor.cc), a few pages of static code in a
 * session of its own, instead of by this Node process. The monitor passes signals on, writes
 * the container's output to containers/<id>/container.log, removes its cgroups and writes
 * containers/<id>/exit.json at its end; the container dies with the monitor.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';

import { describeFailure, planStart, releasePlanFds, type LaunchOptions } from './container';
import { NsboxError, invalid } from './errors';
import { parseSize } from './limits';
import { native } from './native';

/** How a detached container's log is kept. */
export interface LogOptions {
  /** Bytes (or '10m') a log file may grow to before it is rotated. Default 10 MiB. */
  logMaxSize?: number | string | undefined;
  /** Files kept, the current one included (container.log, container.log.1, ...). Default 2. */
  logMaxFiles?: number | undefined;
}

export const DEFAULT_LOG_MAX_SIZE = 10 * 1024 * 1024;
export const DEFAULT_LOG_MAX_FILES = 2;

/** What run({ detach: true }) resolves to: the container is supervised by its monitor. */
export interface DetachedContainer {
  id: string;
  name: string | null;
  /** nsbox-init, the container's PID 1 (as the host sees it). */
  pid: number;
  /** nsbox-monitor, its supervisor: signals sent to it reach the container. */
  monitorPid: number;
}

/** logMaxSize and logMaxFiles, checked, with their defaults. */
export function logLimits(o: LogOptions): { logMaxSize: number; logMaxFiles: number } {
  const logMaxSize = o.logMaxSize === undefined ? DEFAULT_LOG_MAX_SIZE : parseSize(o.logMaxSize, 'logMaxSize');
  if (logMaxSize < 1024) throw invalid(`logMaxSize: ${o.logMaxSize}: at least 1k`);
  const logMaxFiles = o.logMaxFiles ?? DEFAULT_LOG_MAX_FILES;
  if (!Number.isInteger(logMaxFiles) || logMaxFiles < 1 || logMaxFiles > 100) throw invalid(`logMaxFiles: ${String(logMaxFiles)}: 1 to 100`);
  return { logMaxSize, logMaxFiles };
}

/**
 * Starts a container under a monitor; returns once its command has been exec'd (throws the
 * same NsboxError as Container.launch when it cannot start, leaving nothing behind).
 * `dir` is the container's directory. The caller writes one byte to `ack` once the record
 * names the monitor, then closes it: closed without that byte, the monitor kills the
 * container (so that a caller killed before its record was written leaves no container that
 * nothing accounts for).
 */
export function launchDetached(
  options: LaunchOptions,
  id: string,
  dir: string,
  log: LogOptions,
): { pid: number; monitorPid: number; ack: number; cgroups: string[] } {
  const { timeout, signal, tty, stdio, ...rest } = options;
  void stdio; // always: no stdin, stdout and stderr to the monitor
  if (tty) throw invalid('detach: a detached container has no terminal (tty)');
  if (signal !== undefined) throw invalid('detach: an abort signal lives in this process; a detached container outlives it (use stop)');
  if (timeout !== undefined && (!Number.isInteger(timeout) || timeout < 1 || timeout > 2 ** 31 - 1)) {
    throw invalid('timeout: expected milliseconds, an integer from 1');
  }
  const { logMaxSize, logMaxFiles } = logLimits(log);
  // Root's userns 'auto': P2 writes the maps and hands over the host paths (core/spawn.cc).
  const { plan, cgroup, bounds } = planStart(rest, id, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    // The monitor enforces the time limits, as Container does in Node.
    const cpu = bounds.cpuTimeNs !== undefined ? cgroup?.cpuUsageFile() : undefined;
    if (bounds.cpuTimeNs !== undefined && !cpu) {
      throw new NsboxError('ENOTSUP', "limits.cpuTime: no cgroup counts this container's CPU time (no cpuacct, no cgroup v2 cpu.stat)");
    }
    const cgroups = cgroup?.dirs ?? [];
    const oom = cgroups.map((d) => path.join(d, 'memory.oom_control')).find((f) => existsSync(f));
    const r = native().spawn(plan, () => {}, {
      dir,
      logMaxSize,
      logMaxFiles,
      cgroups,
      ...(oom ? { oom } : {}),
      ...(timeout !== undefined ? { timeoutMs: timeout } : {}),
      ...(cpu ? { cpuTimeNs: bounds.cpuTimeNs!, cpuFile: cpu.file, cpuFileV2: cpu.v2 } : {}),
    });
    if (!r.ok) throw describeFailure(plan, r);
    return { pid: r.pid, monitorPid: r.monitorPid, ack: r.ack, cgroups };
  } catch (e) {
    // Nothing is in it: the start failed and the monitor reaped the container before saying so.
    cgroup?.closeFds();
    cgroup?.remove().catch(() => {});
    throw e;
  } finally {
    cgroup?.closeFds();
    releasePlanFds(plan);
  }
}
