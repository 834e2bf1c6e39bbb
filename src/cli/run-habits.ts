/**
 * docker's habits on `run`'s command line, turned into RunOptions: `-e VAR` and `--env-file`
 * (the host's value for a name alone), `--entrypoint`, `--mount`, `--network`. Pure but for
 * reading the env files and checking that a bind's source exists.
 */
import * as fs from 'node:fs';

import { NsboxError } from '../errors';
import type { VolumeSpec } from '../runtime';

const bad = (msg: string) => new NsboxError('INVALID_ARGUMENT', `run: ${msg}`);
const ENV_NAME = /^[^=\s]+$/;

/**
 * The environment from `--env-file` files then `-e` (later wins, as docker's), as K=V strings.
 * A name alone takes the host's value, and is left out when the host has none.
 */
export function envFrom(envFiles: string[], envFlags: string[], host: NodeJS.ProcessEnv = process.env): string[] {
  const out: string[] = [];
  const add = (entry: string, where: string) => {
    const eq = entry.indexOf('=');
    const name = eq < 0 ? entry : entry.slice(0, eq);
    if (!ENV_NAME.test(name)) throw bad(`${where}: ${JSON.stringify(entry)}: expected NAME=VALUE or NAME`);
    if (eq >= 0) out.push(entry);
    else if (host[name] !== undefined) out.push(`${name}=${host[name]}`);
  };
  for (const file of envFiles) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw bad(`--env-file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/\r$/, '').replace(/^\s+/, '');
      if (line === '' || line.startsWith('#')) return;
      add(line, `--env-file ${file}:${i + 1}`);
    });
  }
  for (const e of envFlags) add(e, '-e');
  return out;
}

/** The command with `--entrypoint`: the entrypoint, then the command as its arguments. */
export function withEntrypoint(entrypoint: string | undefined, command: string[]): string[] {
  if (entrypoint === undefined) return command;
  // docker's `--entrypoint ""`: no entrypoint, the command alone.
  return entrypoint === '' ? command : [entrypoint, ...command];
}

/** `--net` and `--network` (one of them, or both alike). */
export function networkFrom(net: string | undefined, network: string | undefined): 'none' | 'host' | undefined {
  if (net !== undefined && network !== undefined && net !== network) throw bad(`--net ${net} and --network ${network} disagree`);
  const v = net ?? network;
  if (v !== undefined && v !== 'none' && v !== 'host') throw bad(`--network ${v}: none or host`);
  return v;
}

export interface MountFlags {
  volumes: VolumeSpec[];
  /** In --tmpfs's form: TARGET:size=...,mode=... */
  tmpfs: string[];
}

/**
 * `--mount type=bind,source=S,target=T[,readonly]` (`src`, `dst`, `destination`, `ro`,
 * `readonly=true|false` too) and `--mount type=tmpfs,target=T[,tmpfs-size=S][,tmpfs-mode=M]`.
 * A bind's source must exist (docker's rule for --mount, unlike -v, which makes it).
 */
export function mountsFrom(specs: string[]): MountFlags {
  const out: MountFlags = { volumes: [], tmpfs: [] };
  for (const spec of specs) {
    const fields = new Map<string, string | undefined>();
    for (const part of spec.split(',')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      const key = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
      const alias: Record<string, string> = { src: 'source', dst: 'target', destination: 'target', ro: 'readonly' };
      const k = alias[key] ?? key;
      if (fields.has(k)) throw bad(`--mount ${spec}: ${key} given twice`);
      fields.set(k, eq < 0 ? undefined : part.slice(eq + 1));
    }
    const type = fields.get('type');
    const target = fields.get('target');
    if (!target) throw bad(`--mount ${spec}: target= is required`);
    const known = (keys: string[]) => {
      for (const k of fields.keys()) if (!keys.includes(k)) throw bad(`--mount ${spec}: ${k}: not an option of type=${type} (${keys.join(', ')})`);
    };
    if (type === 'bind') {
      known(['type', 'source', 'target', 'readonly']);
      const source = fields.get('source');
      if (!source) throw bad(`--mount ${spec}: source= is required for type=bind`);
      // The record keeps a volume as SOURCE:TARGET[:ro]: a ':' in either could not be read back.
      if (source.includes(':') || target.includes(':')) throw bad(`--mount ${spec}: a path with ':' is not supported`);
      if (!fs.existsSync(source)) throw bad(`--mount ${spec}: bind source ${source} does not exist`);
      const ro = fields.get('readonly');
      if (ro !== undefined && ro !== 'true' && ro !== 'false' && ro !== '1' && ro !== '0') throw bad(`--mount ${spec}: readonly=${ro}: true or false`);
      out.volumes.push({ source, target, readonly: fields.has('readonly') && ro !== 'false' && ro !== '0' });
    } else if (type === 'tmpfs') {
      known(['type', 'target', 'tmpfs-size', 'tmpfs-mode']);
      if (target.includes(':')) throw bad(`--mount ${spec}: a path with ':' is not supported`);
      const opts = [
        ...(fields.get('tmpfs-size') ? [`size=${fields.get('tmpfs-size')!}`] : []),
        ...(fields.get('tmpfs-mode') ? [`mode=${fields.get('tmpfs-mode')!}`] : []),
      ];
      out.tmpfs.push(opts.length ? `${target}:${opts.join(',')}` : target);
    } else {
      throw bad(`--mount ${spec}: type=${type ?? '(missing)'}: bind or tmpfs (nsbox has no named volumes)`);
    }
  }
  return out;
}
