/**
 * A container's (or an exec's) stdio: what a caller may ask for, as child_process.spawn's
 * `stdio` takes it, the run-time check of it, and the types that tell which streams a started
 * process has (`stdio: 'pipe'` gives non-null `stdin`, `stdout`, `stderr`).
 */
import * as fs from 'node:fs';
import type { Readable, Stream, Writable } from 'node:stream';
import type * as tty from 'node:tty';

import { invalid } from './errors';
import { describe, expected, isObject, type Check } from './validate';

/**
 * `'pipe'`: a stream on the returned object; `'inherit'`: this process's own fd 0, 1 or 2;
 * `'ignore'`: /dev/null.
 */
export type StdioMode = 'pipe' | 'inherit' | 'ignore';

/**
 * One of the process's fds 0, 1, 2: a mode, an open fd of this process (the process gets that
 * very file), or a stream over one (`process.stdout`, an fs stream once open, a socket), whose
 * fd it gets the same way, as child_process.spawn does.
 */
export type StdioEntry = StdioMode | number | Stream;

/** One mode for all three, or one entry each for fds 0, 1 and 2. Default: `'pipe'`. */
export type Stdio = StdioMode | readonly [StdioEntry, StdioEntry, StdioEntry];

/** A terminal's size in characters; 80 by 24 when left out. */
export interface TerminalSize {
  /** Columns, 1 to 65535; default 80. */
  cols?: number | undefined;
  /** Rows, 1 to 65535; default 24. */
  rows?: number | undefined;
}

/** What a started process's stdio became on this side: a stream for each piped fd, the pty master with `tty`. */
export interface ProcessStreams {
  /** Its stdin, when piped: write to it, end() it for EOF. */
  stdin: Writable | null;
  /** Its stdout, when piped. */
  stdout: Readable | null;
  /** Its stderr, when piped. */
  stderr: Readable | null;
  /** The pty master, with `tty`: read the terminal's output, write its input. */
  terminal: tty.ReadStream | null;
}

/** A stream when the entry is (or defaults to) `'pipe'`, null when it cannot be, either when not known. */
type Piped<E, T> = E extends 'pipe' | undefined ? T : E extends StdioEntry ? null : T | null;
type EntryOf<S, I extends 0 | 1 | 2> = S extends readonly [unknown, unknown, unknown] ? S[I] : S;
type OptionOf<O, K extends string> = K extends keyof O ? O[K] : undefined;

/**
 * The streams of a process started with options `O`: with `tty`, only `terminal`; otherwise a
 * stream for each fd whose stdio entry is `'pipe'` (the default) and null for the others. When
 * the options' type does not tell (a `Stdio` variable, `tty: boolean`), each may be null.
 */
export type StreamsOf<O> = [OptionOf<O, 'tty'>] extends [false | undefined]
  ? {
      stdin: Piped<EntryOf<OptionOf<O, 'stdio'>, 0>, Writable>;
      stdout: Piped<EntryOf<OptionOf<O, 'stdio'>, 1>, Readable>;
      stderr: Piped<EntryOf<OptionOf<O, 'stdio'>, 2>, Readable>;
      terminal: null;
    }
  : [OptionOf<O, 'tty'>] extends [true | TerminalSize]
    ? { stdin: null; stdout: null; stderr: null; terminal: tty.ReadStream }
    : ProcessStreams;

/** Events of a started process, as child_process's: `exit` when it has exited, `close` once its output has ended too. */
export interface ProcessEvents {
  /** The process exited: its exit code (null when a signal ended it) and the signal (or null). */
  exit: [exitCode: number | null, signal: NodeJS.Signals | null];
  /** As `exit`, once its output streams have closed and its bookkeeping is done. */
  close: [exitCode: number | null, signal: NodeJS.Signals | null];
  /** A stream of it failed for another reason than its normal end. */
  error: [error: Error];
}

/** An entry as the plan takes it: a mode, or an fd of this process the child gets. */
export type PlanStdio = StdioMode | number;

const MODES: readonly string[] = ['pipe', 'inherit', 'ignore'];
const isMode = (v: unknown): v is StdioMode => typeof v === 'string' && MODES.includes(v);
const FD_MAX = 2 ** 31 - 1;

/** The fd a stream is over (as child_process finds it), or undefined when it has none. */
function streamFd(v: object): number | undefined {
  const own = (v as { fd?: unknown }).fd;
  if (Number.isInteger(own) && (own as number) >= 0) return own as number;
  // net.Socket and friends keep it on their libuv handle, where child_process looks too.
  const handle = (v as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return Number.isInteger(fd) && (fd as number) >= 0 ? (fd as number) : undefined;
}

function entry(v: unknown, name: string): PlanStdio {
  if (isMode(v)) return v;
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > FD_MAX) return expected(name, 'a file descriptor (an integer from 0)', v);
    return v;
  }
  if (isObject(v) && typeof (v as { pipe?: unknown }).pipe === 'function') {
    const fd = streamFd(v);
    if (fd === undefined) {
      throw invalid(`${name}: a stream without a file descriptor of its own (an fs stream before 'open', a PassThrough): use 'pipe' and pipe it instead`);
    }
    return fd;
  }
  return expected(name, 'one of "pipe", "inherit", "ignore", a file descriptor or a stream with one', v);
}

/** The run-time check of a `stdio` option: its value as given, an array copied. */
export const checkStdio: Check<Stdio> = (v, name) => {
  if (typeof v === 'string') return isMode(v) ? v : expected(name, 'one of "pipe", "inherit", "ignore"', v);
  if (!Array.isArray(v)) return expected(name, "'pipe', 'inherit', 'ignore' or an array of three of them", v);
  if (v.length !== 3) return expected(name, 'an array of 3 entries', v);
  for (let i = 0; i < 3; i++) entry(v[i], `${name}[${i}]`);
  return [v[0], v[1], v[2]] as Stdio;
};

/**
 * What the plan gets for fds 0, 1, 2: modes, and fd numbers checked to be open now (a closed
 * one is refused here, not as a failed start). An fd given for its own number is `inherit`.
 */
export function normaliseStdio(stdio: Stdio | undefined, name = 'stdio'): [PlanStdio, PlanStdio, PlanStdio] {
  if (stdio === undefined) return ['pipe', 'pipe', 'pipe'];
  const given = checkStdio(stdio, name);
  if (typeof given === 'string') return [given, given, given];
  return given.map((v, i) => {
    const e = entry(v, `${name}[${i}]`);
    if (typeof e === 'string') return e;
    try {
      fs.fstatSync(e);
    } catch (err) {
      throw invalid(`${name}[${i}]: fd ${e} is not open in this process (${(err as NodeJS.ErrnoException).code ?? describe(err)})`);
    }
    return e === i ? 'inherit' : e;
  }) as [PlanStdio, PlanStdio, PlanStdio];
}
