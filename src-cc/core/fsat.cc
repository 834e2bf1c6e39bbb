#include "core/fsat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <set>

namespace nsbox {
namespace {

FsError fail(const char* sys) { return FsError{errno, sys}; }
FsError fail(int err, const char* sys) { return FsError{err, sys}; }

// One path component: anything longer would be resolved by the kernel, symlinks and all.
bool is_component(const char* name) { return name[0] != '\0' && strchr(name, '/') == nullptr && strcmp(name, ".") != 0 && strcmp(name, "..") != 0; }

bool is_dot_or_dotdot(const char* name) { return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')); }

// Linux releases the fd even when close reports EINTR, so a failed close is never retried.
void close_fd(int fd) { close(fd); }

}  // namespace

FdResult open_dir_path(const char* path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return FdResult{-1, fail("open")};
  return FdResult{fd, {}};
}

FdResult open_dir_at(int dirfd, const char* name) {
  if (!is_component(name)) return FdResult{-1, fail(EINVAL, "openat")};
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return FdResult{-1, fail("openat")};
  return FdResult{fd, {}};
}

FdResult open_parent_dir(int dirfd) {
  int fd = openat(dirfd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return FdResult{-1, fail("openat ..")};
  return FdResult{fd, {}};
}

FdResult open_file_at(int dirfd, const char* name) {
  if (!is_component(name)) return FdResult{-1, fail(EINVAL, "openat")};
  // O_PATH first: opening a device node (a container may make them) can have effects, and
  // opening a fifo blocks. Only a regular file is then opened for reading, through its
  // /proc/self/fd link, which names that very inode whatever happens to `name` meanwhile.
  int path_fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (path_fd < 0) return FdResult{-1, fail("openat")};
  struct stat st;
  if (fstat(path_fd, &st) < 0) {
    FsError e = fail("fstat");
    close_fd(path_fd);
    return FdResult{-1, e};
  }
  if (!S_ISREG(st.st_mode)) {
    close_fd(path_fd);
    int err = S_ISLNK(st.st_mode) ? ELOOP : S_ISDIR(st.st_mode) ? EISDIR : ENXIO;
    return FdResult{-1, fail(err, "openat")};
  }
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", path_fd);
  int fd = open(link, O_RDONLY | O_NOCTTY | O_CLOEXEC);
  FsError e = fd < 0 ? fail("open /proc/self/fd") : FsError{};
  close_fd(path_fd);
  return FdResult{fd, e};
}

FdResult create_file_at(int dirfd, const char* name) {
  if (!is_component(name)) return FdResult{-1, fail(EINVAL, "openat")};
  int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return FdResult{-1, fail("openat")};
  return FdResult{fd, {}};
}

FsError list_dir(int dirfd, std::vector<DirEntry>* out) {
  if (lseek(dirfd, 0, SEEK_SET) < 0) return fail("lseek");
  alignas(struct dirent64) char buf[32768];
  for (;;) {
    ssize_t n = getdents64(dirfd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("getdents64");
    }
    if (n == 0) return {};
    for (ssize_t off = 0; off < n;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + off);
      off += d->d_reclen;
      if (is_dot_or_dotdot(d->d_name)) continue;
      DirEntry e;
      if (fstatat(dirfd, d->d_name, &e.st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) continue;
        return fail("fstatat");
      }
      e.name = d->d_name;
      out->push_back(std::move(e));
    }
  }
}

FsError stat_fd(int fd, struct stat* st) {
  if (fstat(fd, st) < 0) return fail("fstat");
  return {};
}

FsError read_link_at(int dirfd, const char* name, std::string* target) {
  if (!is_component(name)) return fail(EINVAL, "readlinkat");
  char buf[PATH_MAX];
  ssize_t n = readlinkat(dirfd, name, buf, sizeof buf);
  if (n < 0) return fail("readlinkat");
  // A target of PATH_MAX bytes or more cannot be made by symlink(): a full buffer means
  // the link changed under us into something longer than any real target.
  if (static_cast<size_t>(n) == sizeof buf) return fail(ENAMETOOLONG, "readlinkat");
  target->assign(buf, static_cast<size_t>(n));
  return {};
}

bool kept_xattr(const std::string& name) { return name.compare(0, 5, "user.") == 0 || name == "security.capability"; }

FsError list_xattrs_fd(int fd, std::vector<std::pair<std::string, std::string>>* out) {
  std::string names(4096, '\0');
  ssize_t n;
  for (;;) {
    n = flistxattr(fd, names.data(), names.size());
    if (n >= 0) break;
    if (errno == ENOTSUP) return {};
    if (errno != ERANGE || names.size() >= (1u << 20)) return fail("flistxattr");
    names.resize(names.size() * 4);
  }
  for (size_t at = 0; at < static_cast<size_t>(n);) {
    std::string name(names.data() + at);
    at += name.size() + 1;
    if (!kept_xattr(name)) continue;
    std::string value(256, '\0');
    ssize_t v;
    for (;;) {
      v = fgetxattr(fd, name.c_str(), value.data(), value.size());
      if (v >= 0) break;
      if (errno == ENODATA) break;  // removed meanwhile
      if (errno != ERANGE || value.size() >= (1u << 20)) return fail("fgetxattr");
      value.resize(value.size() * 16);
    }
    if (v < 0) continue;
    value.resize(static_cast<size_t>(v));
    out->emplace_back(std::move(name), std::move(value));
  }
  return {};
}

FsError set_xattr_fd(int fd, const char* name, const std::string& value) {
  if (fsetxattr(fd, name, value.data(), value.size(), 0) < 0) return fail("fsetxattr");
  return {};
}

FsError set_times_fd(int fd, const struct timespec& atime, const struct timespec& mtime) {
  struct timespec times[2] = {atime, mtime};
  if (futimens(fd, times) < 0) return fail("futimens");
  return {};
}

FsError get_xattr_fd(int fd, const char* name, std::string* value, bool* found) {
  char buf[256];
  ssize_t n = fgetxattr(fd, name, buf, sizeof buf);
  if (n < 0) {
    if (errno == ENODATA || errno == ENOTSUP) {
      *found = false;
      return {};
    }
    return fail("fgetxattr");
  }
  *found = true;
  value->assign(buf, static_cast<size_t>(n));
  return {};
}

FsError make_dir_at(int dirfd, const char* name, mode_t mode) {
  if (!is_component(name)) return fail(EINVAL, "mkdirat");
  if (mkdirat(dirfd, name, mode) < 0) return fail("mkdirat");
  return {};
}

FsError link_at(int from_dir, const char* from, int to_dir, const char* to) {
  if (!is_component(from) || !is_component(to)) return fail(EINVAL, "linkat");
  if (linkat(from_dir, from, to_dir, to, 0) < 0) return fail("linkat");
  return {};
}

FsError symlink_at(const char* target, int dirfd, const char* name) {
  if (!is_component(name)) return fail(EINVAL, "symlinkat");
  if (symlinkat(target, dirfd, name) < 0) return fail("symlinkat");
  return {};
}

FsError set_attrs_fd(int fd, const Attrs& a) {
  if (fchown(fd, a.uid, a.gid) < 0) return fail("fchown");
  if (fchmod(fd, a.mode & 07777) < 0) return fail("fchmod");
  struct timespec times[2] = {a.atime, a.mtime};
  if (futimens(fd, times) < 0) return fail("futimens");
  return {};
}

FsError set_link_attrs_at(int dirfd, const char* name, const Attrs& a) {
  if (!is_component(name)) return fail(EINVAL, "fchownat");
  if (fchownat(dirfd, name, a.uid, a.gid, AT_SYMLINK_NOFOLLOW) < 0) return fail("fchownat");
  struct timespec times[2] = {a.atime, a.mtime};
  if (utimensat(dirfd, name, times, AT_SYMLINK_NOFOLLOW) < 0) return fail("utimensat");
  return {};
}

FsError copy_data(int from, int to, uint64_t limit, uint64_t* copied) {
  *copied = 0;
  // In the kernel (a reflink or a server-side copy where the file system has one) first.
  while (*copied < limit) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(limit - *copied, 1u << 30));
    ssize_t n = copy_file_range(from, nullptr, to, nullptr, want, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) break;
      return fail("copy_file_range");
    }
    if (n == 0) return {};
    *copied += static_cast<uint64_t>(n);
  }
  char buf[65536];
  while (*copied < limit) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(limit - *copied, sizeof buf));
    ssize_t n = read(from, buf, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("read");
    }
    if (n == 0) return {};
    for (ssize_t done = 0; done < n;) {
      ssize_t w = write(to, buf + done, static_cast<size_t>(n - done));
      if (w < 0) {
        if (errno == EINTR) continue;
        return fail("write");
      }
      done += w;
    }
    *copied += static_cast<uint64_t>(n);
  }
  return {};
}

