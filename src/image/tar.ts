/**
 * The tar format as images and commits use it. Reading: ustar and old GNU headers, GNU long
 * names ('L' name, 'K' link name) and pax extended headers ('x': path, linkpath, size, uid,
 * gid, mtime); pax global headers ('g') are read and ignored. Writing: ustar headers, with a pax
 * header in front when a field does not fit. No file system access here: extract.ts and
 * merged-tar.ts do the I/O, this file only turns bytes into entries and back.
 */
import { isUtf8 } from 'node:buffer';

import { NsboxError } from '../errors';

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

const TYPES: Record<string, EntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'directory',
  '6': 'fifo',
};
const FLAGS: Record<Exclude<EntryType, 'other'>, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  directory: '5',
  fifo: '6',
};

// Long names, link names and pax records are held in memory until their entry's header comes;
// a real one is a few hundred bytes, so anything this big is a broken or hostile archive.
const MAX_META_SIZE = 1 << 20;

function headerOnly(type: EntryType): boolean {
  return type !== 'file' && type !== 'other';
}

/**
 * Sum of the header's bytes with the checksum field counted as spaces. Some old writers summed
 * signed bytes; that sum differs only when a byte is above 127.
 */
function checksum(block: Buffer, signed: boolean): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    if (i === CHKSUM) i += 8;
    const b = block[i]!;
    sum += signed && b > 127 ? b - 256 : b;
  }
  return sum;
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK_SIZE; i++) if (block[i] !== 0) return false;
  return true;
}

function cString(block: Buffer, start: number, len: number): string {
  let end = block.indexOf(0, start);
  if (end < 0 || end > start + len) end = start + len;
  return block.toString('utf8', start, end);
}

/**
 * A numeric field: octal digits (space or NUL terminated), or the GNU base-256 form for
 * values that do not fit (first byte 0x80 positive, 0xff negative). NaN when malformed.
 */
export function parseNumber(block: Buffer, start: number, len: number): number {
  const first = block[start]!;
  if (first === 0x80 || first === 0xff) {
    const negative = first === 0xff;
    let value = 0;
    for (let i = start + 1; i < start + len; i++) value = value * 256 + (negative ? 255 - block[i]! : block[i]!);
    if (value > Number.MAX_SAFE_INTEGER) return NaN;
    return negative ? -(value + 1) : value;
  }
  let i = start;
  const end = start + len;
  while (i < end && block[i] === 0x20) i++;
  let value = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) return NaN;
    value = value * 8 + (c - 0x30);
  }
  return value;
}

interface PaxOverrides {
  path?: string;
  linkpath?: string;
  size?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  mtimeNsec?: number;
  xattrs?: Array<[string, Buffer]>;
}

/**
 * Turns a tar byte stream, fed in chunks of any size, into calls on a handler. Keeps only one
 * header and the pending long-name/pax data in memory; entry data is passed through as slices
 * of the chunks it arrives in, so the handler must use them before write() returns.
 */
export class TarReader {
  private state: 'header' | 'data' | 'meta' | 'padding' | 'end' = 'header';
  private readonly headerBuf = Buffer.alloc(BLOCK_SIZE);
  private headerFill = 0;
  private remaining = 0;
  private padding = 0;
  /** Offset in the stream of the next byte to be consumed. */
  private offset = 0;
  private metaKind = '';
  private metaChunks: Buffer[] = [];
  private metaOffset = 0;
  private longName: string | undefined;
  private longLink: string | undefined;
  private pax: PaxOverrides = {};
  /** The last entry seen, for messages. */
  private lastName = '';

  /** `label` starts error messages ("import: /path/to/image.tar"). */
  constructor(
    private readonly handler: TarHandler,
    private readonly label: string,
  ) {}

  /** How far the stream has been read, and the last entry seen ('' before the first). */
  get position(): { offset: number; entry: string } {
    return { offset: this.offset + this.headerFill, entry: this.lastName };
  }

  /** True once the end-of-archive block has been read; later input is ignored. */
  get finished(): boolean {
    return this.state === 'end';
  }

