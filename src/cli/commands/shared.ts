import { NsboxError } from '../../errors';
import { Runtime } from '../../runtime';
import type { StorageDriver } from '../../workspace';
import type { Global } from '../main';

export function runtimeFrom(g: Global): Runtime {
  return new Runtime({
    ...(g.root !== undefined ? { root: g.root } : {}),
    ...(g.storageDriver !== undefined ? { storageDriver: g.storageDriver as StorageDriver } : {}),
  });
}

export function formatOf(value: unknown): 'table' | 'json' {
  if (value === undefined || value === 'table') return 'table';
  if (value === 'json') return 'json';
  throw new NsboxError('INVALID_ARGUMENT', `--format ${String(value)}: table or json`);
}
