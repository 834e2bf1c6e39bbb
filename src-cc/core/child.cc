// The container's first process, from clone until it execs nsbox-init (src-cc/init/).
//
// The rule for everything in this file: Node is multithreaded, and with CLONE_VM the child
// even shares the parent's memory. So after clone the child only makes async-signal-safe
// system calls on data the parent prepared (plan.h): no malloc, no new, no std::string, no
// exceptions, no stdio, no locks. Paths are composed in fixed buffers on the child's stack.
// A failure is one Report (common/report.h) written to the CLOEXEC report pipe, then _exit.
//
// This process builds the container's world (mounts, pivot_root, hostname, terminal, stdio)
// and then becomes nsbox-init, exec'd from a sealed memfd: the workload never runs in a
// process whose executable is Node's.

#include "core/child.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/prctl.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <climits>

#include "core/fdpass.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace nsbox {
namespace {

struct Child {
  const ChildArgs* args;
  int32_t step = 0;
  int rootfd = -1;
  int pty_slave = -1;  // from kOpenPty: the container's stdio and controlling terminal
};

[[noreturn]] void fail(const Child& c, Sys sys, int err, int32_t detail = 0) {
  Report rec{static_cast<int32_t>(ReportKind::kFailed), c.step, static_cast<int32_t>(sys), err, detail, 0, 0, 0, 0};
  ssize_t n;
  do {
    n = write(c.args->report_fd, &rec, sizeof rec);
  } while (n < 0 && errno == EINTR);
  _exit(125);
}

// Raw system calls: no glibc symbol newer than the oldest glibc we run on.
int sys_openat2(int dirfd, const char* path, uint64_t flags, uint64_t resolve) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = flags;
  how.resolve = resolve;
  return static_cast<int>(syscall(SYS_openat2, dirfd, path, &how, sizeof how));
}
int sys_fsopen(const char* fstype) { return static_cast<int>(syscall(SYS_fsopen, fstype, FSOPEN_CLOEXEC)); }
int sys_fsconfig(int fd, unsigned cmd, const char* key, const void* value) { return static_cast<int>(syscall(SYS_fsconfig, fd, cmd, key, value, 0)); }
int sys_fsmount(int fd, unsigned attrs) { return static_cast<int>(syscall(SYS_fsmount, fd, FSMOUNT_CLOEXEC, attrs)); }
int sys_open_tree(int dirfd, const char* path, unsigned flags) { return static_cast<int>(syscall(SYS_open_tree, dirfd, path, flags)); }
int sys_mount_setattr(int fd, uint64_t set) {
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = set;
  return static_cast<int>(syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr));
}
int sys_move_mount(int from, int to) {
  return static_cast<int>(syscall(SYS_move_mount, from, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH));
}

// Lookups inside the root: symlinks and ".." resolve against the root, never above it, and
// /proc magic links cannot jump out (the CVE-2021-30465 class).
constexpr uint64_t kInRoot = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

int resolve_in_root(const Child& c, const char* rel, uint64_t flags) {
  return sys_openat2(c.rootfd, rel[0] ? rel : ".", flags | O_PATH | O_CLOEXEC, kInRoot);
}

void copy_path(const Child& c, char* buf, const char* src) {
  size_t n = strlen(src);
  if (n >= PATH_MAX) fail(c, Sys::kOpenat2, ENAMETOOLONG);
  memcpy(buf, src, n + 1);
}

// mkdir -p of `rel` inside the root, returning an O_PATH fd of the last directory.
// Each prefix is resolved from the root, so a symlink met on the way stays inside it.
int make_dirs(const Child& c, const char* rel) {
  char buf[PATH_MAX];
  copy_path(c, buf, rel);
  int dirfd = resolve_in_root(c, "", O_DIRECTORY);
  if (dirfd < 0) fail(c, Sys::kOpenat2, errno);
  char* start = buf;
  while (*start) {
    char* end = strchrnul(start, '/');
    const bool last = *end == '\0';
    *end = '\0';
    int next = resolve_in_root(c, buf, O_DIRECTORY);
    if (next < 0 && errno == ENOENT) {
      if (mkdirat(dirfd, start, 0755) < 0 && errno != EEXIST) fail(c, Sys::kMkdirat, errno);
      next = resolve_in_root(c, buf, O_DIRECTORY);
    }
    if (next < 0) fail(c, Sys::kOpenat2, errno);
    close(dirfd);
    dirfd = next;
    if (last) break;
    *end = '/';
    start = end + 1;
  }
  return dirfd;
}

