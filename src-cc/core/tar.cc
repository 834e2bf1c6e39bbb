#include "core/tar.h"

#include <string.h>

#include <algorithm>

namespace nsbox {

namespace {

// Header field offsets and lengths (POSIX ustar).
constexpr size_t kName = 0, kNameLen = 100;
constexpr size_t kMode = 100, kUid = 108, kGid = 116, kSize = 124, kMtime = 136, kChksum = 148;
constexpr size_t kTypeflag = 156, kLinkname = 157, kMagic = 257;
constexpr size_t kDevmajor = 329, kDevminor = 337;
constexpr size_t kPrefix = 345, kPrefixLen = 155;

// Long names, link names and pax records are held in memory until their entry's header
// comes; a real one is a few hundred bytes, so anything this big is a broken or hostile archive.
constexpr uint64_t kMaxMetaSize = 1 << 20;
constexpr uint64_t kMaxSafe = (uint64_t{1} << 53) - 1;

std::string CString(const uint8_t* p, size_t len) {
  const void* nul = memchr(p, 0, len);
  size_t n = nul ? static_cast<size_t>(static_cast<const uint8_t*>(nul) - p) : len;
  return std::string(reinterpret_cast<const char*>(p), n);
}

std::string Num(uint64_t v) { return std::to_string(v); }
std::string Num(int64_t v) { return std::to_string(v); }

bool HeaderOnly(TarType t) { return t != TarType::kFile && t != TarType::kOther; }

TarType TypeOf(char flag) {
  switch (flag) {
    case '0':
    case '\0':
    case '7': return TarType::kFile;
    case '1': return TarType::kHardlink;
    case '2': return TarType::kSymlink;
    case '3': return TarType::kChar;
    case '4': return TarType::kBlock;
    case '5': return TarType::kDirectory;
    case '6': return TarType::kFifo;
    default: return TarType::kOther;
  }
}

bool StartsWith(const std::string& s, const char* prefix) {
  size_t n = strlen(prefix);
  return s.size() >= n && s.compare(0, n, prefix) == 0;
}

bool AllDigits(const std::string& s, size_t from, size_t to) {
  if (from >= to) return false;
  for (size_t i = from; i < to; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

// Decimal digits to a value at most 2^53 - 1 (what a pax size, uid or gid may be).
bool PaxInteger(const std::string& v, uint64_t* out) {
  if (!AllDigits(v, 0, v.size())) return false;
  uint64_t n = 0;
  for (char c : v) {
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (n > (kMaxSafe - d) / 10) return false;
    n = n * 10 + d;
  }
  *out = n;
  return true;
}

}  // namespace

bool TarNumber(const uint8_t* f, size_t len, int64_t* value) {
  if (len == 0) {
    *value = 0;
    return true;
  }
  uint8_t first = f[0];
  if (first == 0x80 || first == 0xff) {
    bool negative = first == 0xff;
    uint64_t v = 0;
    for (size_t i = 1; i < len; i++) {
      uint64_t b = negative ? 255u - f[i] : f[i];
      if (v > (kMaxSafe - b) / 256) return false;
      v = v * 256 + b;
    }
    *value = negative ? -static_cast<int64_t>(v) - 1 : static_cast<int64_t>(v);
    return true;
  }
  size_t i = 0;
  while (i < len && f[i] == ' ') i++;
  uint64_t v = 0;
  for (; i < len; i++) {
    uint8_t c = f[i];
    if (c == 0 || c == ' ') break;
    if (c < '0' || c > '7') return false;
    if (v > (kMaxSafe - (c - '0')) / 8) return false;
    v = v * 8 + (c - '0');
  }
  *value = static_cast<int64_t>(v);
  return true;
}

bool TarParser::Write(const uint8_t* data, size_t n, TarSink* sink) {
  if (!error_.code.empty()) return false;
  size_t pos = 0;
  while (pos < n) {
    switch (state_) {
      case State::kHeader: {
        if (header_fill_ == 0 && n - pos >= kTarBlock) {
          const uint8_t* block = data + pos;
          pos += kTarBlock;
          if (!Header(block, sink)) return false;
        } else {
          size_t take = std::min(kTarBlock - header_fill_, n - pos);
          memcpy(header_ + header_fill_, data + pos, take);
          header_fill_ += take;
          pos += take;
          if (header_fill_ == kTarBlock) {
            header_fill_ = 0;
            if (!Header(header_, sink)) return false;
          }
        }
        break;
      }
      case State::kData: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, n - pos));
        offset_ += take;
        remaining_ -= take;
        if (!sink->OnData(data + pos, take, &error_)) return false;
        pos += take;
        if (remaining_ == 0) {
          if (!sink->OnEntryEnd(&error_)) return false;
          state_ = padding_ > 0 ? State::kPadding : State::kHeader;
        }
        break;
      }
      case State::kMeta: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, n - pos));
        meta_.append(reinterpret_cast<const char*>(data + pos), take);
        offset_ += take;
        remaining_ -= take;
        pos += take;
        if (remaining_ == 0) {
          if (!Meta()) return false;
          meta_.clear();
          state_ = padding_ > 0 ? State::kPadding : State::kHeader;
        }
        break;
      }
      case State::kPadding: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(padding_, n - pos));
        offset_ += take;
        padding_ -= take;
        pos += take;
        if (padding_ == 0) state_ = State::kHeader;
        break;
      }
      case State::kEnd:
        offset_ += n - pos;
        pos = n;
        break;
    }
  }
  return true;
}

