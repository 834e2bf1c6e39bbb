// The CLI's argument parser: docker habits must carry over.
import { describe, expect, it } from 'vitest';

import { formatHelp, parseArgs } from '../../src/cli/args';
import { COMMANDS } from '../../src/cli/specs';

describe('run arguments', () => {
  const run = COMMANDS.run;
  it('combines short flags and stops at the image', () => {
    const p = parseArgs(run, ['-ti', '--rm', '-v', '/a:/b', '-v/c:/d:ro', '-eA=1', '--name=web', 'busybox', 'sh', '-c', 'ls -l']);
    expect(p.flags).toMatchObject({ tty: true, interactive: true, rm: true, volume: ['/a:/b', '/c:/d:ro'], env: ['A=1'], name: 'web' });
    expect(p.args).toEqual(['busybox', 'sh', '-c', 'ls -l']);
  });
  it('leaves flags after the image to the command', () => {
    const p = parseArgs(run, ['busybox', 'ls', '-la', '--rm']);
    expect(p.flags.rm).toBeUndefined();
    expect(p.args).toEqual(['busybox', 'ls', '-la', '--rm']);
  });
  it('says what is wrong in one line', () => {
    expect(() => parseArgs(run, ['--bogus', 'busybox'])).toThrow(/run: unknown flag --bogus \(see 'nsbox run --help'\)/);
    expect(() => parseArgs(run, ['-v'])).toThrow(/-v needs a value/);
    expect(() => parseArgs(run, ['--rm=yes', 'x'])).toThrow(/takes no value/);
    expect(() => parseArgs(run, [])).toThrow(/expected/);
  });
  it('lets --help through without the image', () => {
    expect(parseArgs(run, ['--help']).help).toBe(true);
    expect(formatHelp(run)).toMatch(/Usage: nsbox run[\s\S]*-v, --volume HOST:CTR\[:ro\][\s\S]*Examples:/);
  });
});

describe('other commands', () => {
  it('count their arguments', () => {
    expect(parseArgs(COMMANDS.commit, ['-o', 'x.tar', 'c1', 'img']).args).toEqual(['c1', 'img']);
    expect(() => parseArgs(COMMANDS.commit, ['c1'])).toThrow(/expected CONTAINER IMAGE/);
    expect(() => parseArgs(COMMANDS.ps, ['extra'])).toThrow(/too many arguments: extra/);
    expect(parseArgs(COMMANDS.rm, ['-f', 'a', 'b'])).toMatchObject({ flags: { force: true }, args: ['a', 'b'] });
  });
});
