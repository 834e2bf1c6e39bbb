// File system calls relative to directory fds, never following a symlink: what a commit
// needs to read a container's layers while the container may be changing them, and to build
// the new image's tree, and what removing a container's directory needs. Every name is one
// path component (no '/', not "." or ".."): a longer path would be resolved by the kernel,
// following whatever symlinks its directories hold. Every fd is O_CLOEXEC.
#pragma once

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <string>
#include <vector>

namespace nsbox {

struct FsError {
  int err = 0;  // errno, 0 on success
  const char* sys = "";
};

struct FdResult {
  int fd = -1;
  FsError error;
};

struct DirEntry {
  std::string name;  // the bytes on disk
  struct stat st;    // lstat
};

// Opens a directory by path; a symlink as the last component is refused (ELOOP).
FdResult open_dir_path(const char* path);
// Opens the directory `name` in `dirfd`; a symlink is refused (ELOOP), a non-directory ENOTDIR.
FdResult open_dir_at(int dirfd, const char* name);
// Opens the parent ("..") of an open directory: the way back up to a level whose fd was closed.
FdResult open_parent_dir(int dirfd);
// Opens the regular file `name` in `dirfd` for reading. Whatever else it is (a symlink, a
// device, a fifo) is never opened: ELOOP for a symlink, EISDIR, ENXIO for the rest.
FdResult open_file_at(int dirfd, const char* name);
// Creates the regular file `name` in `dirfd` (it must not exist), mode 0600, for writing.
FdResult create_file_at(int dirfd, const char* name);

// Every entry of the directory but "." and "..", with its lstat. An entry gone between the
// listing and its lstat is left out (a running container removed it).
FsError list_dir(int dirfd, std::vector<DirEntry>* out);
FsError stat_fd(int fd, struct stat* st);
FsError read_link_at(int dirfd, const char* name, std::string* target);
// *found is false when the attribute is not set.
FsError get_xattr_fd(int fd, const char* name, std::string* value, bool* found);
// Every extended attribute of an open file worth keeping in an image: user.* and
// security.capability (file capabilities). Overlay's own trusted.overlay.* never are.
FsError list_xattrs_fd(int fd, std::vector<std::pair<std::string, std::string>>* out);
FsError set_xattr_fd(int fd, const char* name, const std::string& value);
// Access and modification times, to the nanosecond.
FsError set_times_fd(int fd, const struct timespec& atime, const struct timespec& mtime);

FsError make_dir_at(int dirfd, const char* name, mode_t mode);
// A hard link; `from` is never followed, even if it is a symlink.
FsError link_at(int from_dir, const char* from, int to_dir, const char* to);
FsError symlink_at(const char* target, int dirfd, const char* name);

struct Attrs {
  uid_t uid;
  gid_t gid;
  mode_t mode;  // permission bits with setuid, setgid, sticky
  struct timespec atime;
  struct timespec mtime;
};
// Owner, then mode (chown clears setuid/setgid), then times, of an open file or directory.
FsError set_attrs_fd(int fd, const Attrs& a);
// Owner and times of the symlink `name` itself (symlinks have no mode of their own).
FsError set_link_attrs_at(int dirfd, const char* name, const Attrs& a);
// Copies at most `limit` bytes from the start of `from` to `to`, less at end of file.
FsError copy_data(int from, int to, uint64_t limit, uint64_t* copied);

// Removes the directory `path` and everything in it, from directory fds, never following a
// symlink and never entering another mount (EBUSY; that mount point and its parents stay).
// The walk is iterative and keeps a bounded number of fds open, whatever the depth. It goes
// on past an entry it cannot remove and reports the first failure, with `where` the path
// (relative to `path`) it happened at. ENOENT when `path` does not exist; a path that is
// not a directory is unlinked.
FsError remove_tree(const char* path, std::string* where);

// Creates or truncates `path` (open flags `flags`, close-on-exec added; `mode` for a new file,
// and set with fchmod when `set_mode`, whatever the umask), writes `data` whole and closes
// it: one call, so that no fd of it is ever held between two turns of an event loop (a worker
// ended in between would leak it).
FsError write_file(const char* path, const std::string& data, int flags, mode_t mode, bool set_mode);

// ---- Container roots (cp) ----

// Opens `path` beneath `rootfd` as if `rootfd` were "/": openat2 with RESOLVE_IN_ROOT |
// RESOLVE_NO_MAGICLINKS, so that no symlink, "..", or /proc magic link resolves outside it,
// however the tree changes meanwhile (the kernel retries or fails with EAGAIN, retried here a
// few times). `flags` are open flags (O_PATH, O_DIRECTORY, O_NOFOLLOW for the last component);
// O_CLOEXEC is added, O_CREAT refused (EINVAL).
FdResult open_in_root(int rootfd, const char* path, int flags);
// The lstat of `name` in `dirfd` (one component, never followed).
FsError stat_at(int dirfd, const char* name, struct stat* st);
// Removes `name` from `dirfd`: a directory (empty) when `dir`, anything else otherwise.
FsError unlink_at(int dirfd, const char* name, bool dir);
// An overlay of the given layers mounted nowhere: the fd of a detached mount's root, which
// no other process can reach and which the kernel takes down when the last fd to it closes
// (also when this process dies). For reading and writing a stopped container's root without
// a mount on the host (nosuid, nodev, noexec there).
// `lowerdir` comes escaped (src/plan.ts overlayLowerdir: the one place that escapes it);
// `attrs` are MOUNT_ATTR_* (hostmount.cc's mount_overlay shares this sequence).
FdResult mount_overlay_fd(const std::string& lowerdir, const std::string& upper, const std::string& work, unsigned attrs);

}  // namespace nsbox
