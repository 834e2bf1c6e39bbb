/**
 * The tar format as images and commits use it. Reading is the addon's (src-cc/core/tar.cc:
 * ustar and old GNU headers, GNU long names, pax records, base-256 numbers), the one parser
 * both the import (which runs it on the thread pool, src-cc/core/tar_import.cc) and cp (through
 * TarReader below) use. Writing is here: ustar headers, with a pax header in front when a
 * field does not fit. No file system access here: extract.ts and merged-tar.ts do the I/O.
 */
import { isUtf8 } from 'node:buffer';

import { NsboxError } from '../errors';
import { native, type NativeRefusal, type NativeTarParser } from '../native';

export const BLOCK_SIZE = 512;

export type EntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo' | 'other';

export interface TarEntry {
  /** As stored (after long-name and pax records): not normalised, may be absolute or hold '..'. */
  name: string;
  type: EntryType;
  /** The raw type flag ('0', '5', ...), for messages about entries of type 'other'. */
  typeflag: string;
  /** Permission bits with setuid, setgid and sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of content after the header; always 0 for types that have no content. */
  size: number;
  /** Seconds since the epoch; fractional when a pax record says so. */
  mtime: number;
  /** Nanoseconds past `mtime`'s whole second, exactly as a pax record gives them (else 0). */
  mtimeNsec: number;
  /** Extended attributes from pax SCHILY.xattr.* records (GNU tar's and docker's form). */
  xattrs: Array<[string, Buffer]>;
  /** Target of a symlink or hardlink, '' otherwise. */
  linkname: string;
  devmajor: number;
  devminor: number;
}

/** What a TarReader calls, in stream order: entry, its data (size bytes in all), entry end. */
export interface TarHandler {
  onEntry(entry: TarEntry): void;
  onData(chunk: Buffer): void;
  onEntryEnd(): void;
}

// Header field offsets and lengths (POSIX ustar).
const NAME = 0,
  NAME_LEN = 100;
const MODE = 100,
  UID = 108,
  GID = 116,
  SIZE = 124,
  MTIME = 136,
  CHKSUM = 148;
const TYPEFLAG = 156;
const LINKNAME = 157;
const MAGIC = 257;
const DEVMAJOR = 329,
  DEVMINOR = 337;
const PREFIX = 345,
  PREFIX_LEN = 155;

const FLAGS: Record<Exclude<EntryType, 'other'>, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  directory: '5',
  fifo: '6',
};

/** A numeric header field (octal, or GNU base-256); NaN when malformed. */
export function parseNumber(block: Buffer, start: number, len: number): number {
  return native().tarParseNumber(block, start, len);
}

function refusal(e: NativeRefusal): NsboxError {
  return new NsboxError(e.code as 'BAD_ARCHIVE', e.message, e.path === undefined ? {} : { path: e.path });
}

/**
 * Turns a tar byte stream, fed in chunks of any size, into calls on a handler (the addon's
 * parser: src-cc/core/tar.h). Entry data is passed through as slices of the chunks it arrives
 * in, so the handler must use them before write() returns.
 */
export class TarReader {
  private readonly parser: NativeTarParser;

  /** `label` starts error messages ("cp: /path/to/x.tar"). */
  constructor(
    private readonly handler: TarHandler,
    label: string,
  ) {
    this.parser = new (native().TarParser)(label);
  }

  /** How far the stream has been read, and the last entry seen ('' before the first). */
  get position(): { offset: number; entry: string } {
    const [offset, entry] = this.parser.position();
    return { offset, entry };
  }

  /** True once the end-of-archive block has been read; later input is ignored. */
  get finished(): boolean {
    return this.parser.finished();
  }

  write(chunk: Buffer): void {
    const { events, error } = this.parser.write(chunk);
    // In stream order, as a streaming parser would call them: a handler's failure on an
    // entry comes before a damaged header after it.
    for (const ev of events) {
      if (ev === null) this.handler.onEntryEnd();
      else if (Array.isArray(ev)) this.handler.onData(chunk.subarray(ev[0], ev[1]));
      else this.handler.onEntry(ev as unknown as TarEntry);
    }
    if (error) throw refusal(error);
  }

  /** Call at the end of input: a stream that stops before its end-of-archive block is refused. */
  end(): void {
    const error = this.parser.end();
    if (error) throw refusal(error);
  }
}

// ---- Writing ----

/**
 * What encodeHeader needs; the type is any but 'other'. Names are strings (written as UTF-8)
 * or Buffers: bytes as a file system gave them, written as they are, UTF-8 or not.
 */
export interface TarHeaderInput {
  name: string | Buffer;
  type: Exclude<EntryType, 'other'>;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** Nanoseconds past mtime's second: written as a pax mtime when not 0. */
  mtimeNsec?: number;
  /** Extended attributes, written as pax SCHILY.xattr.* records. */
  xattrs?: Array<[string, Buffer]>;
  linkname?: string | Buffer | undefined;
  devmajor?: number;
  devminor?: number;
}

