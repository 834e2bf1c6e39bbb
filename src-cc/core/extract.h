// The file system half of extracting a tarball: operations (make this file, write these
// bytes, make this directory, symlink, hardlink, set a directory's attributes) under a root
// directory fd, on whatever thread calls them. The tar parsing (core/tar.cc) and the policy
// (which names are allowed, which hardlink targets, which owners: core/tar_import.cc) call
// them directly; this file only executes them. Run() takes the same operations encoded, the
// form tests use to attack these checks with no policy in front of them.
//
// Nothing is ever reached through a symlink or outside the root: every parent directory is
// resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) from the root fd, and every
// entry is then made in its parent's fd by one path component, never following it
// (O_EXCL | O_NOFOLLOW, AT_SYMLINK_NOFOLLOW). What an earlier entry put at a name is removed
// (unlinked, or an empty directory removed) before a new entry takes the name.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <string>
#include <utility>
#include <vector>

namespace nsbox {

// The encoded operations (little-endian). Each is a 40-byte header, then `path` bytes,
// `link` bytes and `xattr_bytes` of extended attributes (u32 name length, u32 value length,
// name, value; repeated). test/extract-attacks.test.ts writes this layout.
enum ExtractOp : uint8_t {
  kOpFile = 1,      // create `path` (mode & 0777) and make it the current file
  kOpData = 2,      // write chunk number `path_len` (the header's field reused) to the current file
  kOpFileEnd = 3,   // owner, mode, extended attributes and times of the current file; close it
  kOpDir = 4,       // make the directory `path` (mode | 0700 while it is filled), or keep one there
  kOpSymlink = 5,   // the symlink `path` -> `link` (as stored), its owner and times
  kOpHardlink = 6,  // `path` as a hard link to `link`, a path under the root
  kOpDirAttrs = 7,  // owner, mode and times of the directory `path` ("" the root itself)
};
enum ExtractFlag : uint8_t {
  kFlagChown = 1,  // set the owner (uid, gid)
  kFlagChmod = 2,  // set the mode (files; directories compare their mode themselves)
};
constexpr size_t kExtractOpHeader = 40;

// Why an operation failed, beyond its errno.
enum ExtractFailure : int {
  kFailPlain = 0,
  kFailParentSymlink = 1,  // `at`: the parent prefix that is a symlink
  kFailParentNotDir = 2,   // `at`: the parent prefix that is not a directory
  kFailNotEmpty = 3,       // the entry would replace a directory that is not empty
  kFailXattr = 4,          // `at`: the attribute's name
  kFailBadBatch = 5,       // the encoding itself is wrong (a bug in the caller)
};

struct ExtractError {
  int err = 0;  // errno; 0 when the batch ran to its end
  const char* sys = "";
  int kind = kFailPlain;
  size_t op = 0;  // index of the failed operation in its batch
  std::string at;
};

// One operation, decoded.
struct ExtractStep {
  uint8_t kind = 0;
  uint8_t flags = 0;
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  struct timespec mtime = {0, 0};
  uint32_t chunk = 0;
  std::string path;
  std::string link;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

struct ExtractChunk {
  const uint8_t* data;
  size_t len;
};

class ExtractWriter {
 public:
  // `root_fd` stays the caller's: it is used, never closed.
  explicit ExtractWriter(int root_fd) : root_(root_fd) {}
  ~ExtractWriter() { Close(); }
  ExtractWriter(const ExtractWriter&) = delete;
  ExtractWriter& operator=(const ExtractWriter&) = delete;

  // Runs the operations in order and stops at the first failure. A file may span batches
  // (kOpFile in one, kOpData in the next ones, kOpFileEnd in the last).
  ExtractError Run(const uint8_t* ops, size_t len, const ExtractChunk* chunks, size_t nchunks);
  // Closes the current file (if a failure left one open) and the cached directory fds.
  void Close();

  // The operations one by one (what Run() decodes): the error's `op` is left 0.
  ExtractError File(const ExtractStep& op);
  ExtractError Data(const uint8_t* data, size_t len);
  ExtractError FileEnd();
  ExtractError Dir(const ExtractStep& op);
  ExtractError Symlink(const ExtractStep& op);
  ExtractError Hardlink(const ExtractStep& op);
  ExtractError DirAttrs(const ExtractStep& op);

 private:
  // The fd of `path`'s parent directory (borrowed from the cache) and its last component.
  ExtractError Parent(const std::string& path, int* fd, std::string* base);
  // Resolves a directory component by component, making missing ones (mode 0755).
  ExtractError Walk(const std::string& dir, int* fd);
  // Removes what is at `base` in `dirfd` (`path` under the root) so that a new entry can take it.
  ExtractError Replace(int dirfd, const std::string& base, const std::string& path);
  void Forget(const std::string& removed);

  int root_;
  // The current file and what kOpFileEnd applies to it.
  int file_fd_ = -1;
  uint8_t file_flags_ = 0;
  uid_t file_uid_ = 0;
  gid_t file_gid_ = 0;
  mode_t file_mode_ = 0;
  struct timespec file_mtime_ = {0, 0};
  std::vector<std::pair<std::string, std::string>> file_xattrs_;
  // Recently used parent directories (O_PATH fds), most recent first.
  std::vector<std::pair<std::string, int>> dirs_;
};

}  // namespace nsbox
