/**
 * Small file system calls run in order in ONE job of libuv's thread pool (the addon's
 * fsBatchAsync, src-cc/binding/fsbatch.cc). A start and its `--rm` removal were about twenty
 * pool jobs (fs.promises and the addon's single calls), most waiting on the one before; each is
 * a wake-up of another thread and a turn of the loop, which on a busy machine costs a
 * scheduling delay (issue 14). Steps that need no JS between them go as one batch. Using this
 * instead of fs.promises also keeps Node from loading fs.promises at all on a one-shot CLI
 * run (about 5 ms).
 */
import { native, type NativeErrno } from './native';

export type BatchOp = {
  op: 'mkdir' | 'write' | 'rename' | 'rmdir' | 'unlink' | 'symlink' | 'read' | 'exists' | 'stat' | 'removeTree' | 'readLinks';
  /** Absolute. symlink: the link made; rename: the source. */
  path: string;
  /** rename: the destination; symlink: the target. */
  to?: string;
  /** write: the content. */
  data?: string;
  /** write: open flags (close-on-exec is added). */
  flags?: number;
  /** mkdir, write: the mode of what is made. */
  mode?: number;
  /** write: set `mode` with fchmod, whatever the umask. */
  setMode?: boolean;
  /** A failure of this op does not stop the ops after it. */
  goOn?: boolean;
  /** Errno codes that count as success (ENOENT, EEXIST, ENOTEMPTY, EBUSY). */
  tolerate?: Array<'ENOENT' | 'EEXIST' | 'ENOTEMPTY' | 'EBUSY'>;
};

export type BatchStat = { dev: string; ino: number; mode: number };
/** undefined: not run (an op before it failed); null: done; else the failure or the op's value. */
export type BatchResult = undefined | null | NativeErrno | (NativeErrno & { path: Buffer }) | string | boolean | BatchStat | Record<string, string>;

/** Whether batches run on the calling thread (runBatchesInline). */
let inline = false;

/**
 * From now on, this process runs its batches on the JS thread: for a one-shot process, the
 * CLI's `run`, where nothing else waits for the loop. Its first pool job would make libuv start
 * all of the pool's threads and wait until each one runs (3-6 ms on a loaded 2-CPU VM, the
 * first start's largest cold cost: bench/ANALYSIS.md), and a run uses the pool for nothing
 * else. Running a batch at once is one of the orders the pool allows (its thread may run the
 * job before the caller's next statement), so callers see nothing new: the promise still
 * settles in a later microtask.
 */
export function runBatchesInline(): void {
  inline = true;
}

export function fsBatch(ops: readonly BatchOp[]): Promise<BatchResult[]> {
  if (inline) {
    try {
      return Promise.resolve(native().fsBatchSync(ops));
    } catch (e) {
      // an invalid op: rejected, as the pool's way rejects it (the promise's executor throws)
      return Promise.reject(e as Error);
    }
  }
  return new Promise((resolve) => native().fsBatchAsync(ops, resolve));
}

export function isBatchError(r: BatchResult): r is NativeErrno {
  return typeof r === 'object' && r !== null && typeof (r as NativeErrno).errno === 'number' && typeof (r as NativeErrno).code === 'string';
}

/** A failed op as the Error fs would have thrown (code, errno, syscall, path), for fromSystemError. */
export function batchError(r: NativeErrno, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${r.code}: ${r.syscall} '${path}'`), { code: r.code, errno: -r.errno, syscall: r.syscall, path });
}

/** The first op that failed and its failure, or undefined when all that ran succeeded. */
export function firstFailure(
  ops: readonly BatchOp[],
  results: readonly BatchResult[],
): { index: number; op: BatchOp; error: NodeJS.ErrnoException } | undefined {
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    if (isBatchError(r) && !ops[i]!.goOn) return { index: i, op: ops[i]!, error: batchError(r, ops[i]!.path) };
  }
  return undefined;
}
