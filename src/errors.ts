import { constants } from 'node:os';

/**
 * The one error type nsbox throws. `code` is stable: an errno name (`ENOENT`, `EACCES`, ...)
 * when a system call failed, or one of nsbox's own codes for refused input and state.
 */
export type NsboxErrorCode =
  | 'INVALID_ARGUMENT'   // the caller's input is malformed
  | 'NOT_FOUND'          // no such image or container
  | 'CONFLICT'           // a name already in use
  | 'IN_USE'             // an image used by a container, a running container
  | 'UNSAFE_PATH'        // a path that would leave a root (volume target, tar entry)
  | 'BAD_ARCHIVE'        // a tarball that cannot be read
  | 'UNSUPPORTED'        // the kernel or filesystem lacks what is needed
  | 'NOT_RUNNING'        // exec into a container that has exited
  | 'BAD_STATE'          // a state file (record, image) that is not what nsbox wrote
  | (string & {});       // errno names

export interface NsboxErrorDetails {
  errno?: number;
  syscall?: string;
  path?: string;
  step?: string;
  hint?: string;
  cause?: unknown;
}

export class NsboxError extends Error {
  readonly code: NsboxErrorCode;
  readonly errno?: number;
  readonly syscall?: string;
  readonly path?: string;
  /** The container setup step that failed ("mount /proc", "exec", ...). */
  readonly step?: string;
  /** A suggestion for the person reading the message. */
  readonly hint?: string;

  constructor(code: NsboxErrorCode, message: string, details: NsboxErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'NsboxError';
    this.code = code;
    if (details.errno !== undefined) this.errno = details.errno;
    if (details.syscall !== undefined) this.syscall = details.syscall;
    if (details.path !== undefined) this.path = details.path;
    if (details.step !== undefined) this.step = details.step;
    if (details.hint !== undefined) this.hint = details.hint;
  }
}

export function invalid(message: string, path?: string): NsboxError {
  return new NsboxError('INVALID_ARGUMENT', message, path === undefined ? {} : { path });
}

/** Wraps a Node fs error (or rethrows anything else) as an NsboxError naming the operation. */
export function fromSystemError(what: string, err: unknown): NsboxError {
  if (err instanceof NsboxError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === 'string') {
    const details: NsboxErrorDetails = { cause: err };
    if (typeof e.errno === 'number') details.errno = Math.abs(e.errno);
    if (e.syscall) details.syscall = e.syscall;
    if (e.path) details.path = e.path;
    const where = e.path ? ` ${e.path}` : '';
    return new NsboxError(e.code, `${what}:${where} ${e.code}${e.syscall ? ` (${e.syscall})` : ''}`, details);
  }
  return new NsboxError('EIO', `${what}: ${String(err)}`, { cause: err });
}

/**
 * The one shape in which the native binding reports a failed system call (returned, never
 * thrown): the positive errno, its name, the call, and the path when one was involved.
 */
export interface NativeErrno {
  errno: number;
  code: string;
  syscall: string;
  path?: string | Buffer;
}

const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(constants.errno)) if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name);

/** The errno's name (`EPERM` for 1), as os.constants.errno spells it; `E<n>` for a number it lacks. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}

/** Whether a native call's answer is its failure shape rather than its value. */
export function isNativeErrno(v: unknown): v is NativeErrno {
  return typeof v === 'object' && v !== null && !ArrayBuffer.isView(v)
    && typeof (v as NativeErrno).errno === 'number' && typeof (v as NativeErrno).syscall === 'string';
}

/**
 * The NsboxError a native failure becomes: the errno's name as its code (taken from the
 * number, so that no caller labels it by hand), `what` naming the operation, then the path
 * (`extra.path` or the binding's) when there is one: "what: path: CODE (syscall)".
 */
export function fromNative(what: string, e: NativeErrno, extra: Omit<NsboxErrorDetails, 'errno' | 'syscall'> = {}): NsboxError {
  const code = e.errno > 0 ? errnoName(e.errno) : e.code || 'EIO';
  const p = extra.path ?? (e.path === undefined ? undefined : String(e.path));
  const details: NsboxErrorDetails = { ...extra, errno: e.errno, syscall: e.syscall };
  if (p !== undefined) details.path = p;
  const where = extra.path === undefined && p !== undefined ? ` ${p}:` : '';
  return new NsboxError(code, `${what}:${where} ${code} (${e.syscall})`, details);
}
