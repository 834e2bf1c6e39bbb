// The run-time checkers of src/validate.ts on their own: each refuses what its type does not
// allow (with the option's name in the message), and what they return is what they checked.
import { describe, expect, it } from 'vitest';

import { NsboxError } from '../../src/errors';
import {
  arrayOf,
  boolean,
  checkObject,
  describe as describeValue,
  editDistance,
  integer,
  nearest,
  nullable,
  oneOf,
  optional,
  pathString,
  shape,
  string,
  stringArray,
  stringRecord,
  union,
  type Check,
} from '../../src/validate';

function refusal(check: Check<unknown>, value: unknown, name = 'opt'): NsboxError {
  try {
    check(value, name);
  } catch (e) {
    expect(e).toBeInstanceOf(NsboxError);
    expect((e as NsboxError).code).toBe('INVALID_ARGUMENT');
    return e as NsboxError;
  }
  throw new Error(`${JSON.stringify(value)} was accepted`);
}

describe('scalar checks', () => {
  it('boolean takes only true and false, not their look-alikes', () => {
    expect(boolean(true, 'x')).toBe(true);
    expect(boolean(false, 'x')).toBe(false);
    for (const v of ['false', 'true', 0, 1, null, {}, []]) expect(refusal(boolean, v, 'remove').message).toMatch(/^remove: expected a boolean, got /);
    expect(refusal(boolean, 'false').message).toBe('opt: expected a boolean, got a string ("false")');
  });

  it('string, pathString, integer and oneOf refuse other types and out-of-range values', () => {
    expect(string('', 'x')).toBe('');
    refusal(string, 5);
    refusal(string, ['a']);
    expect(pathString('/a', 'x')).toBe('/a');
    refusal(pathString, '');
    refusal(pathString, '/a\0b');
    const port = integer(1, 10);
    expect(port(10, 'x')).toBe(10);
    for (const v of [0, 11, 1.5, '3', NaN, Infinity]) refusal(port, v);
    const net = oneOf(['none', 'host'] as const);
    expect(net('host', 'x')).toBe('host');
    expect(refusal(net, 'bridge', 'network').message).toBe('network: expected one of "none", "host", got a string ("bridge")');
  });

  it('optional lets undefined through (an option left out), nullable lets null through', () => {
    expect(optional(boolean)(undefined, 'x')).toBeUndefined();
    refusal(optional(boolean), null);
    expect(nullable(string)(null, 'x')).toBeNull();
    refusal(nullable(string), undefined);
  });

  it('describes values without dumping them whole', () => {
    expect(describeValue('x'.repeat(100))).toMatch(/^a string \("x{40}…"\)$/);
    expect(describeValue([1])).toBe('an array');
    expect(describeValue(null)).toBe('null');
    expect(describeValue(() => 1)).toBe('a function');
  });
});

describe('compound checks', () => {
  it('arrayOf names the bad element and bounds the length; the result is a copy', () => {
    const input = ['a', 'b'];
    const out = stringArray(input, 'command');
    expect(out).toEqual(input);
    expect(out).not.toBe(input);
    expect(refusal(stringArray, ['sh', 5], 'command').message).toBe('command[1]: expected a string, got a number (5)');
    refusal(stringArray, 'sh');
    refusal(arrayOf(string, { min: 1 }), []);
    const three = arrayOf(string, { min: 3, max: 3 });
    refusal(three, ['a', 'b']);
    expect(refusal(three, ['a', 'b', 'c', 'd']).message).toMatch(/expected an array of 3/);
  });

  it('stringRecord takes own string values only and copies them without a prototype', () => {
    const r = stringRecord({ A: '1', __proto__: { B: 2 } }, 'env');
    expect({ ...r }).toEqual({ A: '1' });
    expect(Object.getPrototypeOf(r)).toBeNull();
    expect(refusal(stringRecord, { A: 1 }, 'env').message).toBe('env.A: expected a string, got a number (1)');
    refusal(stringRecord, ['A=1']);
    refusal(stringRecord, null);
  });

  it('union checks a value by the shape it has, and says every shape when none fits', () => {
    const env = union<string[] | Record<string, string>>('K=V strings or an object of strings', [
      [Array.isArray, stringArray],
      [(v) => typeof v === 'object' && v !== null, stringRecord],
    ]);
    expect(env(['A=1'], 'env')).toEqual(['A=1']);
    expect(refusal(env, [1], 'env').message).toBe('env[0]: expected a string, got a number (1)');
    expect(refusal(env, 'A=1', 'env').message).toBe('env: expected K=V strings or an object of strings, got a string ("A=1")');
  });
});