  write(chunk: Buffer): void {
    const n = chunk.length;
    let pos = 0;
    while (pos < n) {
      switch (this.state) {
        case 'header': {
          if (this.headerFill === 0 && n - pos >= BLOCK_SIZE) {
            this.header(chunk.subarray(pos, pos + BLOCK_SIZE));
            pos += BLOCK_SIZE;
          } else {
            const take = Math.min(BLOCK_SIZE - this.headerFill, n - pos);
            chunk.copy(this.headerBuf, this.headerFill, pos, pos + take);
            this.headerFill += take;
            pos += take;
            if (this.headerFill === BLOCK_SIZE) {
              this.headerFill = 0;
              this.header(this.headerBuf);
            }
          }
          break;
        }
        case 'data': {
          const take = Math.min(this.remaining, n - pos);
          this.offset += take;
          this.remaining -= take;
          this.handler.onData(chunk.subarray(pos, pos + take));
          pos += take;
          if (this.remaining === 0) {
            this.handler.onEntryEnd();
            this.state = this.padding > 0 ? 'padding' : 'header';
          }
          break;
        }
        case 'meta': {
          const take = Math.min(this.remaining, n - pos);
          // Copied: the caller may reuse its chunk once write() returns.
          this.metaChunks.push(Buffer.from(chunk.subarray(pos, pos + take)));
          this.offset += take;
          this.remaining -= take;
          pos += take;
          if (this.remaining === 0) {
            this.meta(Buffer.concat(this.metaChunks));
            this.metaChunks = [];
            this.state = this.padding > 0 ? 'padding' : 'header';
          }
          break;
        }
        case 'padding': {
          const take = Math.min(this.padding, n - pos);
          this.offset += take;
          this.padding -= take;
          pos += take;
          if (this.padding === 0) this.state = 'header';
          break;
        }
        case 'end':
          this.offset += n - pos;
          pos = n;
          break;
      }
    }
  }

  /** Call at the end of input: a stream that stops before its end-of-archive block is refused. */
  end(): void {
    if (this.state === 'end') return;
    const where = this.lastName ? ` in or after entry "${this.lastName}"` : '';
    if (this.state === 'header' && this.headerFill === 0) {
      throw this.bad(`ends at offset ${this.offset} without the end-of-archive blocks${where} (truncated?)`);
    }
    throw this.bad(`truncated at offset ${this.offset + this.headerFill}${where}`);
  }

  private bad(why: string, name?: string): NsboxError {
    const path = name ?? (this.lastName || undefined);
    return new NsboxError('BAD_ARCHIVE', `${this.label}: ${why}`, path === undefined ? {} : { path });
  }

