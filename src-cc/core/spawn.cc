#include "core/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "common/detach.h"
#include "core/child.h"
#include "core/decimal.h"
#include "core/fdpass.h"
#include "core/subid.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

namespace {

// The kernel's struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7), declared
// here: <linux/sched.h> clashes with glibc's <sched.h> on some header versions.
struct Clone3Args {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
  uint64_t set_tid;
  uint64_t set_tid_size;
  uint64_t cgroup;
};
static_assert(sizeof(Clone3Args) == 88, "clone_args version 2 is 88 bytes");

}  // namespace

// clone3 has no libc wrapper that runs a function on a new stack, as clone() does: a raw
// syscall() would return into its caller's frame on a stack that has none. This does what
// clone() does: in the child (0, on the new stack) it calls fn(arg) and exits with its result,
// touching no memory of its own; in the parent it returns the pid or -errno.
extern "C" long nsbox_clone3(Clone3Args* args, size_t size, int (*fn)(void*), void* arg);

#if defined(__x86_64__)
// syscall keeps every register but rax, rcx and r11: fn and arg survive into the child.
asm(R"(
  .pushsection .text
  .globl nsbox_clone3
  .hidden nsbox_clone3
  .type nsbox_clone3, @function
nsbox_clone3:
  mov %rdx, %r8
  mov %rcx, %r9
  mov $435, %eax
  syscall
  test %rax, %rax
  jnz 1f
  xor %ebp, %ebp
  mov %r9, %rdi
  call *%r8
  mov %eax, %edi
  mov $60, %eax
  syscall
  hlt
1:
  ret
  .size nsbox_clone3, .-nsbox_clone3
  .popsection
)");
#elif defined(__aarch64__)
// svc keeps every register but x0: fn (x2) and arg (x3) survive into the child.
asm(R"(
  .pushsection .text
  .globl nsbox_clone3
  .hidden nsbox_clone3
  .type nsbox_clone3, %function
nsbox_clone3:
  mov x8, #435
  svc #0
  cbnz x0, 1f
  mov x29, #0
  mov x30, #0
  mov x0, x3
  blr x2
  mov x8, #93
  svc #0
  brk #0
1:
  ret
  .size nsbox_clone3, .-nsbox_clone3
  .popsection
)");
#else
extern "C" long nsbox_clone3(Clone3Args*, size_t, int (*)(void*), void*) { return -ENOSYS; }
#endif

