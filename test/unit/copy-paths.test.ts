// How cp reads container paths and tar entry names, before any file system access: '..' is
// refused everywhere (a path resolved inside a root never needs it), '/' and '.' are dropped,
// and a trailing '/' or '/.' says "a directory" and "its contents".
import { describe, expect, it } from 'vitest';

import { components } from '../../src/copy-tar-in';
import { parseContainerPath } from '../../src/copy';

describe('container paths', () => {
  it('splits into components, relative to the root', () => {
    expect(parseContainerPath('/etc/passwd', 'cp')).toEqual({ parts: ['etc', 'passwd'], dirOnly: false, contentsOnly: false });
    expect(parseContainerPath('etc//./passwd', 'cp').parts).toEqual(['etc', 'passwd']);
    expect(parseContainerPath('/', 'cp')).toEqual({ parts: [], dirOnly: true, contentsOnly: false });
    expect(parseContainerPath('/srv/', 'cp')).toMatchObject({ parts: ['srv'], dirOnly: true, contentsOnly: false });
    expect(parseContainerPath('/srv/.', 'cp')).toMatchObject({ parts: ['srv'], dirOnly: true, contentsOnly: true });
  });

  it("refuses '..' anywhere, and what is not a path", () => {
    for (const p of ['..', '../etc', '/tmp/../../etc/passwd', '/a/..', 'a/../b']) {
      expect(() => parseContainerPath(p, 'cp')).toThrow(expect.objectContaining({ code: 'UNSAFE_PATH' }));
    }
    expect(() => parseContainerPath('', 'cp')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => parseContainerPath('/a\0b', 'cp')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => parseContainerPath(42 as never, 'cp')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('tar entry names', () => {
  it("drop '/' and '.', refuse '..'", () => {
    expect(components('./a/b/', 'cp')).toEqual(['a', 'b']);
    expect(components('/abs/x', 'cp')).toEqual(['abs', 'x']);
    expect(components('./', 'cp')).toEqual([]);
    expect(() => components('a/../../x', 'cp')).toThrow(expect.objectContaining({ code: 'UNSAFE_PATH' }));
    expect(() => components('..', 'cp')).toThrow(/'\.\.' would leave the destination/);
  });
});
