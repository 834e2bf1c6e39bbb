// src/proc.ts: the one reader of /proc/PID/stat, including a command name made to look like
// more fields (spaces and parentheses in it).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { ownStartTime, processAlive, processStartTime, processState, procStat } from '../../src/proc';

describe('/proc readers', () => {
  it('reads this process: running, its parent, its start time', () => {
    expect(procStat('self')?.[0]).toBe('R');
    expect(processState(process.pid)).toEqual({ state: 'R', ppid: process.ppid });
    expect(processStartTime(process.pid)).toBe(ownStartTime());
    expect(processAlive(process.pid, ownStartTime())).toBe(true);
    expect(processAlive(process.pid, '1')).toBe(false); // another process that had this pid
  });

  it('reads a process whose name holds ") (" and spaces, and forgets it once reaped', async () => {
    const child = spawn(process.execPath, ['-e', "process.title = 'x) S 1 (y'; setInterval(() => {}, 1000)"], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      // The title is set once the script runs; until then the name is node's.
      const comm = () => readFileSync(`/proc/${child.pid}/comm`, 'utf8').trim();
      for (let i = 0; i < 500 && comm() !== 'x) S 1 (y'; i++) await new Promise((r) => setTimeout(r, 10));
      expect(comm()).toBe('x) S 1 (y');
      // Split after the name's last ')': its own ") S 1 (" is not taken for the state and parent.
      expect(processState(child.pid!)?.ppid).toBe(process.pid);
      expect(processStartTime(child.pid!)).toMatch(/^\d+$/);
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    expect(processState(child.pid!)).toBeUndefined();
    expect(processAlive(child.pid!, '1')).toBe(false);
  });
});
