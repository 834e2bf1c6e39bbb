/**
 * What this process reads of processes and mounts in /proc: start times and states (to tell a
 * pid from its reuse), pid namespaces, the mount table. The one parser of /proc/PID/stat.
 */
import * as fs from 'node:fs';

/**
 * The fields of /proc/PID/stat from the third on (state, ppid, ...: index 0 is field 3), or
 * undefined once the process is gone. The command name (field 2) may hold spaces and
 * parentheses: the fields are split after its last ')'.
 */
export function procStat(pid: number | 'self', tid?: number): string[] | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The start time of a process (field 22 of /proc/PID/stat), to tell a pid from its reuse. */
export function processStartTime(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

/** A process's state letter (R, S, Z, ...) and its parent, or undefined once it is gone. */
export function processState(pid: number): { state: string; ppid: number } | undefined {
  const f = procStat(pid);
  return f === undefined ? undefined : { state: f[0]!, ppid: Number(f[1]) };
}

let selfStart: string | undefined;
/** This process's own start time: with its pid, what tells others it is still alive. */
export function ownStartTime(): string {
  selfStart ??= processStartTime(process.pid) ?? '0';
  return selfStart;
}

let selfThread: string | null | undefined;
/**
 * A worker thread's own kernel thread id and its start time, `<tid>-<start>`: what tells
 * others the worker still runs (a terminated worker's process lives on, and so does its pid).
 * Undefined on the main thread, whose life is the process's. Read on the calling thread:
 * /proc/thread-self is the thread that reads it, and a sync call runs on the JS thread.
 */
export function ownThread(): string | undefined {
  if (selfThread === undefined) {
    // The main thread's id is the pid. Not node:worker_threads' isMainThread: requiring it
    // loads net and child_process, some milliseconds of every CLI run.
    const tid = Number(/\/task\/(\d+)$/.exec(fs.readlinkSync('/proc/thread-self'))?.[1]);
    selfThread = tid === process.pid ? null : `${tid}-${procStat(process.pid, tid)?.[19] ?? '0'}`;
  }
  return selfThread ?? undefined;
}

/**
 * What a lock or a tombstone names as its owner: `<pid>-<start>` of this process, then
 * `-<tid>-<start>` of its worker thread when it runs in one.
 */
export function ownerTag(): string {
  const thread = ownThread();
  return `${process.pid}-${ownStartTime()}${thread ? `-${thread}` : ''}`;
}

/** True while the owner of an ownerTag runs: its process, and its worker thread if it names one. */
export function ownerAlive(pid: number, start: string, thread: string | undefined): boolean {
  return processAlive(pid, start) && (thread === undefined || threadAlive(pid, thread));
}

/** True while the thread `<tid>-<start>` (ownThread) of process `pid` runs. */
export function threadAlive(pid: number, thread: string): boolean {
  const m = /^(\d+)-(\d+)$/.exec(thread);
  if (!m) return false;
  const f = procStat(pid, Number(m[1]));
  return f !== undefined && f[0] !== 'Z' && f[0] !== 'X' && f[19] === m[2];
}

/** True while that very process runs (a zombie counts as gone: it only waits to be reaped). */
export function processAlive(pid: number | undefined, start: string | undefined): boolean {
  if (!pid || !start) return false;
  const f = procStat(pid);
  return f !== undefined && f[0] !== 'Z' && f[0] !== 'X' && f[19] === start;
}

/** The pid namespace of a process (`pid:[4026532...]`), or undefined when it is gone. */
export function processPidNamespace(pid: number | 'self'): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/** Mount points at or under `dir` in this process's mount namespace. */
export function mountsUnder(dir: string, mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8')): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    const mountPoint = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mountPoint === dir || mountPoint.startsWith(`${dir}/`)) out.push(mountPoint);
  }
  return out;
}