// The parent directory of `rel` (created when missing) and its last component in `name`.
int open_parent(const Child& c, const char* rel, char* name) {
  char buf[PATH_MAX];
  copy_path(c, buf, rel);
  char* slash = strrchr(buf, '/');
  if (!slash) {
    copy_path(c, name, buf);
    return make_dirs(c, "");
  }
  *slash = '\0';
  copy_path(c, name, slash + 1);
  return make_dirs(c, buf);
}

// The O_PATH fd of a mount point inside the root, created (directory or empty file) when
// missing. With kStepNoFollowFinal a symlink as last component is refused, not followed.
int open_mount_point(const Child& c, const Step& s) {
  char name[PATH_MAX];
  const bool no_follow = s.flags & kStepNoFollowFinal;
  int fd = resolve_in_root(c, s.target, no_follow ? O_NOFOLLOW : 0);
  if (fd < 0 && errno == ENOENT) {
    int parent = open_parent(c, s.target, name);
    int made;
    if (s.flags & kStepTargetIsFile) {
      made = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (made >= 0) close(made);
    } else {
      made = mkdirat(parent, name, 0755);
    }
    if (made < 0 && errno != EEXIST) fail(c, (s.flags & kStepTargetIsFile) ? Sys::kOpen : Sys::kMkdirat, errno);
    close(parent);
    fd = resolve_in_root(c, s.target, no_follow ? O_NOFOLLOW : 0);
  }
  if (fd < 0) fail(c, Sys::kOpenat2, errno);
  struct stat st;
  if (fstat(fd, &st) < 0) fail(c, Sys::kFstat, errno);
  if (S_ISLNK(st.st_mode)) fail(c, Sys::kOpenat2, ELOOP);
  if ((s.flags & kStepTargetIsFile) ? S_ISDIR(st.st_mode) : !S_ISDIR(st.st_mode))
    fail(c, Sys::kOpenat2, (s.flags & kStepTargetIsFile) ? EISDIR : ENOTDIR);
  return fd;
}

// A new superblock of s.fstype with s.options, as a detached mount with s.attrs.
int make_fs(const Child& c, const Step& s) {
  int fsfd = sys_fsopen(s.fstype);
  if (fsfd < 0) fail(c, Sys::kFsopen, errno);
  for (uint32_t i = 0; i < s.options_count; i++) {
    const char* key = s.options[2 * i];
    const char* value = s.options[2 * i + 1];
    int r = value[0] ? sys_fsconfig(fsfd, FSCONFIG_SET_STRING, key, value) : sys_fsconfig(fsfd, FSCONFIG_SET_FLAG, key, nullptr);
    if (r < 0) fail(c, Sys::kFsconfig, errno, static_cast<int32_t>(i));
  }
  if (sys_fsconfig(fsfd, FSCONFIG_CMD_CREATE, nullptr, nullptr) < 0) fail(c, Sys::kFsconfig, errno, -1);
  int mfd = sys_fsmount(fsfd, static_cast<unsigned>(s.attrs));
  if (mfd < 0) fail(c, Sys::kFsmount, errno);
  close(fsfd);
  return mfd;
}

void attach(const Child& c, int mfd, int target_fd) {
  if (sys_move_mount(mfd, target_fd) < 0) fail(c, Sys::kMoveMount, errno);
}

int clone_tree(const Child& c, int dirfd, const char* path, unsigned extra) {
  int mfd = sys_open_tree(dirfd, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | extra);
  if (mfd < 0) fail(c, Sys::kOpenTree, errno);
  return mfd;
}

int open_host_dir(const Child& c, const char* path) {
  int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail(c, Sys::kOpen, errno);
  return fd;
}

// A device bound in from the host must be the very node the plan names: a symlink or a
// regular file planted at /dev/null on the host is refused rather than exposed.
void expect_device(const Child& c, int mfd, const Step& s) {
  struct stat st;
  if (fstat(mfd, &st) < 0) fail(c, Sys::kFstat, errno);
  if ((st.st_mode & S_IFMT) != s.mode || st.st_rdev != s.dev) fail(c, Sys::kFstat, ENODEV);
}

