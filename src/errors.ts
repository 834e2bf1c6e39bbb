import { constants } from 'node:os';

/**
 * The errno names a failed system call is reported by: those Linux has and Node's
 * os.constants.errno names (a number without a name is reported as EIO, its number kept in
 * `errno`).
 */
export type ErrnoCode =
  | 'E2BIG'
  | 'EACCES'
  | 'EADDRINUSE'
  | 'EADDRNOTAVAIL'
  | 'EAFNOSUPPORT'
  | 'EAGAIN'
  | 'EALREADY'
  | 'EBADF'
  | 'EBADMSG'
  | 'EBUSY'
  | 'ECANCELED'
  | 'ECHILD'
  | 'ECONNABORTED'
  | 'ECONNREFUSED'
  | 'ECONNRESET'
  | 'EDEADLK'
  | 'EDESTADDRREQ'
  | 'EDOM'
  | 'EDQUOT'
  | 'EEXIST'
  | 'EFAULT'
  | 'EFBIG'
  | 'EHOSTUNREACH'
  | 'EIDRM'
  | 'EILSEQ'
  | 'EINPROGRESS'
  | 'EINTR'
  | 'EINVAL'
  | 'EIO'
  | 'EISCONN'
  | 'EISDIR'
  | 'ELOOP'
  | 'EMFILE'
  | 'EMLINK'
  | 'EMSGSIZE'
  | 'EMULTIHOP'
  | 'ENAMETOOLONG'
  | 'ENETDOWN'
  | 'ENETRESET'
  | 'ENETUNREACH'
  | 'ENFILE'
  | 'ENOBUFS'
  | 'ENODATA'
  | 'ENODEV'
  | 'ENOENT'
  | 'ENOEXEC'
  | 'ENOLCK'
  | 'ENOLINK'
  | 'ENOMEM'
  | 'ENOMSG'
  | 'ENOPROTOOPT'
  | 'ENOSPC'
  | 'ENOSR'
  | 'ENOSTR'
  | 'ENOSYS'
  | 'ENOTCONN'
  | 'ENOTDIR'
  | 'ENOTEMPTY'
  | 'ENOTSOCK'
  | 'ENOTSUP'
  | 'ENOTTY'
  | 'ENXIO'
  | 'EOPNOTSUPP'
  | 'EOVERFLOW'
  | 'EPERM'
  | 'EPIPE'
  | 'EPROTO'
  | 'EPROTONOSUPPORT'
  | 'EPROTOTYPE'
  | 'ERANGE'
  | 'EROFS'
  | 'ESPIPE'
  | 'ESRCH'
  | 'ESTALE'
  | 'ETIME'
  | 'ETIMEDOUT'
  | 'ETXTBSY'
  | 'EWOULDBLOCK'
  | 'EXDEV';

/** nsbox's own codes, for refused input and state. */
export type NsboxOwnCode =
  | 'INVALID_ARGUMENT' // the caller's input is malformed
  | 'NOT_FOUND' // no such image or container
  | 'CONFLICT' // a name already in use
  | 'IN_USE' // an image used by a container, a running container
  | 'UNSAFE_PATH' // a path that would leave a root (volume target, tar entry)
  | 'BAD_ARCHIVE' // a tarball that cannot be read
  | 'UNSUPPORTED' // the kernel or filesystem lacks what is needed
  | 'NOT_RUNNING' // exec into a container that has exited
  | 'BAD_STATE' // a state file (record, image) that is not what nsbox wrote
  | 'ABORT_ERR'; // the `signal` AbortSignal had fired before the start (Node's own code for it)

/**
 * The one error type nsbox throws has one of these codes, and no other: an errno name
 * (`ENOENT`, `EACCES`, ...) when a system call failed, or one of nsbox's own. A switch over
 * it is checked by the compiler.
 */
export type NsboxErrorCode = NsboxOwnCode | ErrnoCode;