describe('checkObject', () => {
  const spec = {
    image: string,
    remove: optional(boolean),
    volumes: optional(stringArray),
    tty: optional(shape({ cols: optional(integer(1, 9)) })),
  };
  const check = (v: unknown) => checkObject(spec, v, 'run options', (k) => `run option ${k}`);

  it('returns the checked keys, leaving out those undefined', () => {
    expect(check({ image: 'a', remove: undefined, tty: { cols: 3 } })).toEqual({ image: 'a', tty: { cols: 3 } });
    expect('remove' in check({ image: 'a', remove: undefined })).toBe(false);
  });

  it('refuses a wrong type naming the option, nested ones by their path', () => {
    expect(() => check({ image: 'a', remove: 'false' })).toThrow('run option remove: expected a boolean, got a string ("false")');
    expect(() => check({ image: 'a', tty: { cols: '80' } })).toThrow('run option tty.cols: expected an integer from 1 to 9');
    expect(() => check({})).toThrow('run option image: expected a string, got undefined');
    expect(() => check(null)).toThrow('run options: expected an object, got null');
    expect(() => check(['a'])).toThrow('run options: expected an object, got an array');
  });

  it('refuses an unknown key, suggesting the known key a typo meant', () => {
    expect(() => check({ image: 'a', volume: [] })).toThrow(
      /^run option volume: unknown option \(did you mean volumes\?\); known: image, remove, volumes, tty$/,
    );
    expect(() => check({ image: 'a', Remove: true })).toThrow(/did you mean remove\?/);
    expect(() => check({ image: 'a', tty: { colls: 1 } })).toThrow(/run option tty\.colls: unknown option \(did you mean cols\?\)/);
    const far = (() => {
      try {
        check({ image: 'a', timeOut: 5 });
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })();
    expect(far).toMatch(/^run option timeOut: unknown option; known: /);
  });

  it('reads each value once, so a getter cannot answer the check one thing and the caller another', () => {
    let reads = 0;
    const o = { image: 'a' } as Record<string, unknown>;
    Object.defineProperty(o, 'remove', { enumerable: true, get: () => (reads++ === 0 ? true : 'false') });
    const out = check(o);
    expect(out.remove).toBe(true);
    expect(reads).toBe(1);
  });

  it('does not take inherited keys for options', () => {
    const o = Object.create({ remove: 'false' }) as Record<string, unknown>;
    o.image = 'a';
    expect(check(o)).toEqual({ image: 'a' });
  });
});

describe('nearest', () => {
  it('finds a close key, a key in another case, and nothing for a word that is not near', () => {
    const keys = ['image', 'command', 'volumes', 'readOnly', 'remove', 'cwd', 'env'];
    expect(nearest('volume', keys)).toBe('volumes');
    expect(nearest('readonly', keys)).toBe('readOnly');
    expect(nearest('comand', keys)).toBe('command');
    expect(nearest('imgae', keys)).toBe('image');
    expect(nearest('timeOut', keys)).toBeUndefined();
    expect(nearest('x', keys)).toBeUndefined();
  });

  it('counts a transposition as one edit', () => {
    expect(editDistance('ab', 'ba')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
  });
});
