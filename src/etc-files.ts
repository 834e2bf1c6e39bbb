/**
 * /etc/hosts, /etc/hostname and (with the host's network) /etc/resolv.conf: written by nsbox
 * into the container's own directory at each start and bound over the image's files, as
 * docker does. Never written into the image layer, never a host file: the container writes
 * to these copies, which nothing but it reads.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { fromSystemError } from './errors';
import { writeFileAsync } from './fsat';
import type { BatchOp } from './fsbatch';
import { hostsFile } from './plan';

export interface EtcFilesInput {
  /** The container's directory (containers/<id>). */
  dir: string;
  hostname: string;
  network: 'none' | 'host';
  /** The image's root: tells whether each file may be bound there. */
  imageLayer: string;
  /** No write layer: a file the image lacks cannot be made, so it is left out. */
  readOnly: boolean;
}

/** The host's resolver configuration, for --net host; undefined when the host has none. */
function hostResolvConf(): string | undefined {
  try {
    return fs.readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * How the image has `etc/<file>`: bindable (a regular file, or missing where a write layer can
 * hold a new one), or not (a link, a directory, /etc itself a link). The image layer is nsbox's
 * own and never written by a container; a write layer that replaced the file with a link makes
 * the start fail at that step (the child refuses a link as the target) rather than follow it.
 */
const bindableSeen = new Map<string, boolean>();

/** bindable(), remembered per image layer (never written: see above), so a start reads it once. */
function bindableCached(imageLayer: string, file: string, readOnly: boolean): boolean {
  const key = `${readOnly ? 1 : 0}\0${file}\0${imageLayer}`;
  let v = bindableSeen.get(key);
  if (v === undefined) {
    v = bindable(imageLayer, file, readOnly);
    if (bindableSeen.size > 1000) bindableSeen.clear();
    bindableSeen.set(key, v);
  }
  return v;
}

function bindable(imageLayer: string, file: string, readOnly: boolean): boolean {
  const lstat = (p: string) => {
    try {
      return fs.lstatSync(p);
    } catch {
      return undefined;
    }
  };
  if (!lstat(path.join(imageLayer, 'etc'))?.isDirectory()) return false;
  const st = lstat(path.join(imageLayer, 'etc', file));
  return st ? st.isFile() : !readOnly;
}

/**
 * The files as ops of a batch (src/fsbatch.ts) for a container directory made a moment ago in
 * the same batch (so none exists yet: O_EXCL, never through a link), and the binds they give.
 */
export function etcFileOps(input: EtcFilesInput): { ops: BatchOp[]; binds: Array<{ source: string; target: string }> } {
  const files: Array<[string, string | undefined]> = [
    ['hosts', hostsFile(input.hostname)],
    ['hostname', `${input.hostname}\n`],
    ...(input.network === 'host' ? [['resolv.conf', hostResolvConf()] as [string, string | undefined]] : []),
  ];
  const wanted = files.filter(([name, text]) => text !== undefined && bindableCached(input.imageLayer, name, input.readOnly));
  const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
  return {
    ops: wanted.map(([name, text]) => ({ op: 'write', path: path.join(input.dir, name), data: text!, flags, mode: 0o644, setMode: true })),
    binds: wanted.map(([name]) => ({ source: path.join(input.dir, name), target: `/etc/${name}` })),
  };
}

/** writeEtcFiles off the event loop. */
export async function writeEtcFilesAsync(input: EtcFilesInput): Promise<Array<{ source: string; target: string }>> {
  const files: Array<[string, string | undefined]> = [
    ['hosts', hostsFile(input.hostname)],
    ['hostname', `${input.hostname}\n`],
    ...(input.network === 'host' ? [['resolv.conf', hostResolvConf()] as [string, string | undefined]] : []),
  ];
  const wanted = files.filter(([name, text]) => text !== undefined && bindableCached(input.imageLayer, name, input.readOnly));
  return Promise.all(
    wanted.map(async ([name, text]) => {
      const source = path.join(input.dir, name);
      try {
        // Made afresh, never through a link; 0644 whatever the umask (the container reads it).
        // In a fresh container directory there is none yet: removed (and made again) only if so.
        const write = () =>
          writeFileAsync(source, text!, {
            flags: fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
            mode: 0o644,
            setMode: true,
          });
        try {
          await write();
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          await fs.promises.rm(source, { force: true });
          await write();
        }
      } catch (e) {
        throw fromSystemError(`write ${source}`, e);
      }
      return { source, target: `/etc/${name}` };
    }),
  );
}

/** Writes the files into `dir` (made afresh, never through a link) and returns the binds. */
export function writeEtcFiles(input: EtcFilesInput): Array<{ source: string; target: string }> {
  const files: Array<[string, string | undefined]> = [
    ['hosts', hostsFile(input.hostname)],
    ['hostname', `${input.hostname}\n`],
    ...(input.network === 'host' ? [['resolv.conf', hostResolvConf()] as [string, string | undefined]] : []),
  ];
  const out: Array<{ source: string; target: string }> = [];
  for (const [name, text] of files) {
    if (text === undefined || !bindable(input.imageLayer, name, input.readOnly)) continue;
    const source = path.join(input.dir, name);
    try {
      fs.rmSync(source, { force: true });
      const fd = fs.openSync(source, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644);
      try {
        fs.writeFileSync(fd, text);
        fs.fchmodSync(fd, 0o644); // the umask does not decide what the container may read
      } finally {
        fs.closeSync(fd);
      }
    } catch (e) {
      throw fromSystemError(`write ${source}`, e);
    }
    out.push({ source, target: `/etc/${name}` });
  }
  return out;
}