  private header(block: Buffer): void {
    const at = this.offset;
    this.offset += BLOCK_SIZE;
    const sum = checksum(block, false);
    if (sum === 8 * 0x20 && isZeroBlock(block)) {
      // The first of the two end-of-archive blocks; what follows is padding to a record.
      this.state = 'end';
      return;
    }
    const stored = parseNumber(block, CHKSUM, 8);
    const after = this.lastName ? ` (after entry "${this.lastName}")` : '';
    if (stored !== sum && stored !== checksum(block, true)) {
      throw this.bad(`bad header checksum at offset ${at}${after}`);
    }
    const typeflag = String.fromCharCode(block[TYPEFLAG]!);
    const isMeta = typeflag === 'L' || typeflag === 'K' || typeflag === 'x' || typeflag === 'g';
    // A pax size applies to the entry the pax header describes, not to another extension header.
    const size = (isMeta ? undefined : this.pax.size) ?? parseNumber(block, SIZE, 12);
    if (!(size >= 0)) throw this.bad(`bad size field in the header at offset ${at}${after}`);
    this.padding = (BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE;

    if (isMeta) {
      if (size > MAX_META_SIZE) throw this.bad(`a '${typeflag}' header of ${size} bytes at offset ${at}${after}`);
      this.metaKind = typeflag;
      this.metaOffset = at;
      this.remaining = size;
      if (size > 0) {
        this.state = 'meta';
      } else {
        this.meta(Buffer.alloc(0));
        this.state = 'header';
      }
      return;
    }

    const entry = this.entry(block, typeflag, size, at);
    this.lastName = entry.name;
    this.handler.onEntry(entry);
    if (entry.size > 0) {
      this.remaining = entry.size;
      this.state = 'data';
      return;
    }
    this.handler.onEntryEnd();
    // Content stored for a type that has none (a hardlink with data, from some pax writers) is
    // skipped, never written.
    this.padding += size;
    this.state = this.padding > 0 ? 'padding' : 'header';
  }

  private entry(block: Buffer, typeflag: string, size: number, at: number): TarEntry {
    const posix = block[MAGIC] === 0x75 && block[MAGIC + 5] === 0 && block.toString('latin1', MAGIC, MAGIC + 5) === 'ustar';
    let name = this.pax.path ?? this.longName;
    if (name === undefined) {
      name = cString(block, NAME, NAME_LEN);
      // Old GNU headers use the prefix area for other fields, so only POSIX ones have a prefix.
      if (posix && block[PREFIX] !== 0) name = `${cString(block, PREFIX, PREFIX_LEN)}/${name}`;
    }
    const linkname = this.pax.linkpath ?? this.longLink ?? cString(block, LINKNAME, 100);
    let type = TYPES[typeflag] ?? 'other';
    // Pre-POSIX archives mark directories only by the trailing slash.
    if (typeflag === '\0' && name.endsWith('/')) type = 'directory';
    const mode = parseNumber(block, MODE, 8);
    const uid = this.pax.uid ?? parseNumber(block, UID, 8);
    const gid = this.pax.gid ?? parseNumber(block, GID, 8);
    const mtime = this.pax.mtime ?? parseNumber(block, MTIME, 12);
    const device = type === 'char' || type === 'block';
    const devmajor = device ? parseNumber(block, DEVMAJOR, 8) : 0;
    const devminor = device ? parseNumber(block, DEVMINOR, 8) : 0;
    // NaN, from a malformed field, is the only value that fails x === x.
    if (mode !== mode || uid !== uid || gid !== gid || mtime !== mtime || devmajor !== devmajor || devminor !== devminor) {
      throw this.bad(`a malformed numeric field in entry "${name}" at offset ${at}`, name);
    }
    // (uid_t)-1 means "leave unchanged" to chown, and ids above it do not exist: a file would
    // silently keep the extractor's owner.
    if (uid >= 0xffffffff || gid >= 0xffffffff || uid < 0 || gid < 0) {
      throw this.bad(`entry "${name}" at offset ${at}: owner ${uid}:${gid} is not a valid id`, name);
    }
    // Linux device numbers: 12 bits of major, 20 of minor; a mode is never negative (base-256
    // fields can say so). Anything else would reach mknod or chmod as something else.
    if (mode < 0 || devmajor < 0 || devmajor > 0xfff || devminor < 0 || devminor > 0xfffff) {
      throw this.bad(`entry "${name}" at offset ${at}: a mode or device number out of range`, name);
    }
    if (typeflag === 'S') throw this.bad(`entry "${name}": GNU sparse files are not supported`, name);
    if (name.includes('\0') || linkname.includes('\0')) throw this.bad(`entry at offset ${at}: a name holds a NUL byte`, name);
    this.longName = undefined;
    this.longLink = undefined;
    const mtimeNsec = this.pax.mtimeNsec ?? 0;
    const xattrs = this.pax.xattrs ?? [];
    this.pax = {};
    return {
      name,
      type,
      typeflag,
      linkname,
      mode: mode & 0o7777,
      uid,
      gid,
      mtime,
      mtimeNsec,
      xattrs,
      size: headerOnly(type) ? 0 : size,
      devmajor,
      devminor,
    };
  }

  private meta(data: Buffer): void {
    switch (this.metaKind) {
      case 'L':
        this.longName = cString(data, 0, data.length);
        break;
      case 'K':
        this.longLink = cString(data, 0, data.length);
        break;
      case 'x':
        this.pax = parsePax(data, (why) => this.bad(`pax header at offset ${this.metaOffset}: ${why}`));
        break;
      default:
        // 'g': global pax records (a comment, a charset) change nothing nsbox restores.
        break;
    }
  }
}

function parsePax(data: Buffer, bad: (why: string) => NsboxError): PaxOverrides {
  const out: PaxOverrides = {};
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) throw bad('a record without a length');
    const len = Number(data.toString('latin1', pos, space));
    if (!Number.isInteger(len) || len <= space - pos || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw bad(`a malformed record at byte ${pos}`);
    }
    const eq = data.indexOf(0x3d, space);
    if (eq < 0 || eq >= pos + len) throw bad(`a record without '=' at byte ${pos}`);
    const key = data.toString('utf8', space + 1, eq);
    const raw = data.subarray(eq + 1, pos + len - 1);
    const value = raw.toString('utf8');
    pos += len;
    if (key.startsWith('SCHILY.xattr.')) {
      // The value is bytes (a file capability is binary), kept as they are.
      (out.xattrs ??= []).push([key.slice('SCHILY.xattr.'.length), Buffer.from(raw)]);
      continue;
    }
    switch (key) {
      case 'path':
        out.path = value;
        break;
      case 'linkpath':
        out.linkpath = value;
        break;
      case 'size':
        out.size = paxInteger(key, value, bad);
        break;
      case 'uid':
        out.uid = paxInteger(key, value, bad);
        break;
      case 'gid':
        out.gid = paxInteger(key, value, bad);
        break;
      case 'mtime': {
        const mm = /^(-?\d+)(?:\.(\d+))?$/.exec(value);
        if (!mm) throw bad(`mtime "${value}"`);
        out.mtime = Number(value);
        // The fraction as written, to the nanosecond: a double would round it.
        out.mtimeNsec = mm[2] ? Number(mm[2].slice(0, 9).padEnd(9, '0')) : 0;
        if (mm[1]!.startsWith('-') && out.mtimeNsec) out.mtimeNsec = 1e9 - out.mtimeNsec;
        break;
      }
      default:
        // Sparse files store their data in a layout this reader does not rebuild: extracting
        // them as plain files would silently corrupt them.
        if (key.startsWith('GNU.sparse.')) throw bad('GNU sparse files are not supported');
        break;
    }
  }
  return out;
}

function paxInteger(key: string, value: string, bad: (why: string) => NsboxError): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw bad(`${key} "${value}"`);
  return n;
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