// Masking: an empty read-only tmpfs over a directory, the host's /dev/null over anything
// else. /dev/null is checked to be the real 1:3 device, so a planted file or symlink cannot
// be bound over a target instead (the CVE-2025-31133 class).
void mask(const Child& c, const Step& s) {
  int tfd = resolve_in_root(c, s.target, O_NOFOLLOW);
  if (tfd < 0) {
    if (errno == ENOENT) return;
    fail(c, Sys::kOpenat2, errno);
  }
  struct stat st;
  if (fstat(tfd, &st) < 0) fail(c, Sys::kFstat, errno);
  int mfd;
  if (S_ISDIR(st.st_mode)) {
    Step tmpfs = s;
    tmpfs.fstype = "tmpfs";
    tmpfs.options_count = 0;
    tmpfs.attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    mfd = make_fs(c, tmpfs);
  } else if (S_ISLNK(st.st_mode)) {
    close(tfd);
    return;  // a symlink in /proc or /sys points at something masked on its own
  } else {
    int nullfd = open("/dev/null", O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (nullfd < 0) fail(c, Sys::kOpen, errno);
    struct stat nst;
    if (fstat(nullfd, &nst) < 0) fail(c, Sys::kFstat, errno);
    if (!S_ISCHR(nst.st_mode) || nst.st_rdev != makedev(1, 3)) fail(c, Sys::kFstat, ENODEV);
    mfd = sys_open_tree(nullfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (mfd < 0) fail(c, Sys::kOpenTree, errno);
    if (sys_mount_setattr(mfd, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC) < 0) fail(c, Sys::kMountSetattr, errno);
    close(nullfd);
  }
  attach(c, mfd, tfd);
  close(mfd);
  close(tfd);
}

// The terminal is made in the container's own devpts instance, so that inside it has a name
// (/dev/pts/0: `tty` and ttyname work) and nothing of the host's devpts is reachable. The
// parent gets the master through SCM_RIGHTS: fd tables are not shared even with CLONE_VM.
void open_pty(Child& c, const Step& s) {
  const Plan& plan = *c.args->plan;
  int master = sys_openat2(c.rootfd, s.target, O_RDWR | O_NOCTTY | O_CLOEXEC, kInRoot);
  if (master < 0) fail(c, Sys::kOpenat2, errno);
  int unlock = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0) fail(c, Sys::kIoctl, errno);
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_col = plan.pty_cols;
  ws.ws_row = plan.pty_rows;
  if (ioctl(master, TIOCSWINSZ, &ws) < 0) fail(c, Sys::kIoctl, errno);
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) fail(c, Sys::kIoctl, errno);
  if (slave < 3) {  // never one of the stdio numbers it is about to be dup2'd onto
    int moved = fcntl(slave, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) fail(c, Sys::kFcntl, errno);
    close(slave);
    slave = moved;
  }
  if (send_fd(plan.pty_socket, master) < 0) fail(c, Sys::kSendmsg, errno);
  close(master);
  c.pty_slave = slave;
}