bool TarParser::End() {
  if (!error_.code.empty()) return false;
  if (state_ == State::kEnd) return true;
  std::string where = last_name_.empty() ? "" : " in or after entry \"" + last_name_ + "\"";
  if (state_ == State::kHeader && header_fill_ == 0) {
    return Bad("ends at offset " + Num(offset_) + " without the end-of-archive blocks" + where + " (truncated?)");
  }
  return Bad("truncated at offset " + Num(offset_ + header_fill_) + where);
}

bool TarParser::Bad(const std::string& why) { return BadNamed(why, last_name_); }

bool TarParser::BadNamed(const std::string& why, const std::string& name) {
  error_.code = "BAD_ARCHIVE";
  error_.message = label_ + ": " + why;
  error_.path = name;
  error_.has_path = !name.empty();
  return false;
}

std::string TarParser::After() const { return last_name_.empty() ? "" : " (after entry \"" + last_name_ + "\")"; }

bool TarParser::Header(const uint8_t* block, TarSink* sink) {
  uint64_t at = offset_;
  offset_ += kTarBlock;
  // The checksum counts its own field as spaces; some old writers summed signed bytes.
  int64_t sum = 8 * 0x20, signed_sum = 8 * 0x20;
  bool zero = true;
  for (size_t i = 0; i < kTarBlock; i++) {
    if (block[i] != 0) zero = false;
    if (i >= kChksum && i < kChksum + 8) continue;
    sum += block[i];
    signed_sum += static_cast<int8_t>(block[i]);
  }
  if (zero) {
    // The first of the two end-of-archive blocks; what follows is padding to a record.
    state_ = State::kEnd;
    return true;
  }
  int64_t stored;
  if (!TarNumber(block + kChksum, 8, &stored) || (stored != sum && stored != signed_sum)) {
    return Bad("bad header checksum at offset " + Num(at) + After());
  }
  char typeflag = static_cast<char>(block[kTypeflag]);
  bool is_meta = typeflag == 'L' || typeflag == 'K' || typeflag == 'x' || typeflag == 'g';
  // A pax size applies to the entry the pax header describes, not to another extension header.
  uint64_t size;
  if (!is_meta && pax_.size) {
    size = pax_.size_value;
  } else {
    int64_t field;
    if (!TarNumber(block + kSize, 12, &field) || field < 0) return Bad("bad size field in the header at offset " + Num(at) + After());
    size = static_cast<uint64_t>(field);
  }
  padding_ = (kTarBlock - size % kTarBlock) % kTarBlock;

  if (is_meta) {
    if (size > kMaxMetaSize) return Bad(std::string("a '") + typeflag + "' header of " + Num(size) + " bytes at offset " + Num(at) + After());
    meta_kind_ = typeflag;
    meta_offset_ = at;
    remaining_ = size;
    meta_.clear();
    if (size > 0) {
      state_ = State::kMeta;
      return true;
    }
    if (!Meta()) return false;
    state_ = State::kHeader;
    return true;
  }

  if (!Entry(block, typeflag, size, at, &entry_)) return false;
  last_name_ = entry_.name;
  if (!sink->OnEntry(entry_, &error_)) return false;
  if (entry_.size > 0) {
    remaining_ = entry_.size;
    state_ = State::kData;
    return true;
  }
  if (!sink->OnEntryEnd(&error_)) return false;
  // Content stored for a type that has none (a hardlink with data, from some pax writers) is
  // skipped, never written.
  padding_ += size;
  state_ = padding_ > 0 ? State::kPadding : State::kHeader;
  return true;
}