/** Every ErrnoCode once: a name left out of either does not compile. */
const ERRNO_CODES: Readonly<Record<ErrnoCode, 1>> = {
  E2BIG: 1,
  EACCES: 1,
  EADDRINUSE: 1,
  EADDRNOTAVAIL: 1,
  EAFNOSUPPORT: 1,
  EAGAIN: 1,
  EALREADY: 1,
  EBADF: 1,
  EBADMSG: 1,
  EBUSY: 1,
  ECANCELED: 1,
  ECHILD: 1,
  ECONNABORTED: 1,
  ECONNREFUSED: 1,
  ECONNRESET: 1,
  EDEADLK: 1,
  EDESTADDRREQ: 1,
  EDOM: 1,
  EDQUOT: 1,
  EEXIST: 1,
  EFAULT: 1,
  EFBIG: 1,
  EHOSTUNREACH: 1,
  EIDRM: 1,
  EILSEQ: 1,
  EINPROGRESS: 1,
  EINTR: 1,
  EINVAL: 1,
  EIO: 1,
  EISCONN: 1,
  EISDIR: 1,
  ELOOP: 1,
  EMFILE: 1,
  EMLINK: 1,
  EMSGSIZE: 1,
  EMULTIHOP: 1,
  ENAMETOOLONG: 1,
  ENETDOWN: 1,
  ENETRESET: 1,
  ENETUNREACH: 1,
  ENFILE: 1,
  ENOBUFS: 1,
  ENODATA: 1,
  ENODEV: 1,
  ENOENT: 1,
  ENOEXEC: 1,
  ENOLCK: 1,
  ENOLINK: 1,
  ENOMEM: 1,
  ENOMSG: 1,
  ENOPROTOOPT: 1,
  ENOSPC: 1,
  ENOSR: 1,
  ENOSTR: 1,
  ENOSYS: 1,
  ENOTCONN: 1,
  ENOTDIR: 1,
  ENOTEMPTY: 1,
  ENOTSOCK: 1,
  ENOTSUP: 1,
  ENOTTY: 1,
  ENXIO: 1,
  EOPNOTSUPP: 1,
  EOVERFLOW: 1,
  EPERM: 1,
  EPIPE: 1,
  EPROTO: 1,
  EPROTONOSUPPORT: 1,
  EPROTOTYPE: 1,
  ERANGE: 1,
  EROFS: 1,
  ESPIPE: 1,
  ESRCH: 1,
  ESTALE: 1,
  ETIME: 1,
  ETIMEDOUT: 1,
  ETXTBSY: 1,
  EWOULDBLOCK: 1,
  EXDEV: 1,
};

/** Whether a code (a Node error's, the binding's) is one of the errno names above. */
export function isErrnoCode(code: unknown): code is ErrnoCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERRNO_CODES, code);
}

/**
 * The NsboxErrorCode of a code from elsewhere (a Node error's `code`, the binding's): the
 * errno name itself, or EIO for anything else (the original stays the error's `cause`).
 */
export function errnoCode(code: unknown): ErrnoCode {
  return isErrnoCode(code) ? code : 'EIO';
}

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
    return new NsboxError(errnoCode(e.code), `${what}:${where} ${e.code}${e.syscall ? ` (${e.syscall})` : ''}`, details);
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
  return (
    typeof v === 'object' &&
    v !== null &&
    !ArrayBuffer.isView(v) &&
    typeof (v as NativeErrno).errno === 'number' &&
    typeof (v as NativeErrno).syscall === 'string'
  );
}

/**
 * The NsboxError a native failure becomes: the errno's name as its code (taken from the
 * number, so that no caller labels it by hand), `what` naming the operation, then the path
 * (`extra.path` or the binding's) when there is one: "what: path: CODE (syscall)".
 */
export function fromNative(what: string, e: NativeErrno, extra: Omit<NsboxErrorDetails, 'errno' | 'syscall'> = {}): NsboxError {
  const code = errnoCode(e.errno > 0 ? errnoName(e.errno) : e.code);
  const p = extra.path ?? (e.path === undefined ? undefined : String(e.path));
  const details: NsboxErrorDetails = { ...extra, errno: e.errno, syscall: e.syscall };
  if (p !== undefined) details.path = p;
  const where = extra.path === undefined && p !== undefined ? ` ${p}:` : '';
  return new NsboxError(code, `${what}:${where} ${code} (${e.syscall})`, details);
}
