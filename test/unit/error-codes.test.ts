// NsboxErrorCode is a closed union: every code an NsboxError can carry is one of its members,
// at run time as well as in the types.
import { constants } from 'node:os';
import { describe, expect, expectTypeOf, it } from 'vitest';

import { errnoCode, fromNative, fromSystemError, isErrnoCode, NsboxError, type NsboxErrorCode } from '../../src/errors';

describe('NsboxErrorCode', () => {
  it('holds every errno name this Node knows, and nothing that is not an errno name', () => {
    for (const name of Object.keys(constants.errno)) expect(isErrnoCode(name), name).toBe(true);
    for (const other of ['ERR_INVALID_ARG_TYPE', 'E99999', 'INVALID_ARGUMENT', 'toString', '__proto__', '', 42, null]) {
      expect(isErrnoCode(other), String(other)).toBe(false);
    }
  });
  it('turns a code from elsewhere that is no errno name into EIO', () => {
    expect(errnoCode('ENOENT')).toBe('ENOENT');
    expect(errnoCode('ERR_FS_FILE_TOO_LARGE')).toBe('EIO');
    expect(errnoCode(undefined)).toBe('EIO');
    const node = Object.assign(new Error('x'), { code: 'ERR_SOMETHING' });
    const e = fromSystemError('read /x', node);
    expect(e.code).toBe('EIO');
    expect(e.cause).toBe(node);
    // A number os.constants has no name for.
    expect(fromNative('x', { errno: 99999, code: 'E99999', syscall: 'y' }).code).toBe('EIO');
  });
  it('lets a switch over the code be checked by the compiler', () => {
    expectTypeOf<NsboxError['code']>().toEqualTypeOf<NsboxErrorCode>();
    // Closed: a string that is not a code does not compile as one.
    expectTypeOf<'NOT_A_CODE'>().not.toExtend<NsboxErrorCode>();
    expectTypeOf<'ENOENT'>().toExtend<NsboxErrorCode>();
    expectTypeOf<'INVALID_ARGUMENT'>().toExtend<NsboxErrorCode>();
  });
});