// eslint-disable-next-line no-control-regex -- tar's ASCII: every byte from 1 to 127
const ASCII = /^[\x01-\x7f]*$/;

/** Largest values octal fields of 8 and 12 bytes hold, with their terminating NUL. */
const OCTAL_MAX_8 = 0o7777777;
const OCTAL_MAX_12 = 0o77777777777;

/** A number into a field: octal when it fits, else GNU base-256 (two's complement, top bit set). */
function writeNumber(block: Buffer, start: number, len: number, value: number): void {
  const max = len === 8 ? OCTAL_MAX_8 : OCTAL_MAX_12;
  if (value >= 0 && value <= max) {
    block[start + len - 1] = 0;
    let v = value;
    for (let i = start + len - 2; i >= start; i--) {
      block[i] = 0x30 + (v % 8);
      v = Math.floor(v / 8);
    }
    return;
  }
  let v = value < 0 ? -(value + 1) : value;
  for (let i = start + len - 1; i > start; i--) {
    const byte = v % 256;
    block[i] = value < 0 ? 255 - byte : byte;
    v = Math.floor(v / 256);
  }
  block[start] = value < 0 ? 0xff : 0x80;
}

/**
 * Splits a name into ustar prefix and name fields, or returns undefined. The name is ASCII,
 * or `raw`: bytes that are not UTF-8 (as latin1), which no reader could decode anyway and
 * every reader takes from these fields as they are.
 */
function splitUstarName(name: string, raw: boolean): [string, string] | undefined {
  if (!raw && !ASCII.test(name)) return undefined;
  if (name.length <= NAME_LEN) return ['', name];
  if (name.length > NAME_LEN + PREFIX_LEN + 1) return undefined;
  // The prefix is everything before some '/', the name everything after it.
  let slash = name.indexOf('/', name.length - NAME_LEN - 1);
  while (slash >= 0 && slash <= PREFIX_LEN) {
    if (slash > 0 && slash < name.length - 1) return [name.slice(0, slash), name.slice(slash + 1)];
    slash = name.indexOf('/', slash + 1);
  }
  return undefined;
}

/** One pax record: "<length> <key>=<value>\n", where the length counts its own digits. */
export function paxRecord(key: string, value: string): string {
  return paxRecordBytes(key, Buffer.from(value, 'utf8')).toString('utf8');
}

/** A pax record whose value is bytes, as they are. */
function paxRecordBytes(key: string, value: Buffer): Buffer {
  const bodyLen = key.length + value.length + 3; // " ", "=", "\n"
  let len = bodyLen + String(bodyLen).length;
  if (String(len).length !== len - bodyLen) len = bodyLen + String(len).length;
  return Buffer.concat([Buffer.from(`${len} ${key}=`, 'latin1'), value, Buffer.from('\n', 'latin1')]);
}

/**
 * A name as a string whose chars are its bytes (latin1), those bytes, and whether they are
 * `raw`: not ASCII and not UTF-8 either.
 */
function nameText(v: string | Buffer): { text: string; raw: boolean; bytes: () => Buffer } {
  if (typeof v !== 'string') {
    const text = v.toString('latin1');
    return { text, raw: !ASCII.test(text) && !isUtf8(v), bytes: () => v };
  }
  // An ASCII string is its own bytes; anything else only ever goes into a pax record.
  return { text: ASCII.test(v) ? v : Buffer.from(v, 'utf8').toString('latin1'), raw: false, bytes: () => Buffer.from(v, 'utf8') };
}

/** One ustar block at target[at..]; the string fields are ASCII and fit. */
function writeUstar(target: Buffer, at: number, h: TarHeaderInput, typeflag: string, name: string, prefix: string, linkname: string): void {
  target.fill(0, at, at + BLOCK_SIZE);
  target.write(name, at + NAME, NAME_LEN, 'latin1');
  writeNumber(target, at + MODE, 8, h.mode & 0o7777);
  writeNumber(target, at + UID, 8, h.uid);
  writeNumber(target, at + GID, 8, h.gid);
  writeNumber(target, at + SIZE, 12, h.size);
  writeNumber(target, at + MTIME, 12, Math.floor(h.mtime));
  target[at + TYPEFLAG] = typeflag.charCodeAt(0);
  if (linkname !== '') target.write(linkname, at + LINKNAME, 100, 'latin1');
  target.write('ustar\x0000', at + MAGIC, 8, 'latin1');
  writeNumber(target, at + DEVMAJOR, 8, h.devmajor ?? 0);
  writeNumber(target, at + DEVMINOR, 8, h.devminor ?? 0);
  if (prefix !== '') target.write(prefix, at + PREFIX, PREFIX_LEN, 'latin1');
  let sum = 8 * 0x20;
  for (let i = at; i < at + BLOCK_SIZE; i++) sum += target[i]!;
  writeNumber(target, at + CHKSUM, 7, sum);
  target[at + CHKSUM + 7] = 0x20;
}

