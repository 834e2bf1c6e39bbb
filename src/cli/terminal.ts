/**
 * The CLI's side of a process's stdio at a terminal, for `run`, `exec` and `start -a`: without
 * -t a terminal among our stdio is relayed through pipes; with -t ours goes raw and is joined
 * to the process's own pty, resizes followed; our signals are passed on.
 */
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import type * as tty from 'node:tty';

/** What a Container and an ExecProcess both have. */
export interface Attachable {
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  readonly terminal: tty.ReadStream | null;
  readonly running: boolean;
  resize(cols: number, rows: number): void;
}

/**
 * isatty(), without loading node:tty (and the node:net it loads, ~5 ms of every CLI run) when
 * fstat already tells: only a character device can be a terminal, and none of major 1
 * (/dev/null, /dev/zero, ...) is one.
 */
export function isTerminal(fd: number): boolean {
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch {
    return false;
  }
  if (!st.isCharacterDevice() || Math.floor(st.rdev / 256) % 4096 === MEM_MAJOR) return false;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node:tty') as typeof import('node:tty')).isatty(fd);
}

const MEM_MAJOR = 1;

/** Signals the CLI passes on to the container or exec'd command, as `docker run` does (--sig-proxy). */
export const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/**
 * Our signals, caught from before a start: one that comes while the process is being made is
 * passed on once it runs. Node's default action would end the CLI at once, leaving the
 * container to its parent-death signal and its record to the next Runtime, where the user
 * asked for what a later signal gets: the process told, its exit status ours. The same signal
 * twice before the start is done (a start that hangs, and a second Ctrl-C) ends the CLI then
 * and there, 128+N, as an uncaught signal would: what the start had made is left to the exit
 * listener and the next Runtime.
 */
export class SignalRelay {
  private readonly pending: NodeJS.Signals[] = [];
  private deliver: ((sig: NodeJS.Signals) => void) | undefined;
  private readonly onSignal = (sig: NodeJS.Signals): void => {
    if (this.deliver) this.deliver(sig);
    else if (this.pending.includes(sig)) process.exit(128 + osConstants.signals[sig]);
    else this.pending.push(sig);
  };

  constructor() {
    for (const sig of FORWARDED) process.on(sig, this.onSignal);
  }

  /** From now on signals go to `deliver`, those that came before first, in order. */
  to(deliver: (sig: NodeJS.Signals) => void): void {
    this.deliver = deliver;
    for (const sig of this.pending.splice(0)) deliver(sig);
  }

  close(): void {
    for (const sig of FORWARDED) process.off(sig, this.onSignal);
  }
}

/**
 * Without -t: files and pipes are handed over as they are (no copy through Node). A terminal
 * never is: it would read what the user types at the host's shell, change its modes (stty
 * -echo) and outlive the run. Without -i, no stdin at all.
 */
export function stdioFor(interactive: boolean): ['pipe' | 'inherit' | 'ignore', 'pipe' | 'inherit', 'pipe' | 'inherit'] {
  return [interactive ? (isTerminal(0) ? 'pipe' : 'inherit') : 'ignore', isTerminal(1) ? 'pipe' : 'inherit', isTerminal(2) ? 'pipe' : 'inherit'];
}

/**
 * Joins our stdio to a started process (its pty with -t, else its pipes), passes our signals
 * on, and waits for it. A hangup means our terminal is gone: a PID 1 ignores signals it has no
 * handler for, so a process that does not end on SIGHUP is killed after a grace period
 * (nobody is left to use it, and it would keep this process waiting forever).
 */
export async function attachAndWait<S>(
  c: Attachable & { kill(signal: NodeJS.Signals): unknown; wait(): Promise<S> },
  tty: boolean,
  interactive: boolean,
  signals: SignalRelay = new SignalRelay(),
): Promise<S> {
  let hungUp = false;
  const hangup = () => {
    if (hungUp) return;
    hungUp = true;
    c.kill('SIGHUP');
    setTimeout(() => c.running && c.kill('SIGKILL'), 2000).unref();
  };
  const restore = tty ? attachTerminal(c, interactive, hangup) : relayTerminal(c);
  signals.to((sig) => (sig === 'SIGHUP' ? hangup() : c.kill(sig)));
  try {
    return await c.wait();
  } finally {
    restore();
    signals.close();
  }
}

/** Without -t: our stdio as the process's pipes. Returns what undoes it. */
export function relayTerminal(c: Attachable): () => void {
  c.stdout?.pipe(process.stdout, { end: false });
  c.stderr?.pipe(process.stderr, { end: false });
  if (c.stdin) process.stdin.pipe(c.stdin);
  return () => {
    if (c.stdin) {
      process.stdin.unpipe(c.stdin);
      process.stdin.pause();
      process.stdin.destroy();
    }
  };
}

/**
 * -t: our terminal in raw mode (Ctrl-C reaches the process as a byte, and its own line
 * discipline makes it a SIGINT there), its output to ours, resizes followed.
 */
export function attachTerminal(c: Attachable, interactive: boolean, hangup: () => void): () => void {
  const term = c.terminal!;
  const stdin = process.stdin;
  const stdout = process.stdout;
  term.pipe(stdout, { end: false });
  const raw = interactive && stdin.isTTY;
  if (interactive) {
    if (raw) stdin.setRawMode(true);
    stdin.pipe(term, { end: false });
    // Reading a terminal that went away fails (EIO): a hangup, whether or not SIGHUP came.
    stdin.on('error', hangup);
  }
  stdout.on('error', hangup);
  const onResize = () => {
    if (c.running) c.resize(stdout.columns, stdout.rows);
  };
  if (stdout.isTTY) stdout.on('resize', onResize);
  return () => {
    stdout.off('resize', onResize);
    stdout.off('error', hangup);
    if (interactive) {
      stdin.unpipe(term);
      if (raw) stdin.setRawMode(false);
      stdin.pause();
      stdin.destroy();
    }
  };
}
