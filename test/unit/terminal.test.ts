// The CLI's isTerminal() answers from fstat where it can, to spare every run loading node:tty:
// it must still agree with isatty() for each kind of fd a CLI's stdio can be.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tty from 'node:tty';

import { afterEach, describe, expect, it } from 'vitest';

import { isTerminal } from '../../src/cli/terminal';

const opened: number[] = [];
const open = (file: string, flags: string) => {
  const fd = fs.openSync(file, flags);
  opened.push(fd);
  return fd;
};
afterEach(() => {
  for (const fd of opened.splice(0)) fs.closeSync(fd);
});

describe('isTerminal', () => {
  it('the master side of a pty is a terminal: a character device the fstat shortcut must not rule out', () => {
    const master = open('/dev/ptmx', 'r+');
    expect(tty.isatty(master)).toBe(true);
    expect(isTerminal(master)).toBe(true);
  });

  it('/dev/null, /dev/zero (character devices of major 1), a file, a FIFO, a closed fd are not', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-isterminal-'));
    try {
      const fds = [open('/dev/null', 'r+'), open('/dev/zero', 'r'), open(path.join(dir, 'f'), 'w')];
      for (const fd of fds) {
        expect(fs.fstatSync(fd).isFile() || fs.fstatSync(fd).isCharacterDevice()).toBe(true);
        expect(tty.isatty(fd)).toBe(false);
        expect(isTerminal(fd)).toBe(false);
      }
      const fifo = path.join(dir, 'fifo');
      execFileSync('mkfifo', [fifo]);
      const pipe = open(fifo, 'r+'); // O_RDWR: a FIFO opened so does not wait for a writer
      expect(fs.fstatSync(pipe).isFIFO()).toBe(true);
      expect(isTerminal(pipe)).toBe(false);
      expect(isTerminal(987654)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
