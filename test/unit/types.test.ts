// The public types say what a caller gets: checked by `tsc -p tsconfig.test.json` (.ci/run),
// where each expectTypeOf and @ts-expect-error below is a compile-time assertion. The
// functions are never called: only their types matter.
import type { Readable, Writable } from 'node:stream';
import type * as tty from 'node:tty';
import { describe, expectTypeOf, it } from 'vitest';

import type { Container, ExecProcess, NsboxErrorCode, RunOptions, Runtime, RuntimeOptions, Stdio } from '../../src/index';
import { NsboxError } from '../../src/index';

declare const rt: Runtime;
declare const c: Container;

function streamsByOptions() {
  void (async () => {
    // Left out, stdio is 'pipe': every stream is there.
    const plain = await rt.run({ image: 'busybox' });
    expectTypeOf(plain.stdout).toEqualTypeOf<Readable>();
    expectTypeOf(plain.stderr).toEqualTypeOf<Readable>();
    expectTypeOf(plain.stdin).toEqualTypeOf<Writable>();
    expectTypeOf(plain.terminal).toEqualTypeOf<null>();
    const piped = await rt.run({ image: 'busybox', stdio: 'pipe' });
    piped.stdout.on('data', () => {}); // no `!` needed
    const ignored = await rt.run({ image: 'busybox', stdio: 'ignore' });
    expectTypeOf(ignored.stdout).toEqualTypeOf<null>();
    // @ts-expect-error: there is no stdout to read with 'ignore'
    ignored.stdout.on('data', () => {});
    const mixed = await rt.run({ image: 'busybox', stdio: ['ignore', 'pipe', 3] });
    expectTypeOf(mixed.stdin).toEqualTypeOf<null>();
    expectTypeOf(mixed.stdout).toEqualTypeOf<Readable>();
    expectTypeOf(mixed.stderr).toEqualTypeOf<null>();
    const terminal = await rt.run({ image: 'busybox', tty: true });
    expectTypeOf(terminal.terminal).toEqualTypeOf<tty.ReadStream>();
    expectTypeOf(terminal.stdout).toEqualTypeOf<null>();
    // A Stdio the compiler cannot see through: each stream may be null.
    const chosen = { image: 'busybox', stdio: 'pipe' as Stdio };
    expectTypeOf((await rt.run(chosen)).stdout).toEqualTypeOf<Readable | null>();
    const options: RunOptions = { image: 'busybox' };
    expectTypeOf((await rt.run(options)).stdout).toEqualTypeOf<Readable | null>();
    // exec: the same rules.
    const e = c.exec({ command: ['true'] });
    expectTypeOf(e).toEqualTypeOf<ExecProcess<{ stdin: Writable; stdout: Readable; stderr: Readable; terminal: null }>>();
    expectTypeOf(rt.exec('x', { command: ['true'], stdio: 'inherit' }).stdout).toEqualTypeOf<null>();
    // A detached run is no Container.
    expectTypeOf(await rt.run({ image: 'busybox', detach: true })).not.toHaveProperty('stdout');
  });
}

function events() {
  c.on('exit', (code, signal) => {
    expectTypeOf(code).toEqualTypeOf<number | null>();
    expectTypeOf(signal).toEqualTypeOf<NodeJS.Signals | null>();
  });
  c.once('close', (code) => expectTypeOf(code).toEqualTypeOf<number | null>());
  c.on('error', (e) => expectTypeOf(e).toEqualTypeOf<Error>());
  // @ts-expect-error: no such event
  c.on('exited', () => {});
}

function exactOptionals() {
  // A variable that may be undefined can be passed as it is (exactOptionalPropertyTypes).
  const o: RuntimeOptions = { root: process.env.NSBOX_ROOT };
  void o;
  // @ts-expect-error: a typo is no option
  const typo: RunOptions = { image: 'busybox', timeOut: 5 };
  void typo;
  // @ts-expect-error: forkStyle is not part of the API
  const fork: RunOptions = { image: 'busybox', forkStyle: true };
  void fork;
}

function codes(e: NsboxError) {
  switch (e.code) {
    case 'ENOENT':
    case 'INVALID_ARGUMENT':
      return 1;
    // @ts-expect-error: not a code nsbox has
    case 'NO_SUCH_CODE':
      return 2;
    default:
      return 0;
  }
}

describe('public types', () => {
  it('are checked by tsc (tsconfig.test.json), not here', () => {
    void [streamsByOptions, events, exactOptionals, codes];
    expectTypeOf<NsboxError['code']>().toEqualTypeOf<NsboxErrorCode>();
  });
});
