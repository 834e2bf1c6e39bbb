#include "core/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/child.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
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
    void* mem = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
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

}  // namespace

SpawnResult spawn(const Plan& plan) {
  SpawnResult result;
  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) < 0) {
    result.parent_sys = Sys::kPipe;
    result.parent_errno = errno;
    return result;
  }
  char* stack = child_stack_top();
  if (!stack) {
    close(errpipe[0]);
    close(errpipe[1]);
    result.parent_sys = Sys::kClone;
    result.parent_errno = ENOMEM;
    return result;
  }
  // A pidfd of this very process (always close-on-exec), for the child to notice Node died
  // before its parent-death signal was armed. Opened per start rather than kept, so that
  // nothing of nsbox stays open between containers. -1 (no check) on a kernel without it.
  int self_pidfd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  ChildArgs args{&plan, errpipe[1], self_pidfd};
  int flags = plan.clone_flags | CLONE_PIDFD | SIGCHLD;
  if (plan.share_vm) flags |= CLONE_VM | CLONE_VFORK;

  // Blocked around clone so that no Node handler runs in the child before it resets them.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  // The child makes itself non-dumpable until execve. With CLONE_VM that flag lands on the
  // address space it shares with Node: put Node's back once the child has left it.
  int dumpable = plan.share_vm ? prctl(PR_GET_DUMPABLE) : -1;
  int pidfd = -1;
  int pid = clone(child_main, stack, flags, &args, &pidfd);
  int clone_errno = errno;
  if (dumpable > 0) prctl(PR_SET_DUMPABLE, dumpable);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(errpipe[1]);
  if (self_pidfd >= 0) close(self_pidfd);

  if (pid < 0) {
    close(errpipe[0]);
    result.parent_sys = Sys::kClone;
    result.parent_errno = clone_errno;
    return result;
  }

  ErrorRecord rec;
  ssize_t n;
  do {
    n = read(errpipe[0], &rec, sizeof rec);
  } while (n < 0 && errno == EINTR);
  close(errpipe[0]);

  if (n == static_cast<ssize_t>(sizeof rec)) {
    // The child wrote its record and _exited: reap it here, it was never a container.
    siginfo_t info;
    while (waitid(static_cast<idtype_t>(P_PIDFD), pidfd, &info, WEXITED) < 0 && errno == EINTR) {
    }
    close_fd(pidfd);
    result.failed = true;
    result.error = rec;
    return result;
  }
  result.pid = pid;
  result.pidfd = pidfd;
  return result;
}

}  // namespace nsbox