bool TarParser::Entry(const uint8_t* block, char typeflag, uint64_t size, uint64_t at, TarEntry* e) {
  bool posix = memcmp(block + kMagic, "ustar", 6) == 0;
  std::string name;
  if (pax_.path) {
    name = pax_.path_value;
  } else if (has_long_name_) {
    name = long_name_;
  } else {
    name = CString(block + kName, kNameLen);
    // Old GNU headers use the prefix area for other fields, so only POSIX ones have a prefix.
    if (posix && block[kPrefix] != 0) name = CString(block + kPrefix, kPrefixLen) + "/" + name;
  }
  std::string linkname = pax_.linkpath ? pax_.linkpath_value : has_long_link_ ? long_link_ : CString(block + kLinkname, 100);
  TarType type = TypeOf(typeflag);
  // Pre-POSIX archives mark directories only by the trailing slash.
  if (typeflag == '\0' && !name.empty() && name.back() == '/') type = TarType::kDirectory;
  bool device = type == TarType::kChar || type == TarType::kBlock;
  int64_t mode = 0, uid = 0, gid = 0, mtime = 0, devmajor = 0, devminor = 0;
  bool ok = TarNumber(block + kMode, 8, &mode);
  if (pax_.uid) uid = static_cast<int64_t>(pax_.uid_value);
  else ok = TarNumber(block + kUid, 8, &uid) && ok;
  if (pax_.gid) gid = static_cast<int64_t>(pax_.gid_value);
  else ok = TarNumber(block + kGid, 8, &gid) && ok;
  if (pax_.mtime) mtime = pax_.mtime_value;
  else ok = TarNumber(block + kMtime, 12, &mtime) && ok;
  if (device) {
    ok = TarNumber(block + kDevmajor, 8, &devmajor) && ok;
    ok = TarNumber(block + kDevminor, 8, &devminor) && ok;
  }
  if (!ok) return BadNamed("a malformed numeric field in entry \"" + name + "\" at offset " + Num(at), name);
  // (uid_t)-1 means "leave unchanged" to chown, and ids above it do not exist: a file would
  // silently keep the extractor's owner.
  if (uid < 0 || gid < 0 || uid >= 0xffffffffLL || gid >= 0xffffffffLL) {
    return BadNamed("entry \"" + name + "\" at offset " + Num(at) + ": owner " + Num(uid) + ":" + Num(gid) + " is not a valid id", name);
  }
  // Linux device numbers: 12 bits of major, 20 of minor; a mode is never negative (base-256
  // fields can say so). Anything else would reach mknod or chmod as something else.
  if (mode < 0 || devmajor < 0 || devmajor > 0xfff || devminor < 0 || devminor > 0xfffff) {
    return BadNamed("entry \"" + name + "\" at offset " + Num(at) + ": a mode or device number out of range", name);
  }
  if (typeflag == 'S') return BadNamed("entry \"" + name + "\": GNU sparse files are not supported", name);
  if (name.find('\0') != std::string::npos || linkname.find('\0') != std::string::npos) {
    return BadNamed("entry at offset " + Num(at) + ": a name holds a NUL byte", name);
  }
  e->name = std::move(name);
  e->linkname = std::move(linkname);
  e->type = type;
  e->typeflag = typeflag;
  e->mode = static_cast<uint32_t>(mode & 07777);
  e->uid = static_cast<uint32_t>(uid);
  e->gid = static_cast<uint32_t>(gid);
  e->mtime = mtime;
  e->mtime_nsec = pax_.mtime ? pax_.mtime_nsec : 0;
  e->xattrs = std::move(pax_.xattrs);
  e->size = HeaderOnly(type) ? 0 : size;
  e->devmajor = static_cast<uint32_t>(devmajor);
  e->devminor = static_cast<uint32_t>(devminor);
  has_long_name_ = has_long_link_ = false;
  long_name_.clear();
  long_link_.clear();
  pax_ = PaxFields{};
  return true;
}