namespace nsbox {

const char* syscall_name(Sys sys) {
  switch (sys) {
    case Sys::kNone: return "";
    case Sys::kMount: return "mount";
    case Sys::kFsopen: return "fsopen";
    case Sys::kFsconfig: return "fsconfig";
    case Sys::kFsmount: return "fsmount";
    case Sys::kMoveMount: return "move_mount";
    case Sys::kOpenTree: return "open_tree";
    case Sys::kMountSetattr: return "mount_setattr";
    case Sys::kOpenat2: return "openat2";
    case Sys::kMkdirat: return "mkdirat";
    case Sys::kMknodat: return "mknodat";
    case Sys::kSymlinkat: return "symlinkat";
    case Sys::kFstat: return "fstat";
    case Sys::kFchdir: return "fchdir";
    case Sys::kPivotRoot: return "pivot_root";
    case Sys::kUmount2: return "umount2";
    case Sys::kChdir: return "chdir";
    case Sys::kSethostname: return "sethostname";
    case Sys::kSocket: return "socket";
    case Sys::kIoctl: return "ioctl";
    case Sys::kSetsid: return "setsid";
    case Sys::kDup2: return "dup2";
    case Sys::kFcntl: return "fcntl";
    case Sys::kPrctl: return "prctl";
    case Sys::kSigaction: return "sigaction";
    case Sys::kSigprocmask: return "sigprocmask";
    case Sys::kCloseRange: return "close_range";
    case Sys::kExecve: return "execve";
    case Sys::kCapset: return "capset";
    case Sys::kSeccomp: return "seccomp";
    case Sys::kSetgroups: return "setgroups";
    case Sys::kSetresgid: return "setresgid";
    case Sys::kSetresuid: return "setresuid";
    case Sys::kOpen: return "open";
    case Sys::kClone: return "clone";
    case Sys::kPipe: return "pipe2";
    case Sys::kSendmsg: return "sendmsg";
    case Sys::kExecveat: return "execveat";
    case Sys::kSignalfd: return "signalfd";
    case Sys::kWrite: return "write";
    case Sys::kRead: return "read";
    case Sys::kUnshare: return "unshare";
    case Sys::kConfig: return "nsbox-init arguments";
    case Sys::kSetrlimit: return "setrlimit";
    case Sys::kSetns: return "setns";
    case Sys::kNewuidmap: return "newuidmap";
    case Sys::kNewgidmap: return "newgidmap";
  }
  return "?";
}

namespace {

constexpr size_t kStackSize = 256 * 1024;

// One stack per calling thread, made once: with CLONE_VFORK the thread is suspended while
// the child uses it, so it is never used twice at the same time. The lowest page is a guard.
char* child_stack_top() {
  thread_local char* top = nullptr;
  if (!top) {
    void* mem = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
    mprotect(mem, 4096, PROT_NONE);
    top = static_cast<char*>(mem) + kStackSize;
  }
  return top;
}

// In fork mode several threads may not share a stack either, but the child gets its own copy
// of the address space, so the same per-thread stack serves.

void close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// nsbox-init's argv: its name, the fds this start made, the plan's options, "--", the command.
std::vector<std::string> init_argv(const Plan& plan, int report_fd, int parent_pidfd) {
  std::vector<std::string> out;
  out.reserve(plan.init_options.size() + plan.argv.size() + 4);
  out.emplace_back("nsbox-init");
  out.push_back("report=" + std::to_string(report_fd));
  if (parent_pidfd >= 0) out.push_back("parent=" + std::to_string(parent_pidfd));
  out.insert(out.end(), plan.init_options.begin(), plan.init_options.end());
  out.emplace_back("--");
  out.insert(out.end(), plan.argv.begin(), plan.argv.end());
  return out;
}

}  // namespace

namespace {
std::mutex g_vm_mu;
std::condition_variable g_vm_alone_done;
int g_vm_users = 0;
int g_vm_dumpable = -1;
bool g_vm_alone = false;  // a rootless child writing its own maps has Node's memory to itself
}  // namespace

void shared_vm_enter() {
  std::unique_lock<std::mutex> lock(g_vm_mu);
  g_vm_alone_done.wait(lock, [] { return !g_vm_alone; });
  if (g_vm_users++ == 0) g_vm_dumpable = prctl(PR_GET_DUMPABLE);
}

bool shared_vm_enter_alone() {
  std::lock_guard<std::mutex> lock(g_vm_mu);
  if (g_vm_users > 0 || g_vm_alone) return false;
  g_vm_alone = true;
  g_vm_users = 1;
  g_vm_dumpable = prctl(PR_GET_DUMPABLE);
  return true;
}

void shared_vm_leave(bool alone) {
  {
    std::lock_guard<std::mutex> lock(g_vm_mu);
    if (--g_vm_users == 0 && g_vm_dumpable > 0) prctl(PR_SET_DUMPABLE, g_vm_dumpable);
    if (alone) g_vm_alone = false;
  }
  if (alone) g_vm_alone_done.notify_all();
}

void reap(int pidfd, siginfo_t* info) {
  while (waitid(static_cast<idtype_t>(P_PIDFD), pidfd, info, WEXITED) < 0 && errno == EINTR) {
  }
}

void kill_and_reap(int pidfd) {
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  // waitid on a non-blocking pidfd fails with EAGAIN instead of waiting.
  int fl = fcntl(pidfd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(pidfd, F_SETFL, fl & ~O_NONBLOCK);
  siginfo_t info;
  reap(pidfd, &info);
}

void remove_cgroup_dirs(const std::vector<std::string>& dirs) {
  for (const std::string& dir : dirs) {
    for (int attempt = 0; attempt < 200; attempt++) {
      if (rmdir(dir.c_str()) == 0 || errno != EBUSY) break;
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, nullptr);
    }
  }
}

namespace {

// Composing /proc/PID/... without allocating: give_userns runs in P2 of a detached start too,
// under the child's rule.
char* put_str(char* p, const char* s) {
  while (*s) *p++ = *s++;
  *p = '\0';
  return p;
}
int write_whole(const char* file, const char* text, Sys* sys) {
  int fd = open(file, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    *sys = Sys::kOpen;
    return errno;
  }
  size_t len = strlen(text);
  ssize_t n;
  do {
    n = write(fd, text, len);
  } while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : (static_cast<size_t>(n) != len ? EIO : 0);
  close(fd);
  if (err) *sys = Sys::kWrite;
  return err;
}

// The parent's half of an external user namespace (plan.h, UserNs): as root of the parent
// namespace it may write any map, but only to a process that exists, hence after clone. Then
// the host fds: each path opened in the child's mount namespace (/proc/PID/root, resolved in
// it), and for an idmapped one a clone of the same path from this namespace, idmapped to the
// child's user namespace (MOUNT_ATTR_IDMAP takes only a mount no namespace holds yet); the
// child mounts it over the path. 0, or an errno with `sys` saying which call. Only system
// calls on the stack and the plan: the child's rule holds (P2 of a detached start runs it).
int give_userns(const Plan& plan, int pid, int sock, Sys* sys) {
  const UserNs& u = plan.userns;
  char path[64];
  char* end = put_decimal(put_str(path, "/proc/"), static_cast<unsigned>(pid));
  if (u.newuidmap) {
    // Rootless with a subordinate range: the setuid helpers check it against /etc/subuid and
    // /etc/subgid and write it; nothing else is handed over (the user's paths are the child's).
    if (int err = run_map_helper(u.newuidmap, u.uid_args.data(), pid)) {
      *sys = Sys::kNewuidmap;
      return err;
    }
    if (int err = run_map_helper(u.newgidmap, u.gid_args.data(), pid)) {
      *sys = Sys::kNewgidmap;
      return err;
    }
    if (send_fds(sock, nullptr, 0) < 0) {
      *sys = Sys::kSendmsg;
      return errno;
    }
    return 0;
  }
  put_str(end, "/uid_map");
  if (int err = write_whole(path, u.uid_map, sys)) return err;
  put_str(end, "/gid_map");
  if (int err = write_whole(path, u.gid_map, sys)) return err;
  int opened[2 * kMaxHostFds + 2];
  int nopened = 0;
  int send[2 * kMaxHostFds];
  int nsend = 0;
  int err = 0;
  auto failed = [&](Sys s) {
    *sys = s;
    err = errno;
  };
  put_str(end, "/root");
  int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  put_str(end, "/ns/user");
  int userns = root < 0 ? -1 : open(path, O_RDONLY | O_CLOEXEC);
  if (root < 0 || userns < 0) failed(Sys::kOpen);
  if (root >= 0) opened[nopened++] = root;
  if (userns >= 0) opened[nopened++] = userns;
  if (u.host_fds.size() > kMaxHostFds) {
    *sys = Sys::kSendmsg;
    err = E2BIG;
  }
  for (size_t i = 0; !err && i < u.host_fds.size(); i++) {
    const HostFd& h = u.host_fds[i];
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | ((h.flags & kHostFdNoLinks) ? RESOLVE_NO_SYMLINKS : 0);
    int fd = static_cast<int>(syscall(SYS_openat2, root, h.path + 1, &how, sizeof how));
    if (fd < 0) {
      failed(Sys::kOpenat2);
      break;
    }
    opened[nopened++] = send[nsend++] = fd;
    if (h.flags & kHostFdIdmap) {
      int tree = static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, h.path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
      if (tree < 0) {
        failed(Sys::kOpenTree);
        break;
      }
      opened[nopened++] = send[nsend++] = tree;
      struct mount_attr attr;
      memset(&attr, 0, sizeof attr);
      attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
      attr.userns_fd = static_cast<uint64_t>(userns);
      if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
        failed(Sys::kMountSetattr);
        break;
      }
    }
  }
  if (!err && send_fds(sock, send, nsend) < 0) failed(Sys::kSendmsg);
  for (int i = 0; i < nopened; i++) close(opened[i]);
  return err;
}
}  // namespace