void run_step(Child& c, const Step& s) {
  char name[PATH_MAX];
  switch (s.op) {
    case StepOp::kMakeRootPrivate:
      if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) fail(c, Sys::kMount, errno);
      return;
    case StepOp::kMountRootFs: {
      int mfd = make_fs(c, s);
      int tfd = open_host_dir(c, s.target);
      attach(c, mfd, tfd);
      close(tfd);
      c.rootfd = mfd;
      return;
    }
    case StepOp::kMountWriteLayer: {
      // The write layer's own filesystem, attached in this mount namespace only, so it goes
      // with the container: a sized tmpfs made here, or (`fd`) an ext4 image's mount the
      // parent made in no namespace (opening the loop device is the parent's: the device
      // cgroup joined above would refuse it here); its loop device then detaches itself.
      int mfd = s.fd >= 0 ? s.fd : make_fs(c, s);
      if (mkdirat(mfd, "upper", 0755) < 0 && errno != EEXIST) fail(c, Sys::kMkdirat, errno);
      if (mkdirat(mfd, "work", 0700) < 0 && errno != EEXIST) fail(c, Sys::kMkdirat, errno);
      int tfd = open_host_dir(c, s.target);
      attach(c, mfd, tfd);
      close(tfd);
      close(mfd);
      return;
    }
    case StepOp::kBindRoot: {
      int mfd = clone_tree(c, AT_FDCWD, s.source, 0);
      // Read-only before it is attached: there is no moment when the root is writable.
      if (s.attrs && sys_mount_setattr(mfd, s.attrs) < 0) fail(c, Sys::kMountSetattr, errno);
      int tfd = open_host_dir(c, s.source);
      attach(c, mfd, tfd);
      close(tfd);
      c.rootfd = mfd;
      return;
    }
    case StepOp::kMountFs: {
      int mfd = make_fs(c, s);
      int tfd = open_mount_point(c, s);
      attach(c, mfd, tfd);
      close(tfd);
      close(mfd);
      return;
    }
    case StepOp::kBindInRoot: {
      const bool device = s.flags & kStepExpectDevice;
      int mfd;
      if (s.flags & kStepSourceNoLinks) {
        // A volume's host path: a symlink on it could have been planted by a container that
        // had (a parent of) it as a volume, to aim this bind at a host path of its choosing.
        // With an external user namespace the parent resolved it so (`fd`, plan.h HostFd).
        int sfd = s.fd >= 0 ? s.fd : sys_openat2(AT_FDCWD, s.source, O_PATH | O_CLOEXEC, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (sfd < 0) fail(c, Sys::kOpenat2, errno);
        mfd = clone_tree(c, sfd, "", AT_EMPTY_PATH);
        if (sfd != s.fd) close(sfd);
      } else {
        mfd = clone_tree(c, AT_FDCWD, s.source, device ? AT_SYMLINK_NOFOLLOW : 0);
      }
      if (device) expect_device(c, mfd, s);
      if (s.attrs && sys_mount_setattr(mfd, s.attrs) < 0) fail(c, Sys::kMountSetattr, errno);
      int tfd = open_mount_point(c, s);
      attach(c, mfd, tfd);
      close(tfd);
      close(mfd);
      return;
    }
    case StepOp::kMkdirInRoot: {
      int fd = make_dirs(c, s.target);
      close(fd);
      return;
    }
    case StepOp::kSymlinkInRoot: {
      int parent = open_parent(c, s.target, name);
      if (symlinkat(s.source, parent, name) < 0 && errno != EEXIST) fail(c, Sys::kSymlinkat, errno);
      close(parent);
      return;
    }
    case StepOp::kMaskInRoot: mask(c, s); return;
    case StepOp::kReadonlyInRoot: {
      int tfd = resolve_in_root(c, s.target, O_NOFOLLOW);
      if (tfd < 0) {
        if (errno == ENOENT) return;
        fail(c, Sys::kOpenat2, errno);
      }
      int mfd = clone_tree(c, tfd, "", AT_EMPTY_PATH);
      if (sys_mount_setattr(mfd, MOUNT_ATTR_RDONLY | s.attrs) < 0) fail(c, Sys::kMountSetattr, errno);
      attach(c, mfd, tfd);
      close(mfd);
      close(tfd);
      return;
    }
    case StepOp::kPivotRoot:
      // pivot_root(".", ".") stacks the old root on the new one; detaching "." drops it.
      if (fchdir(c.rootfd) < 0) fail(c, Sys::kFchdir, errno);
      if (syscall(SYS_pivot_root, ".", ".") < 0) fail(c, Sys::kPivotRoot, errno);
      if (umount2(".", MNT_DETACH) < 0) fail(c, Sys::kUmount2, errno);
      if (chdir("/") < 0) fail(c, Sys::kChdir, errno);
      close(c.rootfd);
      c.rootfd = -1;
      return;
    case StepOp::kLoopbackUp: {
      int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (sock < 0) fail(c, Sys::kSocket, errno);
      struct ifreq ifr;
      memset(&ifr, 0, sizeof ifr);
      memcpy(ifr.ifr_name, "lo", 3);
      if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) fail(c, Sys::kIoctl, errno);
      ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
      if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) fail(c, Sys::kIoctl, errno);
      close(sock);
      return;
    }
    case StepOp::kSethostname:
      if (sethostname(s.source, strlen(s.source)) < 0) fail(c, Sys::kSethostname, errno);
      return;
    case StepOp::kChdir:
      if (chdir(s.target) < 0) fail(c, Sys::kChdir, errno);
      return;
    case StepOp::kOpenPty: open_pty(c, s); return;
    case StepOp::kJoinCgroup: {
      ssize_t n;
      do {
        n = write(s.fd, "0", 1);
      } while (n < 0 && errno == EINTR);
      if (n < 0) fail(c, Sys::kWrite, errno);
      return;
    }
    case StepOp::kUnshareCgroupNs:
      if (unshare(CLONE_NEWCGROUP) < 0) fail(c, Sys::kUnshare, errno);
      return;
  }
}