bool TarParser::Meta() {
  switch (meta_kind_) {
    case 'L':
      long_name_ = CString(reinterpret_cast<const uint8_t*>(meta_.data()), meta_.size());
      has_long_name_ = true;
      return true;
    case 'K':
      long_link_ = CString(reinterpret_cast<const uint8_t*>(meta_.data()), meta_.size());
      has_long_link_ = true;
      return true;
    case 'x': return Pax(meta_);
    default:
      // 'g': global pax records (a comment, a charset) change nothing nsbox restores.
      return true;
  }
}

// Records are "<length> <key>=<value>\n", the length counting the whole record.
bool TarParser::Pax(const std::string& data) {
  std::string where = "pax header at offset " + Num(meta_offset_) + ": ";
  PaxFields out;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t space = data.find(' ', pos);
    if (space == std::string::npos) return Bad(where + "a record without a length");
    uint64_t len = 0;
    bool ok = AllDigits(data, pos, space);
    for (size_t i = pos; ok && i < space; i++) {
      len = len * 10 + static_cast<uint64_t>(data[i] - '0');
      if (len > data.size()) ok = false;
    }
    if (!ok || len <= space - pos || len > data.size() - pos || data[pos + len - 1] != '\n') {
      return Bad(where + "a malformed record at byte " + Num(static_cast<uint64_t>(pos)));
    }
    size_t end = pos + len - 1;
    size_t eq = data.find('=', space);
    if (eq == std::string::npos || eq >= end) return Bad(where + "a record without '=' at byte " + Num(static_cast<uint64_t>(pos)));
    std::string key = data.substr(space + 1, eq - space - 1);
    std::string value = data.substr(eq + 1, end - eq - 1);
    pos += len;
    if (StartsWith(key, "SCHILY.xattr.")) {
      // The value is bytes (a file capability is binary), kept as they are.
      out.xattrs.emplace_back(key.substr(13), std::move(value));
      continue;
    }
    if (key == "path") {
      out.path = true;
      out.path_value = std::move(value);
    } else if (key == "linkpath") {
      out.linkpath = true;
      out.linkpath_value = std::move(value);
    } else if (key == "size" || key == "uid" || key == "gid") {
      uint64_t n;
      if (!PaxInteger(value, &n)) return Bad(where + key + " \"" + value + "\"");
      if (key == "size") out.size = true, out.size_value = n;
      else if (key == "uid") out.uid = true, out.uid_value = n;
      else out.gid = true, out.gid_value = n;
    } else if (key == "mtime") {
      // [-]seconds[.fraction]; the fraction kept to the nanosecond (a double would round it),
      // the time stored as its floor plus the nanoseconds past it.
      bool negative = !value.empty() && value[0] == '-';
      size_t start = negative ? 1 : 0;
      size_t dot = value.find('.', start);
      size_t int_end = dot == std::string::npos ? value.size() : dot;
      bool ok_time = AllDigits(value, start, int_end) && (dot == std::string::npos || AllDigits(value, dot + 1, value.size()));
      uint64_t sec = 0;
      for (size_t i = start; ok_time && i < int_end; i++) {
        sec = sec * 10 + static_cast<uint64_t>(value[i] - '0');
        // Beyond any time a file system keeps (and what a 64-bit time holds).
        if (sec > kMaxSafe) ok_time = false;
      }
      if (!ok_time) return Bad(where + "mtime \"" + value + "\"");
      uint32_t nsec = 0;
      if (dot != std::string::npos) {
        for (size_t i = 0; i < 9; i++) {
          size_t k = dot + 1 + i;
          nsec = nsec * 10 + (k < value.size() ? static_cast<uint32_t>(value[k] - '0') : 0);
        }
      }
      int64_t s = static_cast<int64_t>(sec);
      if (negative) {
        s = -s;
        if (nsec) {
          s -= 1;
          nsec = 1000000000u - nsec;
        }
      }
      out.mtime = true;
      out.mtime_value = s;
      out.mtime_nsec = nsec;
    } else if (StartsWith(key, "GNU.sparse.")) {
      // Sparse files store their data in a layout this reader does not rebuild: extracting
      // them as plain files would silently corrupt them.
      return Bad(where + "GNU sparse files are not supported");
    }
  }
  pax_ = std::move(out);
  return true;
}

}  // namespace nsbox
