/** What the CLI prints: errors, tables, sizes and times, colour, a progress bar. */
import { NsboxError } from '../errors';

/** Colour only on a terminal, and never with NO_COLOR set (https://no-color.org). */
export function useColor(stream: NodeJS.WriteStream): boolean {
  return !!stream.isTTY && !('NO_COLOR' in process.env && process.env.NO_COLOR !== '');
}

const paint = (code: string) => (stream: NodeJS.WriteStream, s: string) => (useColor(stream) ? `\x1b[${code}m${s}\x1b[0m` : s);
export const red = paint('31');
export const dim = paint('2');
export const bold = paint('1');

/** One line, `nsbox: <what failed>: <why>`, and a hint line where one helps. */
export function printError(err: unknown): void {
  const e = process.stderr;
  const debug = process.env.NSBOX_DEBUG === '1';
  if (err instanceof NsboxError) {
    e.write(`${red(e, 'nsbox:')} ${err.message}\n`);
    if (err.hint) e.write(`${dim(e, `hint: ${err.hint}`)}\n`);
    if (debug && err.stack) e.write(`${err.stack}\n`);
    return;
  }
  const msg = err instanceof Error ? err.message : String(err);
  e.write(`${red(e, 'nsbox:')} internal error: ${msg}\n`);
  if (debug && err instanceof Error && err.stack) e.write(`${err.stack}\n`);
}

/** Columns padded to their widest cell; the header in bold on a terminal. */
export function table(stream: NodeJS.WriteStream, header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd();
  return [bold(stream, line(header)), ...rows.map(line)].join('\n') + '\n';
}

export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${units[u]}`;
}

export function ago(iso: string | null, now = Date.now()): string {
  if (!iso) return '';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  const n = (v: number, unit: string) => `${v} ${unit}${v === 1 ? '' : 's'}`;
  if (s < 60) return n(s, 'second');
  if (s < 3600) return n(Math.floor(s / 60), 'minute');
  if (s < 86400) return n(Math.floor(s / 3600), 'hour');
  return n(Math.floor(s / 86400), 'day');
}

/** A one-line bar redrawn in place on a terminal; nothing at all when not on one. */
export class ProgressBar {
  private last = 0;
  private drawn = false;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly label: string,
  ) {}

  get active(): boolean {
    return !!this.stream.isTTY;
  }

  update(done: number, total: number): void {
    if (!this.active) return;
    const now = Date.now();
    if (now - this.last < 50 && done < total) return;
    this.last = now;
    const cols = Math.max(20, (this.stream.columns || 80) - this.label.length - 30);
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const full = Math.round(frac * cols);
    const bar = '█'.repeat(full) + '░'.repeat(cols - full);
    const text = `${this.label} ${useColor(this.stream) ? `\x1b[36m${bar}\x1b[0m` : bar} ${String(Math.floor(frac * 100)).padStart(3)}% ${humanSize(done)}/${humanSize(total)}`;
    this.stream.write(`\r${text}\x1b[K`);
    this.drawn = true;
  }

  done(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