// ---------------------------------------------------------------------------------------
// remove_tree

namespace {

// Directory levels whose fd stays open below the current one; above that, a level's fd is
// closed and reopened through ".." of its child on the way back up (identity checked).
constexpr size_t kOpenLevels = 32;

struct Level {
  int fd = -1;
  std::string name;  // in its parent
  dev_t dev = 0;
  ino_t ino = 0;
  // Subdirectories still to remove, and names that could not be removed (never retried).
  std::vector<std::string> pending;
  std::set<std::string> skip;
};

// The mount an fd is on (statx's mount id where the kernel has it, else its device).
uint64_t mount_of(int fd, const struct stat& st) {
  struct statx sx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) == 0 && (sx.stx_mask & STATX_MNT_ID)) {
    return sx.stx_mnt_id;
  }
  return static_cast<uint64_t>(st.st_dev);
}

class TreeRemover {
 public:
  TreeRemover(std::string* where) : where_(where) {}

  ~TreeRemover() {
    for (Level& l : levels_) {
      if (l.fd >= 0) close_fd(l.fd);
    }
  }

  FsError Run(const char* path) {
    struct stat st;
    if (lstat(path, &st) < 0) return fail("lstat");
    if (!S_ISDIR(st.st_mode)) {
      if (unlink(path) < 0) return fail("unlink");
      return {};
    }
    FdResult root = open_dir_path(path);
    if (root.fd < 0) return root.error;
    Level top;
    top.fd = root.fd;
    if (fstat(top.fd, &st) < 0) {
      FsError e = fail("fstat");
      close_fd(top.fd);
      return e;
    }
    top.dev = st.st_dev;
    top.ino = st.st_ino;
    mount_ = mount_of(top.fd, st);
    levels_.push_back(std::move(top));
    // `path` itself a mount point: its contents belong to that mount, not to the tree.
    int parent = openat(levels_[0].fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (parent < 0) return fail("openat ..");
    struct stat pst;
    bool other = fstat(parent, &pst) < 0 || mount_of(parent, pst) != mount_;
    close_fd(parent);
    if (other) return fail(EBUSY, "remove: a mount point");

    while (!levels_.empty()) {
      Level& l = levels_.back();
      if (l.pending.empty()) {
        FsError e = Scan(l);
        if (e.err) return e;  // the tree changed under us: stop, as nothing is sure now
      }
      if (levels_.back().pending.empty()) {
        FsError e = Leave(path);
        if (e.err) return e;
        continue;
      }
      std::string name = std::move(levels_.back().pending.back());
      levels_.back().pending.pop_back();
      Enter(name);
    }
    return first_;
  }

 private:
  // Reads the directory from its start: removes what is not a directory, queues subdirectories.
  FsError Scan(Level& l) {
    if (lseek(l.fd, 0, SEEK_SET) < 0) return fail("lseek");
    alignas(struct dirent64) char buf[16384];
    for (;;) {
      ssize_t n = getdents64(l.fd, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        Note(fail("getdents64"), "");
        return {};
      }
      if (n == 0) return {};
      for (ssize_t off = 0; off < n;) {
        auto* d = reinterpret_cast<struct dirent64*>(buf + off);
        off += d->d_reclen;
        if (is_dot_or_dotdot(d->d_name) || l.skip.count(d->d_name)) continue;
        if (d->d_type == DT_DIR) {
          l.pending.push_back(d->d_name);
          continue;
        }
        if (unlinkat(l.fd, d->d_name, 0) == 0 || errno == ENOENT) continue;
        if (errno == EISDIR) {
          l.pending.push_back(d->d_name);
          continue;
        }
        Note(fail("unlinkat"), d->d_name);
        l.skip.insert(d->d_name);
      }
    }
  }

  // A directory of ours we may not read: overlay's workdir/work is made mode 000, which only
  // root's CAP_DAC_OVERRIDE passes. Rootless, the owner gives itself read and search first,
  // through an O_PATH fd of that very directory (never by a name a swap could redirect).
  int OpenOwnLocked(int parent_fd, const char* name) {
    int pfd = openat(parent_fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0) return -1;
    struct stat st;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
    int fd = -1;
    if (fstat(pfd, &st) == 0 && st.st_uid == geteuid() && chmod(proc, 0700) == 0) fd = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int saved = errno;
    close_fd(pfd);
    errno = fd < 0 ? saved : 0;
    return fd;
  }

  void Enter(const std::string& name) {
    Level& parent = levels_.back();
    int fd = openat(parent.fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES && geteuid() != 0) fd = OpenOwnLocked(parent.fd, name.c_str());
    if (fd < 0) {
      // Turned into something else since the scan: it is removed as what it is now.
      if ((errno == ENOTDIR || errno == ELOOP) && unlinkat(parent.fd, name.c_str(), 0) == 0) return;
      if (errno == ENOENT) return;
      Note(fail("openat"), name);
      parent.skip.insert(name);
      return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || mount_of(fd, st) != mount_ || st.st_dev != parent.dev) {
      // A mount point: whatever is mounted there is not ours to delete.
      close_fd(fd);
      Note(fail(EBUSY, "remove: a mount point"), name);
      parent.skip.insert(name);
      return;
    }
    Level child;
    child.fd = fd;
    child.name = name;
    child.dev = st.st_dev;
    child.ino = st.st_ino;
    levels_.push_back(std::move(child));
    if (levels_.size() > kOpenLevels + 1) {
      Level& far = levels_[levels_.size() - kOpenLevels - 1];
      if (far.fd >= 0) {
        close_fd(far.fd);
        far.fd = -1;
      }
    }
  }

  // The top level is empty (or holds only what could not be removed): remove it, go up.
  FsError Leave(const char* path) {
    Level done = std::move(levels_.back());
    levels_.pop_back();
    if (levels_.empty()) {
      close_fd(done.fd);
      if (rmdir(path) < 0) Note(fail("rmdir"), "");
      return {};
    }
    Level& parent = levels_.back();
    if (parent.fd < 0) {
      int fd = open_parent_dir(done.fd).fd;
      struct stat st;
      if (fd < 0 || fstat(fd, &st) < 0 || st.st_dev != parent.dev || st.st_ino != parent.ino) {
        if (fd >= 0) close_fd(fd);
        close_fd(done.fd);
        return fail(ESTALE, "remove: the tree moved");
      }
      parent.fd = fd;
    }
    close_fd(done.fd);
    if (unlinkat(parent.fd, done.name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT) {
      Note(fail("unlinkat"), done.name);
      parent.skip.insert(done.name);
    }
    return {};
  }

  // Keeps the first failure, with where it happened.
  void Note(FsError e, const std::string& name) {
    if (first_.err) return;
    first_ = e;
    std::string rel;
    for (size_t i = 1; i < levels_.size(); i++) rel += levels_[i].name + "/";
    rel += name;
    *where_ = rel;
  }

  std::vector<Level> levels_;
  uint64_t mount_ = 0;
  FsError first_;
  std::string* where_;
};

}  // namespace

FsError write_file(const char* path, const std::string& data, int flags, mode_t mode, bool set_mode) {
  int fd = open(path, flags | O_CLOEXEC, mode);
  if (fd < 0) return {errno, "open"};
  FsError e{};
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      e = {n < 0 ? errno : EIO, "write"};
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (!e.err && set_mode && fchmod(fd, mode) < 0) e = {errno, "fchmod"};
  if (close(fd) < 0 && !e.err && errno != EINTR) e = {errno, "close"};
  return e;
}

FsError remove_tree(const char* path, std::string* where) {
  where->clear();
  TreeRemover remover(where);
  return remover.Run(path);
}

// ---------------------------------------------------------------------------------------
// Container roots (cp)

FdResult open_in_root(int rootfd, const char* path, int flags) {
  if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) return FdResult{-1, fail(EINVAL, "openat2")};
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  // EAGAIN: a rename or mount elsewhere raced the lookup of ".."; the kernel refuses rather
  // than risk an escape. A container renaming in a loop could keep that up: a bounded retry.
  for (int attempt = 0;; attempt++) {
    int fd = static_cast<int>(syscall(SYS_openat2, rootfd, path[0] ? path : ".", &how, sizeof how));
    if (fd >= 0) return FdResult{fd, {}};
    if ((errno != EAGAIN && errno != EINTR) || attempt >= 64) return FdResult{-1, fail("openat2")};
  }
}