SpawnResult spawn(const Plan& plan, int init_fd) {
  SpawnResult result;
  int report[2];
  if (pipe2(report, O_CLOEXEC) < 0) {
    result.parent_sys = Sys::kPipe;
    result.parent_errno = errno;
    return result;
  }
  char* stack = child_stack_top();
  if (!stack) {
    close(report[0]);
    close(report[1]);
    result.parent_sys = Sys::kClone;
    result.parent_errno = ENOMEM;
    return result;
  }
  // A pidfd of this very process (always close-on-exec), for the child and nsbox-init to
  // notice Node died before their parent-death signal was armed. Opened per start rather
  // than kept. -1 (no check) on a kernel without it.
  int self_pidfd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  std::vector<std::string> argv_strings = init_argv(plan, report[1], self_pidfd);
  std::vector<char*> argv;
  argv.reserve(argv_strings.size() + 1);
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  // An external user namespace: the child waits on this socket for its maps and host fds.
  const bool external = plan.userns.enabled && plan.userns.external;
  int sync[2] = {-1, -1};
  if (external && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) < 0) {
    int err = errno;
    close(report[0]);
    close(report[1]);
    if (self_pidfd >= 0) close(self_pidfd);
    result.parent_sys = Sys::kSocket;
    result.parent_errno = err;
    return result;
  }
  // A child writing its own maps (rootless, one id) shares Node's memory only alone in it
  // (spawn.h); else it is forked.
  const bool own_maps = plan.userns.enabled && !external;
  const bool vm_alone = plan.share_vm && own_maps && shared_vm_enter_alone();
  const bool share_vm = plan.share_vm && (!own_maps || vm_alone);
  ChildArgs args{&plan, report[1], self_pidfd, init_fd, argv.data(), sync[1], sync[0], !share_vm};
  int flags = plan.clone_flags | CLONE_PIDFD | SIGCHLD;
  // Without CLONE_VFORK when the child must wait for this thread (its maps): it still runs on
  // this thread's stack in Node's memory, and this function returns only once it has exec'd
  // (the first report) or is reaped, so neither is used by anyone else meanwhile.
  if (share_vm) flags |= CLONE_VM | (external ? 0 : CLONE_VFORK);
  int pidfd = -1;
  // Born in its cgroup v2 directory: there is no moment when it runs outside (and no move,
  // which would wait for an RCU grace period). Prepared here, before anything is blocked.
  Clone3Args cargs{};
  if (plan.cgroup_fd >= 0) {
    cargs.flags = static_cast<uint64_t>(static_cast<unsigned>(flags & ~0xff)) | CLONE_INTO_CGROUP;
    cargs.pidfd = reinterpret_cast<uintptr_t>(&pidfd);
    cargs.exit_signal = SIGCHLD;
    cargs.stack = reinterpret_cast<uintptr_t>(stack - kStackSize);
    cargs.stack_size = kStackSize;
    cargs.cgroup = static_cast<uint64_t>(plan.cgroup_fd);
  }

  // Blocked around clone so that no Node handler runs in the child before it resets them.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  // The child makes itself non-dumpable until execve. With CLONE_VM that flag lands on the
  // address space it shares with Node: Node's goes back once the child has left it (and no
  // other start's child is still in it: shared_vm_enter).
  if (share_vm && !vm_alone) shared_vm_enter();
  int pid;
  int clone_errno;
  if (plan.cgroup_fd >= 0) {
    long r = nsbox_clone3(&cargs, sizeof cargs, child_main, &args);
    pid = r < 0 ? -1 : static_cast<int>(r);
    clone_errno = r < 0 ? static_cast<int>(-r) : 0;
  } else {
    pid = clone(child_main, stack, flags, &args, &pidfd);
    clone_errno = errno;
  }
  // Without CLONE_VFORK the child is still in Node's memory: the dumpable flag goes back
  // once it has left (below, on every way out).
  const bool vm_held = share_vm && external && pid >= 0;
  if (share_vm && !vm_held) shared_vm_leave(vm_alone);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(report[1]);
  if (self_pidfd >= 0) close(self_pidfd);
  if (sync[1] >= 0) close(sync[1]);

  if (pid < 0) {
    if (sync[0] >= 0) close(sync[0]);
    close(report[0]);
    result.parent_sys = Sys::kClone;
    result.parent_errno = clone_errno;
    return result;
  }
  struct VmRelease {
    bool held;
    ~VmRelease() {
      if (held) shared_vm_leave();
    }
  } vm_release{vm_held};

  if (external) {
    Sys sys = Sys::kNone;
    int err = give_userns(plan, pid, sync[0], &sys);
    close(sync[0]);
    if (err) {
      kill_and_reap(pidfd);
      close_fd(pidfd);
      close(report[0]);
      result.parent_sys = sys;
      result.parent_errno = err;
      return result;
    }
  }

  // The first record: the command started, or a step failed. Waiting here covers the child's
  // setup, nsbox-init's confinement and the command's execve.
  Report rec;
  ssize_t n;
  do {
    n = read(report[0], &rec, sizeof rec);
  } while (n < 0 && errno == EINTR);

  if (n == static_cast<ssize_t>(sizeof rec) && rec.kind == static_cast<int32_t>(ReportKind::kStarted)) {
    fcntl(report[0], F_SETFL, O_NONBLOCK);
    result.pid = pid;
    result.pidfd = pidfd;
    result.report_fd = report[0];
    return result;
  }
  // It failed (and is exiting) or died: reap it here, it was never a container.
  close(report[0]);
  siginfo_t info;
  if (n == static_cast<ssize_t>(sizeof rec)) {
    kill_and_reap(pidfd);
    result.failed = true;
    result.error = rec;
  } else {
    reap(pidfd, &info);
    result.vanished = true;
    result.vanished_status = info.si_code == CLD_EXITED ? (info.si_status & 0xff) << 8 : (info.si_status & 0x7f);
  }
  close_fd(pidfd);
  return result;
}