// Everything after the steps: session, stdio, signals, fds, then nsbox-init. The command's
// own setup (its session and terminal, security, execve) is nsbox-init's.
[[noreturn]] void finish_and_exec_init(Child& c) {
  const ChildArgs& a = *c.args;
  const Plan& plan = *a.plan;
  c.step = kExecPhase;

  // init's own session: signals from the supervisor's terminal never reach the container.
  if (setsid() < 0) fail(c, Sys::kSetsid, errno);
  const int tty_stdio[3] = {c.pty_slave, c.pty_slave, c.pty_slave};
  const int* stdio = c.pty_slave >= 0 ? tty_stdio : plan.stdio;
  for (int fd = 0; fd < 3; fd++) {
    // Every prepared fd is above 2, so no dup2 clobbers another's source.
    if (stdio[fd] == fd) {
      if (fcntl(fd, F_SETFD, 0) < 0) fail(c, Sys::kFcntl, errno);
    } else if (dup2(stdio[fd], fd) < 0) {
      fail(c, Sys::kDup2, errno);
    }
  }
  // Node ignores SIGPIPE and has handlers; an ignored signal would survive execve.
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < _NSIG; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);  // 32, 33: EINVAL, fine
  }
  // Nothing of Node's crosses the exec but stdio, the report pipe and Node's pidfd.
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) fail(c, Sys::kCloseRange, errno);
  if (fcntl(a.report_fd, F_SETFD, 0) < 0) fail(c, Sys::kFcntl, errno);
  if (a.parent_pidfd >= 0 && fcntl(a.parent_pidfd, F_SETFD, 0) < 0) fail(c, Sys::kFcntl, errno);
  // By fd, never by a path the container could have planted something at; the memfd stays
  // close-on-exec (an ELF image needs no path to itself).
  syscall(SYS_execveat, a.init_fd, "", a.init_argv, plan.envp.data(), AT_EMPTY_PATH);
  fail(c, Sys::kExecveat, errno);
}

