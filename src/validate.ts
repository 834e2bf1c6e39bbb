/**
 * Run-time checks of what callers pass in (option objects) and what is read back from disk.
 * TypeScript's types vanish at run time: `remove: 'false'` is truthy, and a typo'd key such as
 * `volume` would simply be ignored. Each check returns the value it accepted (arrays and
 * objects copied), so that what was checked is what is used: a getter cannot answer one
 * thing to the check and another to the code after it.
 */
import { invalid } from './errors';

/** Returns the value when it is acceptable; throws INVALID_ARGUMENT naming `name` otherwise. */
export type Check<T> = (value: unknown, name: string) => T;

/** One check per key of T, optional keys included: a key without a check does not compile. */
export type Spec<T> = { [K in keyof T]-?: Check<T[K]> };

/** What a value is, for a message: `a string ("false")`, `an array`, `null`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string': {
      const s = JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
      return `a string (${s})`;
    }
    case 'number':
    case 'bigint':
    case 'boolean':
      return `a ${typeof value} (${String(value)})`;
    case 'object':
      return 'an object';
    default:
      return `a ${typeof value}`;
  }
}

export function expected(name: string, what: string, value: unknown): never {
  throw invalid(`${name}: expected ${what}, got ${describe(value)}`);
}

export const boolean: Check<boolean> = (v, name) => (typeof v === 'boolean' ? v : expected(name, 'a boolean', v));

export const string: Check<string> = (v, name) => (typeof v === 'string' ? v : expected(name, 'a string', v));

/** A string that is not empty and has no NUL byte (which a system call would cut it at). */
export const pathString: Check<string> = (v, name) =>
  typeof v === 'string' && v !== '' && !v.includes('\0') ? v : expected(name, 'a non-empty string without NUL bytes', v);

export function integer(min: number, max: number): Check<number> {
  return (v, name) =>
    Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max ? (v as number) : expected(name, `an integer from ${min} to ${max}`, v);
}

export function oneOf<T extends string>(values: readonly T[]): Check<T> {
  const text = values.map((x) => JSON.stringify(x)).join(', ');
  return (v, name) => (values.includes(v as T) ? (v as T) : expected(name, `one of ${text}`, v));
}

export function optional<T>(check: Check<T>): Check<T | undefined> {
  return (v, name) => (v === undefined ? undefined : check(v, name));
}

export function nullable<T>(check: Check<T>): Check<T | null> {
  return (v, name) => (v === null ? null : check(v, name));
}

/** A string matching `re` (anchored by the caller); `what` says the format in the message. */
export function matching(re: RegExp, what: string): Check<string> {
  return (v, name) => (typeof v === 'string' && re.test(v) ? v : expected(name, what, v));
}

/** An array (copied) of items that each pass `item`; `min`/`max` bound its length. */
export function arrayOf<T>(item: Check<T>, bounds: { min?: number; max?: number } = {}): Check<T[]> {
  const { min = 0, max = Infinity } = bounds;
  const what = min === max ? `an array of ${min}` : min > 0 ? 'a non-empty array' : 'an array';
  return (v, name) => {
    if (!Array.isArray(v) || v.length < min || v.length > max) return expected(name, what, v);
    return Array.from(v, (x, i) => item(x, `${name}[${i}]`));
  };
}

export const stringArray: Check<string[]> = arrayOf(string);

/** An object, not null and not an array. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Any object, passed through unchanged (for options another module checks in detail). */
export const object: Check<object> = (v, name) => (isObject(v) ? v : expected(name, 'an object', v));

export const func: Check<(...args: never[]) => unknown> = (v, name) =>
  typeof v === 'function' ? (v as (...args: never[]) => unknown) : expected(name, 'a function', v);

/** An object whose own values are all strings (copied, without its prototype). */
export const stringRecord: Check<Record<string, string>> = (v, name) => {
  if (!isObject(v)) return expected(name, 'an object of strings', v);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const k of Object.keys(v)) out[k] = string(v[k], `${name}.${k}`);
  return out;
};

/**
 * A value of one of several shapes: the first branch whose guard accepts the value checks it
 * (so a message is about the shape the caller meant); none does: `expected <what>`.
 */
export function union<T>(what: string, branches: Array<[guard: (v: unknown) => boolean, check: Check<T>]>): Check<T> {
  return (v, name) => {
    for (const [guard, check] of branches) if (guard(v)) return check(v, name);
    return expected(name, what, v);
  };
}

/**
 * An object with exactly the keys of `spec`: each own value checked (undefined counts as
 * left out), an unknown key refused with the nearest known one suggested. `keyName` names a
 * key in messages.
 */
export function checkObject<T>(spec: Spec<T>, v: unknown, name: string, keyName: (key: string) => string = (k) => `${name}.${k}`): T {
  if (!isObject(v)) return expected(name, 'an object', v);
  const known = Object.keys(spec);
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) {
      const near = nearest(k, known);
      throw invalid(`${keyName(k)}: unknown option${near ? ` (did you mean ${near}?)` : ''}; known: ${known.join(', ')}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const k of known) {
    const value = Object.prototype.hasOwnProperty.call(v, k) ? v[k] : undefined;
    const checked = (spec as Record<string, Check<unknown>>)[k]!(value, keyName(k));
    if (checked !== undefined) out[k] = checked;
  }
  return out as T;
}

/** checkObject as a Check, for an object inside another. */
export function shape<T>(spec: Spec<T>): Check<T> {
  return (v, name) => checkObject(spec, v, name);
}

/** The known key a typo most likely meant: same letters in another case, or at most ~1 edit in 3. */
export function nearest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    if (k.toLowerCase() === key.toLowerCase()) return k;
    const d = editDistance(key, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return bestDistance <= Math.max(1, Math.floor(key.length / 3)) ? best : undefined;
}

/** Levenshtein distance with transpositions (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
