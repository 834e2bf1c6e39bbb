// fromNative: a native failure becomes an NsboxError whose code is the errno's real name.
import { describe, expect, it } from 'vitest';

import { errnoName, fromNative, isNativeErrno, NsboxError } from '../../src/errors';

describe('fromNative', () => {
  it('names the code from the errno number, not from a label the caller chose', () => {
    // A wrong `code` from the binding must not win over the number (kill once said EPERM for all).
    const e = fromNative('kill 42', { errno: 3, code: 'EPERM', syscall: 'pidfd_send_signal' });
    expect(e).toBeInstanceOf(NsboxError);
    expect(e.code).toBe('ESRCH');
    expect(e.errno).toBe(3);
    expect(e.syscall).toBe('pidfd_send_signal');
    expect(e.message).toBe('kill 42: ESRCH (pidfd_send_signal)');
  });
  it("puts the binding's path in the message and the details", () => {
    const e = fromNative('remove /x', { errno: 13, code: 'EACCES', syscall: 'unlinkat', path: Buffer.from('/x/y') });
    expect(e.code).toBe('EACCES');
    expect(e.path).toBe('/x/y');
    expect(e.message).toBe('remove /x: /x/y: EACCES (unlinkat)');
  });
  it("takes the caller's path and hint without repeating the path", () => {
    const e = fromNative('open /data', { errno: 2, code: 'ENOENT', syscall: 'openat' }, { path: '/data', hint: 'h' });
    expect(e.message).toBe('open /data: ENOENT (openat)');
    expect(e.path).toBe('/data');
    expect(e.hint).toBe('h');
  });
  it("falls back to the binding's code, then EIO, for no errno", () => {
    expect(fromNative('x', { errno: 0, code: 'ECHILD', syscall: 'setup' }).code).toBe('ECHILD');
    expect(fromNative('x', { errno: 0, code: '', syscall: 'setup' }).code).toBe('EIO');
  });
  it('names errnos as os.constants does', () => {
    expect(errnoName(1)).toBe('EPERM');
    expect(errnoName(-22)).toBe('EINVAL');
    expect(errnoName(99999)).toBe('E99999'); // the name in a message; the error's code is EIO
  });
  it('tells a failure from a value', () => {
    expect(isNativeErrno({ errno: 1, code: 'EPERM', syscall: 'x' })).toBe(true);
    expect(isNativeErrno(null)).toBe(false);
    expect(isNativeErrno(3)).toBe(false);
    expect(isNativeErrno(Buffer.from('errno'))).toBe(false);
    expect(isNativeErrno(new Float64Array(4))).toBe(false);
    expect(isNativeErrno({ fd: 3, device: '/dev/loop0' })).toBe(false);
  });
});