// The container's own user namespace gets its ids from the child itself: one line mapping its
// own uid (and gid, after setgroups is denied) to 0 is what the kernel lets a process without
// privilege write. Runs before the child makes itself non-dumpable: /proc/self of a
// non-dumpable process belongs to the host's root, which a user cannot open for writing.
void write_id_maps(Child& c) {
  const UserNs& u = c.args->plan->userns;
  c.step = kUserNsPhase;
  const char* files[3] = {"/proc/self/setgroups", "/proc/self/uid_map", "/proc/self/gid_map"};
  const char* texts[3] = {u.setgroups_deny ? "deny" : "", u.uid_map, u.gid_map};
  for (int i = 0; i < 3; i++) {
    size_t len = strlen(texts[i]);
    if (len == 0) continue;
    int fd = open(files[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0) fail(c, Sys::kOpen, errno, i);
    ssize_t n;
    do {
      n = write(fd, texts[i], len);
    } while (n < 0 && errno == EINTR);
    if (n < 0) fail(c, Sys::kWrite, errno, i);
    close(fd);
  }
  c.step = 0;
}

// An external user namespace (root's `userns: 'auto'`): the parent writes the maps, then sends
// the host fds the plan names (plan.h, HostFd) with one byte. EOF instead: the parent gave up
// (and kills this process). From then on the child is root of its namespace only, the host id
// at the map's base: whatever it makes on the host (the overlay's work directories) is the
// container's, and no root-owned host file is its to open.
void wait_for_userns(Child& c) {
  const Plan& plan = *c.args->plan;
  const UserNs& u = plan.userns;
  c.step = kUserNsPhase;
  int fds[kMaxFdsPerMessage];
  if (u.newuidmap) {
    // The maps came from newuidmap and newgidmap; one byte says so and no fd comes with it.
    char byte;
    ssize_t n;
    do {
      n = read(c.args->userns_sock, &byte, 1);
    } while (n < 0 && errno == EINTR);
    if (n == 0) _exit(125);
    if (n < 0) fail(c, Sys::kRead, errno, 3);
  }
  int got = u.newuidmap ? 0 : receive_fds(c.args->userns_sock, fds, kMaxFdsPerMessage);
  if (got == 0 && !u.newuidmap) _exit(125);  // EOF (with newuidmap, read above)
  if (got < 0) fail(c, Sys::kRead, errno, 3);
  close(c.args->userns_sock);
  int expected = 0;
  for (const HostFd& h : u.host_fds) expected += (h.flags & kHostFdIdmap) ? 2 : 1;
  if (got != expected) fail(c, Sys::kRead, EPROTO, 3);
  if (syscall(SYS_setgroups, 0, nullptr) < 0) fail(c, Sys::kSetgroups, errno, 4);
  if (syscall(SYS_setresgid, 0, 0, 0) < 0) fail(c, Sys::kSetresgid, errno, 4);
  if (syscall(SYS_setresuid, 0, 0, 0) < 0) fail(c, Sys::kSetresuid, errno, 4);
  // The idmapped layers are mounted before the first step: private first, so that they stay
  // in this namespace (the step that does the same later finds nothing left to do).
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) fail(c, Sys::kMount, errno, 5);
  int k = 0;
  for (const HostFd& h : u.host_fds) {
    int fd = fds[k++];
    if (h.flags & kHostFdIdmap) {
      int idmapped = fds[k++];
      if (sys_move_mount(idmapped, fd) < 0) fail(c, Sys::kMoveMount, errno, 6);
      close(fd);
      fd = idmapped;
    }
    if (dup3(fd, h.fd, O_CLOEXEC) < 0) fail(c, Sys::kDup2, errno, 7);
    close(fd);
  }
  c.step = 0;
}

}  // namespace

int child_main(void* arg) {
  Child c;
  c.args = static_cast<const ChildArgs*>(arg);
  const Plan& plan = *c.args->plan;
  // Modes given in the plan are meant exactly, /dev/null 0666 included.
  umask(0);
  if (c.args->userns_peer >= 0) close(c.args->userns_peer);
  if (plan.userns.enabled && !plan.userns.external) {
    // Forked (spawn.cc: another child was in Node's memory), its copy of the flag may be that
    // child's 0: dumpable for the writes, cleared below. Sharing Node's memory it is alone
    // there until its exec (shared_vm_enter_alone), and the flag is Node's own.
    if (c.args->own_vm && prctl(PR_SET_DUMPABLE, 1) < 0) fail(c, Sys::kPrctl, errno);
    write_id_maps(c);
  }
  // Until execve the child holds the host's root: nobody may ptrace or read its memory.
  // newuidmap's maps (plan.h): dumpable until they are in, for /proc/PID to be the user's; this
  // is the child's own copy of the address space (no CLONE_VM), whatever Node's flag is now.
  const bool helper_maps = plan.userns.newuidmap != nullptr;
  if (prctl(PR_SET_DUMPABLE, helper_maps ? 1 : 0) < 0) fail(c, Sys::kPrctl, errno);
  // Dies with the thread that cloned it; nsbox-init keeps this across its exec (and arms it
  // again after changing credentials). Node may already have died before this line: its
  // pidfd tells.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail(c, Sys::kPrctl, errno);
  if (c.args->parent_pidfd >= 0) {
    struct pollfd p = {c.args->parent_pidfd, POLLIN, 0};
    if (poll(&p, 1, 0) != 0) _exit(125);
  }
  if (plan.userns.external) wait_for_userns(c);
  if (helper_maps && prctl(PR_SET_DUMPABLE, 0) < 0) fail(c, Sys::kPrctl, errno);
  for (const Step& s : plan.steps) {
    run_step(c, s);
    c.step++;
  }
  finish_and_exec_init(c);
}

}  // namespace nsbox
