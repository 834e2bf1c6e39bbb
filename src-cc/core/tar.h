// The tar format as images and commits use it, read: ustar and old GNU headers, GNU long
// names ('L' name, 'K' link name), pax extended headers ('x': path, linkpath, size, uid, gid,
// mtime with nanoseconds, SCHILY.xattr.*); pax global headers ('g') are read and ignored;
// numbers in octal or GNU base-256. No file system access and no allocation beyond the
// current entry's names and metadata: this is the part hostile bytes reach first, so every
// length is checked against what was read, and it is built on its own for fuzzing
// (scripts/fuzz-tar.sh).
//
// Push parser: Write() takes the stream in pieces of any size and calls a sink in stream
// order (entry, its data in one or more pieces, entry end). Data is passed as pointers into
// the piece given to Write(), never copied. One parser serves both users: the import
// (core/tar_import.cc, on a pool thread) and cp's TypeScript TarReader (binding/tar.cc).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <utility>
#include <vector>

namespace nsbox {

constexpr size_t kTarBlock = 512;

enum class TarType : uint8_t { kFile, kHardlink, kSymlink, kChar, kBlock, kDirectory, kFifo, kOther };

struct TarEntry {
  // As stored (after long-name and pax records): not normalised, may be absolute or hold "..".
  std::string name;
  // Target of a symlink or hardlink, "" otherwise.
  std::string linkname;
  TarType type = TarType::kOther;
  // The raw type flag ('0', '5', ...).
  char typeflag = 0;
  // Permission bits with setuid, setgid and sticky (mode & 07777).
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  // Bytes of content after the header; 0 for types that have none.
  uint64_t size = 0;
  // Whole seconds (the floor of a pax time) and the nanoseconds past them.
  int64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  uint32_t devmajor = 0;
  uint32_t devminor = 0;
  // From pax SCHILY.xattr.* records: name, value bytes.
  std::vector<std::pair<std::string, std::string>> xattrs;
};

// A refusal: `code` an NsboxError code ("BAD_ARCHIVE", "UNSAFE_PATH"), `message` complete.
struct TarError {
  std::string code;
  std::string message;
  std::string path;
  bool has_path = false;
};

class TarSink {
 public:
  virtual ~TarSink() = default;
  // Each returns false to stop the parse, with its reason in *error.
  virtual bool OnEntry(const TarEntry& entry, TarError* error) = 0;
  virtual bool OnData(const uint8_t* data, size_t len, TarError* error) = 0;
  virtual bool OnEntryEnd(TarError* error) = 0;
};

class TarParser {
 public:
  // `label` starts error messages ("import: /path/to/image.tar").
  explicit TarParser(std::string label) : label_(std::move(label)) {}

  // Consumes `len` bytes. False on a damaged archive or when the sink stopped; error() says
  // why, and the parser must not be used again.
  bool Write(const uint8_t* data, size_t len, TarSink* sink);
  // At the end of input: false (error()) when the stream stopped before its end-of-archive block.
  bool End();

  // True once the end-of-archive block was read; later input is ignored.
  bool finished() const { return state_ == State::kEnd; }
  // Bytes consumed so far, and the last entry's name ("" before the first).
  uint64_t position() const { return offset_ + header_fill_; }
  const std::string& last_name() const { return last_name_; }
  const TarError& error() const { return error_; }

 private:
  enum class State : uint8_t { kHeader, kData, kMeta, kPadding, kEnd };
  bool Header(const uint8_t* block, TarSink* sink);
  bool Entry(const uint8_t* block, char typeflag, uint64_t size, uint64_t at, TarEntry* out);
  bool Meta();
  bool Pax(const std::string& data);
  bool Bad(const std::string& why);
  bool BadNamed(const std::string& why, const std::string& name);
  std::string After() const;

  std::string label_;
  State state_ = State::kHeader;
  uint8_t header_[kTarBlock];
  size_t header_fill_ = 0;
  uint64_t remaining_ = 0;
  uint64_t padding_ = 0;
  uint64_t offset_ = 0;
  char meta_kind_ = 0;
  uint64_t meta_offset_ = 0;
  std::string meta_;
  bool has_long_name_ = false, has_long_link_ = false;
  std::string long_name_, long_link_;
  // What the last 'x' header set for the next entry.
  struct PaxFields {
    bool path = false, linkpath = false, size = false, uid = false, gid = false, mtime = false;
    std::string path_value, linkpath_value;
    uint64_t size_value = 0, uid_value = 0, gid_value = 0;
    int64_t mtime_value = 0;
    uint32_t mtime_nsec = 0;
    std::vector<std::pair<std::string, std::string>> xattrs;
  } pax_;
  std::string last_name_;
  TarEntry entry_;
  TarError error_;
};

// A numeric header field: octal digits (leading spaces, then up to a NUL or space), or GNU
// base-256 (first byte 0x80 positive, 0xff negative). False when malformed or beyond 2^53 - 1
// in magnitude (what the TypeScript side can hold exactly).
bool TarNumber(const uint8_t* field, size_t len, int64_t* value);

}  // namespace nsbox
