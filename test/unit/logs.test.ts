// Reading the monitor's CRI log (src/logs.ts) from files written here: joining P records per
// stream, rotated files in order, tail and since, malformed lines skipped; the CLI's --since
// and --log-opt parsing.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { parseSince } from '../../src/cli/commands/logs';
import { logLimits } from '../../src/detach';
import { readLogs, type LogEntry } from '../../src/logs';

const T = (s: number) => `2026-12-01T06:00:${String(s).padStart(2, '0')}.000000001Z`;

const made: string[] = [];
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

function dirWith(files: Record<string, string[]>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-logs-unit-'));
  made.push(dir);
  for (const [name, lines] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), lines.map((l) => `${l}\n`).join(''));
  return dir;
}

async function read(dir: string, o = {}): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for await (const e of readLogs(dir, o, () => true)) out.push(e);
  return out;
}

describe('readLogs', () => {
  it("joins each stream's P records with its F record, apart from the other stream", async () => {
    const dir = dirWith({
      'container.log': [`${T(1)} stdout P hel`, `${T(2)} stderr F boom`, `${T(3)} stdout P lo `, `${T(4)} stdout F world`, `${T(5)} stderr P tail`],
    });
    expect(await read(dir)).toEqual([
      { stream: 'stderr', time: T(2), line: 'boom' },
      { stream: 'stdout', time: T(1), line: 'hello world' },
      { stream: 'stderr', time: T(5), line: 'tail', partial: true },
    ]);
  });

  it('reads rotated files oldest first; tail and since; skips what is not a record', async () => {
    const dir = dirWith({
      'container.log.2': [`${T(1)} stdout F one`],
      'container.log.1': [`${T(2)} stdout F two`, 'garbage', `${T(3)} stdout X three`],
      'container.log': [`${T(4)} stdout F four`, `${T(5)} stderr F  five with a space `],
      'container.log.x': [`${T(0)} stdout F not a rotated file`],
    });
    expect((await read(dir)).map((e) => e.line)).toEqual(['one', 'two', 'four', ' five with a space ']);
    expect((await read(dir, { tail: 2 })).map((e) => e.line)).toEqual(['four', ' five with a space ']);
    expect((await read(dir, { since: T(2) })).map((e) => e.line)).toEqual(['two', 'four', ' five with a space ']);
    expect((await read(dir, { since: new Date('2026-12-01T06:00:04Z') })).map((e) => e.line)).toEqual(['four', ' five with a space ']);
  });

  it('an empty or missing log is no lines; bad options are refused', async () => {
    expect(await read(dirWith({}))).toEqual([]);
    await expect(read(dirWith({}), { tail: 1.5 })).rejects.toThrow(/tail/);
    await expect(read(dirWith({}), { since: 'soon' })).rejects.toThrow(/since/);
    await expect(read(dirWith({}), { colour: true })).rejects.toThrow(/unknown option colour/);
  });
});

describe('parseSince and logLimits', () => {
  it('takes a time or a while ago', () => {
    const now = Date.parse('2026-12-01T06:00:00Z');
    expect(parseSince('10m', now).toISOString()).toBe('2026-12-01T05:50:00.000Z');
    expect(parseSince('1.5h', now).toISOString()).toBe('2026-12-01T04:30:00.000Z');
    expect(parseSince('2026-12-01T05:00:00Z').toISOString()).toBe('2026-12-01T05:00:00.000Z');
    expect(() => parseSince('yesterday')).toThrow(/--since/);
    expect(() => parseSince('10')).toThrow(/--since/);
  });

  it('sizes and counts with defaults, within bounds', () => {
    expect(logLimits({})).toEqual({ logMaxSize: 10 * 1024 * 1024, logMaxFiles: 2 });
    expect(logLimits({ logMaxSize: '1m', logMaxFiles: 5 })).toEqual({ logMaxSize: 1024 * 1024, logMaxFiles: 5 });
    expect(() => logLimits({ logMaxSize: 10 })).toThrow(/at least 1k/);
    expect(() => logLimits({ logMaxFiles: 0 })).toThrow(/1 to 100/);
    expect(() => logLimits({ logMaxSize: 'big' })).toThrow(/logMaxSize/);
  });
});
