/**
 * Reading a detached container's log: containers/<id>/container.log and its rotated
 * predecessors (container.log.1 is the next older), written by nsbox-monitor one record a
 * line in the CRI format: `2026-12-01T06:00:00.123456789Z stdout F text`, where P marks a
 * part of a line whose rest follows in the stream's next record.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { invalid } from './errors';

export interface LogEntry {
  stream: 'stdout' | 'stderr';
  /** When the line's first part was read: RFC 3339 in UTC with nanoseconds. */
  time: string;
  /** The line, without its newline. */
  line: string;
  /** The output ended without a newline after this line. */
  partial?: boolean;
}

export interface LogsOptions {
  /** Go on reading until the container has ended. */
  follow?: boolean | undefined;
  /** Only the last N lines (before following). */
  tail?: number | undefined;
  /** Only lines from this time on (a Date, or an RFC 3339 time). */
  since?: Date | string | undefined;
}

const LOG = 'container.log';
const RECORD_RE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$/s;
const POLL_MS = 50;

/** A time as the log writes it (nanoseconds, fixed width), so that strings compare as times. */
function logTime(since: Date | string): string {
  const d = since instanceof Date ? since : new Date(since);
  if (typeof since === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/.test(since)) return since;
  if (Number.isNaN(d.getTime())) throw invalid(`logs: since: ${String(since)}: expected a Date or an RFC 3339 time`);
  return `${d.toISOString().slice(0, 23)}000000Z`;
}

function checkLogsOptions(o: LogsOptions): { follow: boolean; tail: number | undefined; since: string | undefined } {
  if (typeof o !== 'object' || o === null) throw invalid('logs: options must be an object');
  for (const k of Object.keys(o)) if (!['follow', 'tail', 'since'].includes(k)) throw invalid(`logs: unknown option ${k}`);
  if (o.follow !== undefined && typeof o.follow !== 'boolean') throw invalid('logs: follow: expected a boolean');
  if (o.tail !== undefined && (!Number.isInteger(o.tail) || o.tail < 0)) throw invalid(`logs: tail: ${String(o.tail)}: a whole number`);
  return { follow: !!o.follow, tail: o.tail, since: o.since === undefined ? undefined : logTime(o.since) };
}

/** Joins each stream's P records with the F record that ends its line. */
class Assembler {
  private readonly pending = new Map<string, { time: string; text: string }>();

  constructor(private readonly since: string | undefined) {}

  /** One record line (without its newline); the entry it completes, if any. */
  push(record: string): LogEntry | undefined {
    const m = RECORD_RE.exec(record);
    if (!m) return undefined; // not a record the monitor writes: skipped
    const [, time, stream, kind, text] = m as unknown as [string, string, 'stdout' | 'stderr', string, string];
    const before = this.pending.get(stream);
    const joined = { time: before?.time ?? time, text: (before?.text ?? '') + text };
    if (kind === 'P') {
      this.pending.set(stream, joined);
      return undefined;
    }
    this.pending.delete(stream);
    return this.keep({ stream, time: joined.time, line: joined.text });
  }

  /** Lines whose end never came: the output ended without a newline. */
  flush(): LogEntry[] {
    const out: LogEntry[] = [];
    for (const [stream, p] of this.pending) {
      const e = this.keep({ stream: stream as 'stdout' | 'stderr', time: p.time, line: p.text, partial: true });
      if (e) out.push(e);
    }
    this.pending.clear();
    return out;
  }

  private keep(e: LogEntry): LogEntry | undefined {
    return this.since !== undefined && e.time < this.since ? undefined : e;
  }
}

/** Reads an open log file from `pos` on; returns the whole record lines and the new position. */
function readFrom(fd: number, pos: number, carry: string): { lines: string[]; pos: number; carry: string } {
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, pos);
    if (n <= 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
    pos += n;
  }
  const text = carry + Buffer.concat(chunks).toString('utf8');
  const lines = text.split('\n');
  return { lines: lines.slice(0, -1), pos, carry: lines[lines.length - 1]! };
}

function openLog(file: string): number | undefined {
  try {
    return fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** The rotated files that exist, oldest first. */
function rotated(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((n) => /^container\.log\.(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .sort((a, b) => Number(b[1]) - Number(a[1]))
    .map((m) => path.join(dir, m[0]));
}

/**
 * The entries of the log in `dir`. With `follow`, polls the current file (and follows it
 * across a rotation: the old file is read to its end through its fd before the new one is
 * opened) until `ended()` says the container and its monitor are done, then reads the rest.
 */
export async function* readLogs(dir: string, options: LogsOptions, ended: () => boolean): AsyncGenerator<LogEntry> {
  const o = checkLogsOptions(options);
  const asm = new Assembler(o.since);
  const first: LogEntry[] = [];
  const collect = (lines: string[]) => {
    for (const l of lines) {
      const e = asm.push(l);
      if (e) first.push(e);
    }
  };
  // Whether the container had ended before we read: then what we read is all there is.
  let done = ended();
  for (const file of rotated(dir)) {
    const fd = openLog(file);
    if (fd === undefined) continue;
    try {
      collect(readFrom(fd, 0, '').lines);
    } finally {
      fs.closeSync(fd);
    }
  }
  const current = path.join(dir, LOG);
  let fd = openLog(current);
  let pos = 0;
  let carry = '';
  try {
    if (fd !== undefined) {
      const r = readFrom(fd, 0, '');
      collect(r.lines);
      pos = r.pos;
      carry = r.carry;
    }
    if (!o.follow) first.push(...asm.flush());
    const start = o.tail === undefined ? 0 : Math.max(0, first.length - o.tail);
    for (let i = start; i < first.length; i++) yield first[i]!;
    if (!o.follow) return;
    for (;;) {
      if (fd === undefined) {
        fd = openLog(current);
        pos = 0;
      }
      if (fd !== undefined) {
        const r = readFrom(fd, pos, carry);
        pos = r.pos;
        carry = r.carry;
        for (const l of r.lines) {
          const e = asm.push(l);
          if (e) yield e;
        }
        // Rotated: the name is another file now. What was written to ours before is read.
        const now = fs.statSync(current, { throwIfNoEntry: false });
        if (!now || now.ino !== fs.fstatSync(fd).ino) {
          const last = readFrom(fd, pos, carry);
          for (const l of last.lines) {
            const e = asm.push(l);
            if (e) yield e;
          }
          fs.closeSync(fd);
          fd = undefined;
          carry = '';
          continue;
        }
      }
      if (done) break;
      done = ended();
      // One more pass after the end: what the monitor wrote before it ended is read.
      if (!done) await new Promise((r) => setTimeout(r, POLL_MS));
    }
    for (const e of asm.flush()) yield e;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
