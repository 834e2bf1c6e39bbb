// An image import in one call: the tarball read once (pread into a ring of buffers), each
// buffer hashed (SHA-256) on a thread of its own while the calling thread inflates it (gzip),
// parses it (core/tar.cc), applies the policy below and writes the entries (core/extract.cc).
// Meant to run on one of libuv's pool threads (binding/tar.cc): the JS thread only waits.
//
// The policy, the only one: names made relative (leading '/' and './' dropped, '.' and empty
// components dropped, '..' refused), hardlinks only to regular files this archive extracted,
// owners set when they differ from the extractor's (all squashed to it when it is not root),
// modes set when the umask or a chown would change them, extended attributes kept only for
// user.* (not user.overlay.*) and security.capability, devices and fifos skipped, a
// directory's owner, mode and times set once everything is in it (deepest first).
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <atomic>
#include <string>

#include "core/extract.h"
#include "core/tar.h"

namespace nsbox {

struct ImportOptions {
  // The tarball's path, for messages.
  std::string tarball;
  // Starts messages about the archive ("import: /x.tar") and about entries ("import").
  std::string label;
  std::string what;
  // The process umask (modes it would change are set explicitly).
  mode_t umask = 0777;
  // The root directory is setgid: new entries get its group, so every owner is set.
  bool always_chown = false;
};

struct ImportResult {
  uint64_t entries = 0;
  uint64_t bytes = 0;
  uint64_t skipped = 0;
  uint64_t skipped_xattrs = 0;
  uint64_t owners_squashed = 0;
  // Lowercase hex SHA-256 of every byte read from the tarball.
  std::string digest;
  // Why it failed, at most one of: the archive or an entry refused (code set); a file system
  // step for `write_entry` failed (err set); reading the tarball failed (read_errno set).
  TarError refused;
  ExtractError write;
  std::string write_entry;
  int read_errno = 0;
  bool failed() const { return !refused.code.empty() || write.err != 0 || read_errno != 0; }
};

// Imports the tarball open at `tar_fd` (read from offset 0) under the directory `root_fd`.
// Neither fd is closed. `consumed`: bytes of the tarball read so far, for progress reports.
ImportResult ImportTarball(int tar_fd, int root_fd, const ImportOptions& options, std::atomic<uint64_t>* consumed);

}  // namespace nsbox