FsError stat_at(int dirfd, const char* name, struct stat* st) {
  if (!is_component(name)) return fail(EINVAL, "fstatat");
  if (fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) < 0) return fail("fstatat");
  return {};
}

FsError unlink_at(int dirfd, const char* name, bool dir) {
  if (!is_component(name)) return fail(EINVAL, "unlinkat");
  if (unlinkat(dirfd, name, dir ? AT_REMOVEDIR : 0) < 0) return fail("unlinkat");
  return {};
}

FdResult mount_overlay_fd(const std::string& lowerdir, const std::string& upper, const std::string& work, unsigned attrs) {
  int fsfd = static_cast<int>(syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC));
  if (fsfd < 0) return FdResult{-1, fail("fsopen")};
  auto set = [&](const char* key, const std::string& value) { return syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, key, value.c_str(), 0) == 0; };
  bool ok = set("lowerdir", lowerdir);
  if (!upper.empty()) ok = ok && set("upperdir", upper) && set("workdir", work);
  if (!ok || syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    FsError e = fail("fsconfig");
    close_fd(fsfd);
    return FdResult{-1, e};
  }
  int mfd = static_cast<int>(syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, attrs));
  FsError e = mfd < 0 ? fail("fsmount") : FsError{};
  close_fd(fsfd);
  return FdResult{mfd, e};
}

}  // namespace nsbox
