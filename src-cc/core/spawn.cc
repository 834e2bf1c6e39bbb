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

#include <cstdint>
#include <string>
#include <vector>

#include "core/child.h"

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

void reap(int pidfd, siginfo_t* info) {
  while (waitid(static_cast<idtype_t>(P_PIDFD), pidfd, info, WEXITED) < 0 && errno == EINTR) {
  }
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

void kill_and_reap(int pidfd) {
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  // waitid on a non-blocking pidfd fails with EAGAIN instead of waiting.
  int fl = fcntl(pidfd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(pidfd, F_SETFL, fl & ~O_NONBLOCK);
  siginfo_t info;
  reap(pidfd, &info);
}

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
  ChildArgs args{&plan, report[1], self_pidfd, init_fd, argv.data()};
  int flags = plan.clone_flags | CLONE_PIDFD | SIGCHLD;
  if (plan.share_vm) flags |= CLONE_VM | CLONE_VFORK;
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
  // address space it shares with Node: put Node's back once the child has left it.
  int dumpable = plan.share_vm ? prctl(PR_GET_DUMPABLE) : -1;
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
  if (dumpable > 0) prctl(PR_SET_DUMPABLE, dumpable);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(report[1]);
  if (self_pidfd >= 0) close(self_pidfd);

  if (pid < 0) {
    close(report[0]);
    result.parent_sys = Sys::kClone;
    result.parent_errno = clone_errno;
    return result;
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

}  // namespace nsbox
