#include "core/extract.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace nsbox {

namespace {

// Parent directories in the cache: tar lists a directory's entries together, and a few
// more cover the step back up after a subdirectory.
constexpr size_t kCachedDirs = 8;
constexpr uint64_t kBeneath = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

int openat2_beneath(int dirfd, const char* path, uint64_t flags) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = flags | O_CLOEXEC;
  how.resolve = kBeneath;
  for (;;) {
    int fd = static_cast<int>(syscall(SYS_openat2, dirfd, path, &how, sizeof how));
    // EAGAIN: a rename somewhere on the system raced the lookup; the kernel asks for a retry.
    if (fd >= 0 || (errno != EINTR && errno != EAGAIN)) return fd;
  }
}

ExtractError fail(const char* sys, int kind = kFailPlain, std::string at = {}) {
  ExtractError e;
  e.err = errno;
  e.sys = sys;
  e.kind = kind;
  e.at = std::move(at);
  return e;
}

ExtractError fail(int err, const char* sys, int kind = kFailPlain) {
  errno = err;
  return fail(sys, kind);
}

// A name TypeScript made relative: components separated by single '/', none empty, "." or
// "..", no NUL byte. Checked again here: a ".." given to mkdirat in a parent fd would leave it.
bool is_relative_path(const std::string& p) {
  if (p.empty() || p.find('\0') != std::string::npos) return false;
  size_t start = 0;
  for (;;) {
    size_t end = p.find('/', start);
    size_t len = (end == std::string::npos ? p.size() : end) - start;
    if (len == 0) return false;
    if (p[start] == '.' && (len == 1 || (len == 2 && p[start + 1] == '.'))) return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

uint32_t u32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

ExtractError ExtractWriter::Run(const uint8_t* ops, size_t len, const ExtractChunk* chunks, size_t nchunks) {
  size_t at = 0;
  for (size_t index = 0; at < len; index++) {
    ExtractError e;
    if (len - at < kExtractOpHeader) {
      e = fail(EINVAL, "decode", kFailBadBatch);
      e.op = index;
      return e;
    }
    const uint8_t* h = ops + at;
    ExtractStep op;
    op.kind = h[0];
    op.flags = h[1];
    uint16_t nxattrs;
    memcpy(&nxattrs, h + 2, sizeof nxattrs);
    op.mode = static_cast<mode_t>(u32(h + 4));
    op.uid = static_cast<uid_t>(u32(h + 8));
    op.gid = static_cast<gid_t>(u32(h + 12));
    double sec;
    memcpy(&sec, h + 16, sizeof sec);
    op.mtime.tv_sec = static_cast<time_t>(sec);
    op.mtime.tv_nsec = static_cast<long>(u32(h + 24));
    uint32_t path_len = u32(h + 28), link_len = u32(h + 32), xattr_bytes = u32(h + 36);
    at += kExtractOpHeader;
    if (op.kind == kOpData) {
      op.chunk = path_len;
      path_len = 0;
    }
    if (len - at < static_cast<size_t>(path_len) + link_len + xattr_bytes) {
      e = fail(EINVAL, "decode", kFailBadBatch);
      e.op = index;
      return e;
    }
    op.path.assign(reinterpret_cast<const char*>(ops + at), path_len);
    at += path_len;
    op.link.assign(reinterpret_cast<const char*>(ops + at), link_len);
    at += link_len;
    const uint8_t* x = ops + at;
    const uint8_t* x_end = x + xattr_bytes;
    at += xattr_bytes;
    for (uint16_t i = 0; i < nxattrs; i++) {
      if (x_end - x < 8) break;
      uint32_t nl = u32(x), vl = u32(x + 4);
      x += 8;
      if (static_cast<size_t>(x_end - x) < static_cast<size_t>(nl) + vl) break;
      op.xattrs.emplace_back(std::string(reinterpret_cast<const char*>(x), nl), std::string(reinterpret_cast<const char*>(x + nl), vl));
      x += nl + vl;
    }
    if (op.xattrs.size() != nxattrs) {
      e = fail(EINVAL, "decode", kFailBadBatch);
      e.op = index;
      return e;
    }

    switch (op.kind) {
      case kOpFile: e = File(op); break;
      case kOpData: {
        if (file_fd_ < 0 || op.chunk >= nchunks) {
          e = fail(EINVAL, "decode", kFailBadBatch);
          break;
        }
        e = Data(chunks[op.chunk].data, chunks[op.chunk].len);
        break;
      }
      case kOpFileEnd: e = FileEnd(); break;
      case kOpDir: e = Dir(op); break;
      case kOpSymlink: e = Symlink(op); break;
      case kOpHardlink: e = Hardlink(op); break;
      case kOpDirAttrs: e = DirAttrs(op); break;
      default: e = fail(EINVAL, "decode", kFailBadBatch);
    }
    if (e.err) {
      e.op = index;
      return e;
    }
  }
  return {};
}

void ExtractWriter::Close() {
  if (file_fd_ >= 0) close(file_fd_);
  file_fd_ = -1;
  for (auto& d : dirs_) close(d.second);
  dirs_.clear();
}

ExtractError ExtractWriter::File(const ExtractStep& op) {
  if (file_fd_ >= 0) return fail(EINVAL, "decode", kFailBadBatch);
  int dirfd;
  std::string base;
  ExtractError e = Parent(op.path, &dirfd, &base);
  if (e.err) return e;
  constexpr int kCreate = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = openat(dirfd, base.c_str(), kCreate, op.mode & 0777);
  if (fd < 0 && errno == EEXIST) {
    e = Replace(dirfd, base, op.path);
    if (e.err) return e;
    fd = openat(dirfd, base.c_str(), kCreate, op.mode & 0777);
  }
  if (fd < 0) return fail("openat");
  file_fd_ = fd;
  file_flags_ = op.flags;
  file_uid_ = op.uid;
  file_gid_ = op.gid;
  file_mode_ = op.mode;
  file_mtime_ = op.mtime;
  file_xattrs_ = op.xattrs;
  return {};
}

ExtractError ExtractWriter::Data(const uint8_t* p, size_t left) {
  if (file_fd_ < 0) return fail(EINVAL, "decode", kFailBadBatch);
  while (left > 0) {
    ssize_t n = write(file_fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return {};
}

ExtractError ExtractWriter::FileEnd() {
  if (file_fd_ < 0) return fail(EINVAL, "decode", kFailBadBatch);
  int fd = file_fd_;
  file_fd_ = -1;
  ExtractError e;
  // chown clears setuid, setgid and a file capability: the mode and attributes come after.
  if ((file_flags_ & kFlagChown) && fchown(fd, file_uid_, file_gid_) < 0) e = fail("fchown");
  if (!e.err && (file_flags_ & kFlagChmod) && fchmod(fd, file_mode_ & 07777) < 0) e = fail("fchmod");
  for (size_t i = 0; !e.err && i < file_xattrs_.size(); i++) {
    const auto& [name, value] = file_xattrs_[i];
    if (fsetxattr(fd, name.c_str(), value.data(), value.size(), 0) < 0) e = fail("fsetxattr", kFailXattr, name);
  }
  struct timespec times[2] = {file_mtime_, file_mtime_};
  if (!e.err && futimens(fd, times) < 0) e = fail("futimens");
  close(fd);
  return e;
}

ExtractError ExtractWriter::Dir(const ExtractStep& op) {
  int dirfd;
  std::string base;
  ExtractError e = Parent(op.path, &dirfd, &base);
  if (e.err) return e;
  // The owner can always fill it; its own mode comes last (kOpDirAttrs).
  mode_t mode = (op.mode | 0700) & 0777;
  if (mkdirat(dirfd, base.c_str(), mode) == 0) return {};
  if (errno != EEXIST) return fail("mkdirat");
  struct stat st;
  if (fstatat(dirfd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return fail("fstatat");
  if (S_ISDIR(st.st_mode)) return {};
  e = Replace(dirfd, base, op.path);
  if (e.err) return e;
  if (mkdirat(dirfd, base.c_str(), mode) < 0) return fail("mkdirat");
  return {};
}

ExtractError ExtractWriter::Symlink(const ExtractStep& op) {
  if (op.link.find('\0') != std::string::npos) return fail(EINVAL, "symlinkat");
  int dirfd;
  std::string base;
  ExtractError e = Parent(op.path, &dirfd, &base);
  if (e.err) return e;
  // The target is kept as stored, absolute or not: it is resolved inside the container.
  if (symlinkat(op.link.c_str(), dirfd, base.c_str()) < 0) {
    if (errno != EEXIST) return fail("symlinkat");
    e = Replace(dirfd, base, op.path);
    if (e.err) return e;
    if (symlinkat(op.link.c_str(), dirfd, base.c_str()) < 0) return fail("symlinkat");
  }
  if ((op.flags & kFlagChown) && fchownat(dirfd, base.c_str(), op.uid, op.gid, AT_SYMLINK_NOFOLLOW) < 0) {
    return fail("fchownat");
  }
  struct timespec times[2] = {op.mtime, op.mtime};
  if (utimensat(dirfd, base.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0) return fail("utimensat");
  return {};
}

ExtractError ExtractWriter::Hardlink(const ExtractStep& op) {
  // The target's parent is resolved like any other (beneath the root, no symlinks), and its
  // last component is never followed (linkat without AT_SYMLINK_FOLLOW).
  int from_dir;
  std::string from;
  ExtractError e = Parent(op.link, &from_dir, &from);
  if (e.err) return e;
  int to_dir;
  std::string to;
  e = Parent(op.path, &to_dir, &to);
  if (e.err) return e;
  // The two may share a cache slot; a second lookup never closes the first (see Parent).
  if (linkat(from_dir, from.c_str(), to_dir, to.c_str(), 0) == 0) return {};
  if (errno != EEXIST) return fail("linkat");
  e = Replace(to_dir, to, op.path);
  if (e.err) return e;
  if (linkat(from_dir, from.c_str(), to_dir, to.c_str(), 0) < 0) return fail("linkat");
  return {};
}

ExtractError ExtractWriter::DirAttrs(const ExtractStep& op) {
  if (!op.path.empty() && !is_relative_path(op.path)) return fail(EINVAL, "openat2");
  int fd = openat2_beneath(root_, op.path.empty() ? "." : op.path.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return fail("openat2");
  ExtractError e;
  struct stat st;
  bool chowned = false;
  if (fstat(fd, &st) < 0) {
    e = fail("fstat");
  } else if ((op.flags & kFlagChown) && (st.st_uid != op.uid || st.st_gid != op.gid)) {
    if (fchown(fd, op.uid, op.gid) < 0) e = fail("fchown");
    chowned = true;
  }
  if (!e.err && (chowned || (st.st_mode & 07777) != (op.mode & 07777)) && fchmod(fd, op.mode & 07777) < 0) e = fail("fchmod");
  struct timespec times[2] = {op.mtime, op.mtime};
  if (!e.err && futimens(fd, times) < 0) e = fail("futimens");
  close(fd);
  return e;
}

ExtractError ExtractWriter::Parent(const std::string& path, int* fd, std::string* base) {
  if (!is_relative_path(path)) return fail(EINVAL, "openat2");
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    *fd = root_;
    *base = path;
    return {};
  }
  *base = path.substr(slash + 1);
  std::string dir = path.substr(0, slash);
  for (size_t i = 0; i < dirs_.size(); i++) {
    if (dirs_[i].first != dir) continue;
    // Most recent first; the entry moved stays open.
    if (i > 0) std::swap(dirs_[i], dirs_[0]);
    *fd = dirs_[0].second;
    return {};
  }
  int dfd = openat2_beneath(root_, dir.c_str(), O_PATH | O_DIRECTORY);
  if (dfd < 0) {
    // Missing (made here, as tar makes the parents an archive does not list), or a symlink
    // or a file on the way: the walk says which component.
    if (errno != ENOENT && errno != ELOOP && errno != ENOTDIR) return fail("openat2");
    ExtractError e = Walk(dir, &dfd);
    if (e.err) return e;
  }
  // Evicts the least recent, never the one just used: a hardlink holds two at once.
  if (dirs_.size() >= kCachedDirs) {
    close(dirs_.back().second);
    dirs_.pop_back();
  }
  dirs_.insert(dirs_.begin(), {std::move(dir), dfd});
  *fd = dfd;
  return {};
}

ExtractError ExtractWriter::Walk(const std::string& dir, int* out) {
  int cur = root_;
  size_t start = 0;
  for (;;) {
    size_t end = dir.find('/', start);
    std::string name = dir.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::string prefix = dir.substr(0, end);
    int fd = openat2_beneath(cur, name.c_str(), O_PATH | O_DIRECTORY);
    if (fd < 0 && errno == ENOENT) {
      if (mkdirat(cur, name.c_str(), 0755) < 0 && errno != EEXIST) {
        ExtractError e = fail("mkdirat");
        if (cur != root_) close(cur);
        return e;
      }
      fd = openat2_beneath(cur, name.c_str(), O_PATH | O_DIRECTORY);
    }
    if (fd < 0) {
      ExtractError e = errno == ELOOP     ? fail("openat2", kFailParentSymlink, prefix)
                       : errno == ENOTDIR ? fail("openat2", kFailParentNotDir, prefix)
                                          : fail("openat2");
      if (cur != root_) close(cur);
      return e;
    }
    if (cur != root_) close(cur);
    cur = fd;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  *out = cur;
  return {};
}

ExtractError ExtractWriter::Replace(int dirfd, const std::string& base, const std::string& path) {
  struct stat st;
  if (fstatat(dirfd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return fail("fstatat");
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(dirfd, base.c_str(), 0) < 0) return fail("unlinkat");
    return {};
  }
  if (unlinkat(dirfd, base.c_str(), AT_REMOVEDIR) < 0) {
    return errno == ENOTEMPTY || errno == EEXIST ? fail(ENOTEMPTY, "rmdir", kFailNotEmpty) : fail("rmdir");
  }
  Forget(path);
  return {};
}

// A removed directory was empty, so only its own cache slot can name it (a subdirectory's
// slot would mean it was not empty); both are dropped all the same.
void ExtractWriter::Forget(const std::string& removed) {
  for (size_t i = 0; i < dirs_.size();) {
    const std::string& d = dirs_[i].first;
    bool under = d == removed || (d.size() > removed.size() && d.compare(0, removed.size(), removed) == 0 && d[removed.size()] == '/');
    if (!under) {
      i++;
      continue;
    }
    close(dirs_[i].second);
    dirs_.erase(dirs_.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

}  // namespace nsbox