/** Keeps what can be kept of a name for a field too small for it; the pax record has it all. */
function truncatedAscii(value: string, len: number): string {
  // eslint-disable-next-line no-control-regex -- what is not ASCII (1 to 127) becomes '_'
  return value.replace(/[^\x01-\x7f]/g, '_').slice(0, len);
}

/**
 * Writes the header of one entry at target[at..]: a ustar block, preceded by a pax header when
 * the name or link name is too long or not ASCII, or a size, uid, gid or mtime does not fit
 * its field. Returns the bytes written, or 0 (writing nothing) when they do not fit in target.
 */
export function writeHeader(h: TarHeaderInput, target: Buffer, at: number): number {
  const name = nameText(h.name);
  const link = nameText(h.linkname ?? '');
  const split = splitUstarName(name.text, name.raw);
  const linkname = link.text;
  const mtime = Math.floor(h.mtime);
  const linkFits = linkname.length <= 100 && (link.raw || ASCII.test(linkname));
  const exact = !h.mtimeNsec && !h.xattrs?.length;
  if (exact && split && linkFits && h.size <= OCTAL_MAX_12 && h.uid <= OCTAL_MAX_8 && h.gid <= OCTAL_MAX_8 && mtime >= 0 && mtime <= OCTAL_MAX_12) {
    if (target.length - at < BLOCK_SIZE) return 0;
    writeUstar(target, at, h, FLAGS[h.type], split[1], split[0], linkname);
    return BLOCK_SIZE;
  }

  const records: Buffer[] = [];
  const pathBytes = split ? undefined : name.bytes();
  const linkBytes = linkFits ? undefined : link.bytes();
  // pax says path and linkpath are UTF-8; bytes that are not are marked so (POSIX
  // hdrcharset), and readers then keep them as they are.
  if ((pathBytes && name.raw) || (linkBytes && link.raw)) records.push(paxRecordBytes('hdrcharset', Buffer.from('BINARY')));
  if (pathBytes) records.push(paxRecordBytes('path', pathBytes));
  if (linkBytes) records.push(paxRecordBytes('linkpath', linkBytes));
  if (h.size > OCTAL_MAX_12) records.push(paxRecordBytes('size', Buffer.from(String(h.size))));
  if (h.uid > OCTAL_MAX_8) records.push(paxRecordBytes('uid', Buffer.from(String(h.uid))));
  if (h.gid > OCTAL_MAX_8) records.push(paxRecordBytes('gid', Buffer.from(String(h.gid))));
  if (h.mtimeNsec) records.push(paxRecordBytes('mtime', Buffer.from(paxTime(mtime, h.mtimeNsec))));
  else if (mtime < 0 || mtime > OCTAL_MAX_12) records.push(paxRecordBytes('mtime', Buffer.from(String(mtime))));
  for (const [key, value] of h.xattrs ?? []) records.push(paxRecordBytes(`SCHILY.xattr.${key}`, value));
  const data = Buffer.concat(records);
  const dataBlocks = Math.ceil(data.length / BLOCK_SIZE) * BLOCK_SIZE;
  const total = BLOCK_SIZE + dataBlocks + BLOCK_SIZE;
  if (target.length - at < total) return 0;

  const baseName = name.text.replace(/\/+$/, '');
  const paxName = truncatedAscii(`PaxHeaders/${baseName.slice(baseName.lastIndexOf('/') + 1)}`, NAME_LEN);
  const paxMtime = Math.max(0, Math.min(mtime, OCTAL_MAX_12));
  writeUstar(target, at, { name: paxName, type: 'file', mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: paxMtime }, 'x', paxName, '', '');
  target.fill(0, at + BLOCK_SIZE, at + BLOCK_SIZE + dataBlocks);
  data.copy(target, at + BLOCK_SIZE);
  const [prefix, ustarName] = split ?? ['', truncatedAscii(name.text, NAME_LEN)];
  writeUstar(target, at + BLOCK_SIZE + dataBlocks, h, FLAGS[h.type], ustarName, prefix, linkFits ? linkname : truncatedAscii(linkname, 100));
  return total;
}

/** A time as pax writes it: seconds with the nanoseconds as a decimal fraction (floor + nsec). */
export function paxTime(sec: number, nsec: number): string {
  const frac = (n: number) => String(n).padStart(9, '0').replace(/0+$/, '');
  if (!nsec) return String(sec);
  if (sec >= 0) return `${sec}.${frac(nsec)}`;
  // -2 s + 0.75 s is -1.25 s.
  return `-${-(sec + 1)}.${frac(1e9 - nsec)}`;
}

/** The header block(s) of one entry, in a buffer of their own (see writeHeader). */
export function encodeHeader(h: TarHeaderInput): Buffer {
  // A pax header holds at most a path and a link name of 4 KiB each and a few numbers.
  for (let size = 4 * BLOCK_SIZE; ; size *= 4) {
    const buf = Buffer.allocUnsafe(size);
    const n = writeHeader(h, buf, 0);
    if (n > 0) return buf.subarray(0, n);
  }
}

/** The end of an archive: two zero blocks. */
export function endOfArchive(): Buffer {
  return Buffer.alloc(2 * BLOCK_SIZE);
}