// ---- spawn_detached ----
//
// Node (this thread) --clone(VM|VFORK)--> P1: setsid, clone --> P2, exit
// P2 (a copy of Node's memory, its own session, no longer Node's child once P1 is reaped):
//   joins the cgroup containers are born in, clones the container from its copy of the plan
//   (so the container's PDEATHSIG names P2), then execs nsbox-monitor (the same sealed memfd
//   as nsbox-init) with the container's pidfd, report pipe, output pipes and directory.
// P1 and P2 follow the child's rule: only async-signal-safe calls on data prepared here.
namespace {

constexpr size_t kDetachStack = 64 * 1024;

struct DetachArgs {
  ChildArgs child;
  int clone_flags;
  char* container_stack;
  char* p2_stack;
  int tasks_fd;
  int status_fd;
  int devnull;
  int init_fd;
  int parent_slot;  // an fd number kept for P2's own pidfd (the container's `parent=`)
  int pidfd_slot;   // and one for the container's pidfd (the monitor's `pidfd=`)
  int keep[8];      // the monitor's fds, made inheritable just before its exec
  int keep_count;
  char* pid_digits;  // room in the monitor's argv for the container's pid
  char* const* monitor_argv;
  char* const* monitor_envp;
};

// Two stacks (P1 in Node's memory, P2 in its copy), per thread, made once; a guard page each.
char* detach_stacks() {
  thread_local char* base = nullptr;
  if (!base) {
    void* mem = mmap(nullptr, 2 * kDetachStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
    base = static_cast<char*>(mem);
    mprotect(base, 4096, PROT_NONE);
    mprotect(base + kDetachStack, 4096, PROT_NONE);
  }
  return base;
}

[[noreturn]] void detach_fail(const DetachArgs& d, Sys sys, int err) {
  DetachStart start{};
  start.monitor_pid = getpid();
  start.report = Report{static_cast<int32_t>(ReportKind::kFailed), -1, static_cast<int32_t>(sys), err, 0, 0, 0, 0, 0};
  ssize_t n;
  do {
    n = write(d.status_fd, &start, sizeof start);
  } while (n < 0 && errno == EINTR);
  _exit(125);
}

// P2, the monitor-to-be.
int detached_parent(void* arg) {
  const DetachArgs& d = *static_cast<DetachArgs*>(arg);
  if (d.tasks_fd >= 0) {
    // "0" moves the writing thread, which is all of this process.
    ssize_t n;
    do {
      n = write(d.tasks_fd, "0", 1);
    } while (n < 0 && errno == EINTR);
    if (n < 0) detach_fail(d, Sys::kWrite, errno);
  }
  int self = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  if (self < 0) detach_fail(d, Sys::kOpen, errno);
  if (dup3(self, d.parent_slot, O_CLOEXEC) < 0) detach_fail(d, Sys::kDup2, errno);
  close(self);
  int pidfd = -1;
  // userns 'auto': cloned without CLONE_VFORK (d.clone_flags), the container waits for this
  // process to write its maps and send its host fds. It keeps this process's memory (CLONE_VM)
  // after the monitor's exec below replaces it here: an address space lives on while any
  // process uses it.
  DetachArgs& dm = *static_cast<DetachArgs*>(arg);
  const Plan& plan = *d.child.plan;
  const bool external = plan.userns.enabled && plan.userns.external;
  int sync[2] = {-1, -1};
  if (external && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) < 0) detach_fail(d, Sys::kSocket, errno);
  dm.child.userns_sock = sync[1];
  dm.child.userns_peer = sync[0];
  int pid = clone(child_main, d.container_stack, d.clone_flags, &dm.child, &pidfd);
  if (pid < 0) detach_fail(d, Sys::kClone, errno);
  if (external) {
    close(sync[1]);
    Sys sys = Sys::kNone;
    int err = give_userns(plan, pid, sync[0], &sys);
    close(sync[0]);
    if (err) {
      kill_and_reap(pidfd);
      detach_fail(d, sys, err);
    }
  }
  if (dup3(pidfd, d.pidfd_slot, O_CLOEXEC) < 0) detach_fail(d, Sys::kDup2, errno);
  close(pidfd);
  put_decimal(d.pid_digits, static_cast<unsigned>(pid));
  // What the monitor keeps: the fds named in its argv, /dev/null as stdio, "/" as its cwd
  // (it must pin no mount of the caller's).
  if (syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) < 0) detach_fail(d, Sys::kCloseRange, errno);
  for (int i = 0; i < d.keep_count; i++) {
    if (fcntl(d.keep[i], F_SETFD, 0) < 0) detach_fail(d, Sys::kFcntl, errno);
  }
  for (int fd = 0; fd < 3; fd++) {
    if (dup2(d.devnull, fd) < 0) detach_fail(d, Sys::kDup2, errno);
  }
  if (chdir("/") < 0) detach_fail(d, Sys::kChdir, errno);
  syscall(SYS_execveat, d.init_fd, "", d.monitor_argv, d.monitor_envp, AT_EMPTY_PATH);
  detach_fail(d, Sys::kExecveat, errno);
}

// P1: a session of its own for P2, then gone, so that P2 is nobody's child in Node.
int detached_first(void* arg) {
  DetachArgs& d = *static_cast<DetachArgs*>(arg);
  setsid();
  if (clone(detached_parent, d.p2_stack, SIGCHLD, arg) < 0) detach_fail(d, Sys::kClone, errno);
  _exit(0);
}

// The same file at an fd number above stdio (P2 puts /dev/null on 0-2); -1 on failure.
int above_stdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return moved;
}

// An fd number held (on /dev/null) until P2 puts what it stands for there.
int reserve_fd() { return above_stdio(open("/dev/null", O_RDONLY | O_CLOEXEC)); }

}  // namespace

DetachResult spawn_detached(const Plan& plan, int init_fd, const DetachSpec& spec) {
  DetachResult result;
  auto parent_fail = [&](Sys sys, int err) {
    result.parent_sys = sys;
    result.parent_errno = err;
    return result;
  };
  char* stacks = detach_stacks();
  char* container_stack = child_stack_top();
  if (!stacks || !container_stack) return parent_fail(Sys::kClone, ENOMEM);
  // Every fd made here closes on every path: a small table of them.
  std::vector<int> made;
  struct Closer {
    std::vector<int>& fds;
    ~Closer() {
      for (int fd : fds) close(fd);
    }
  } closer{made};
  auto track = [&](int fd) {
    if (fd >= 0) made.push_back(fd);
    return fd;
  };
  for (int fd : {spec.dir, spec.out, spec.err}) {
    if (fd >= 0 && fd <= 2) return parent_fail(Sys::kDup2, EBADF);
  }
  int report[2], status[2];
  if (pipe2(report, O_CLOEXEC) < 0) return parent_fail(Sys::kPipe, errno);
  track(report[1]);
  report[0] = track(above_stdio(report[0]));
  if (pipe2(status, O_CLOEXEC) < 0) return parent_fail(Sys::kPipe, errno);
  track(status[0]);
  int status_w = track(above_stdio(status[1]));
  int ack[2];
  if (pipe2(ack, O_CLOEXEC) < 0) return parent_fail(Sys::kPipe, errno);
  track(ack[1]);
  ack[0] = track(above_stdio(ack[0]));
  int devnull = track(open("/dev/null", O_RDWR | O_CLOEXEC));
  int parent_slot = track(reserve_fd());
  int pidfd_slot = track(reserve_fd());
  if (report[0] < 0 || status_w < 0 || ack[0] < 0 || devnull < 0 || parent_slot < 0 || pidfd_slot < 0) return parent_fail(Sys::kOpen, errno);

  std::vector<std::string> init_strings = init_argv(plan, report[1], parent_slot);
  std::vector<char*> init_args;
  for (std::string& a : init_strings) init_args.push_back(a.data());
  init_args.push_back(nullptr);

  auto num = [](const char* key, long long v) { return std::string(key) + std::to_string(v); };
  std::vector<std::string> mon = {"nsbox-monitor",
                                  "monitor",
                                  num("report=", report[0]),
                                  num("pidfd=", pidfd_slot),
                                  "pid=" + std::string(15, '0'),
                                  num("status=", status_w),
                                  num("ack=", ack[0]),
                                  num("dir=", spec.dir),
                                  num("logsize=", static_cast<long long>(spec.log_max)),
                                  num("logfiles=", spec.log_files)};
  if (spec.out >= 0) mon.push_back(num("out=", spec.out));
  if (spec.err >= 0) mon.push_back(num("err=", spec.err));
  if (!spec.oom.empty()) mon.push_back("oom=" + spec.oom);
  if (spec.timeout_ms) mon.push_back(num("timeout=", static_cast<long long>(spec.timeout_ms)));
  if (spec.cputime_ns) {
    mon.push_back(num("cputime=", static_cast<long long>(spec.cputime_ns)));
    mon.push_back((spec.cpu_v2 ? "cpustat=" : "cpuacct=") + spec.cpu_file);
  }
  for (const std::string& c : spec.cgroups) mon.push_back("cgroup=" + c);
  std::vector<char*> mon_args;
  for (std::string& a : mon) mon_args.push_back(a.data());
  mon_args.push_back(nullptr);
  char* mon_env[] = {nullptr};

  DetachArgs d{};
  d.child = ChildArgs{&plan, report[1], parent_slot, init_fd, init_args.data(), -1, -1};
  d.clone_flags = plan.clone_flags | CLONE_PIDFD | SIGCHLD | (plan.share_vm ? CLONE_VM | (plan.userns.external ? 0 : CLONE_VFORK) : 0);
  d.container_stack = container_stack;
  d.p2_stack = stacks + 2 * kDetachStack;
  d.tasks_fd = spec.cgroup_tasks_fd;
  d.status_fd = status_w;
  d.devnull = devnull;
  d.init_fd = init_fd;
  d.parent_slot = parent_slot;
  d.pidfd_slot = pidfd_slot;
  for (int fd : {report[0], pidfd_slot, status_w, ack[0], spec.dir, spec.out, spec.err}) {
    if (fd >= 0) d.keep[d.keep_count++] = fd;
  }
  d.pid_digits = mon_args[4] + 4;
  d.monitor_argv = mon_args.data();
  d.monitor_envp = mon_env;

  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int first_pidfd = -1;
  int first = clone(detached_first, stacks + kDetachStack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &d, &first_pidfd);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (first < 0) return parent_fail(Sys::kClone, clone_errno);
  siginfo_t info;
  reap(first_pidfd, &info);
  close(first_pidfd);

  // Only the monitor (or P2 failing) holds the write end now: EOF means it is gone.
  for (int& fd : made) {
    if (fd != status[0] && fd != ack[1]) close(fd);
  }
  made.assign({status[0], ack[1]});
  DetachStart start{};
  size_t got = 0;
  while (got < sizeof start) {
    ssize_t n = read(status[0], reinterpret_cast<char*>(&start) + got, sizeof start - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got != sizeof start) {
    result.vanished = true;
    result.vanished_status = 0;
    return result;
  }
  result.monitor_pid = start.monitor_pid;
  result.container_pid = start.container_pid;
  if (start.report.kind == static_cast<int32_t>(ReportKind::kStarted)) {
    result.ack_fd = ack[1];
    made.assign(1, status[0]);
    return result;
  }
  // A failure: the monitor reaped the container, and exits; its exit closes the pipe.
  char drain[64];
  for (;;) {
    ssize_t n = read(status[0], drain, sizeof drain);
    if (n == 0 || (n < 0 && errno != EINTR)) break;
  }
  if (start.report.kind == 0) {
    result.vanished = true;
    result.vanished_status = start.vanished;
  } else if (start.report.step == -1 && start.container_pid == 0) {
    result.parent_sys = static_cast<Sys>(start.report.sys);
    result.parent_errno = start.report.err;
  } else {
    result.failed = true;
    result.error = start.report;
  }
  return result;
}

}  // namespace nsbox
