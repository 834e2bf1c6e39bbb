// See subid.h. Everything between a clone and its child's execve follows the child's rule:
// system calls on data prepared before the clone.

#include "core/subid.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/decimal.h"

namespace nsbox {

namespace {

// Signal handlers back to default (the clone's own copy of the table), then nothing blocked:
// what execve would not undo, done before it.
void default_signals() {
  struct sigaction dfl;
  __builtin_memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < _NSIG; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
  }
  uint64_t none = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
}

uint64_t block_all() {
  uint64_t all = ~0ULL, old = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof all);
  return old;
}

void restore_mask(uint64_t old) { syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, nullptr, sizeof old); }

int wait_status(int pid, int* status) {
  long r;
  do {
    r = syscall(SYS_wait4, pid, status, 0, nullptr);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? errno : 0;
}

int helper_result(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status) == 0 ? 0 : kMapHelperFailed + WEXITSTATUS(status);
  return kMapHelperFailed + 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

struct HelperExec {
  const char* file;
  const char* const* argv;
  int devnull;
};

int helper_exec(void* arg) {
  const HelperExec& h = *static_cast<const HelperExec*>(arg);
  default_signals();
  for (int fd = 0; fd < 3; fd++) dup2(h.devnull, fd);
  const char* const envp[] = {nullptr};
  syscall(SYS_execve, h.file, h.argv, envp);
  _exit(127);
}

}  // namespace

int run_map_helper(const char* file, const char* const* args, int pid) {
  const char* argv[kMaxMapHelperArgs + 3];
  char digits[16];
  put_decimal(digits, static_cast<unsigned>(pid));
  int n = 0;
  argv[n++] = file;
  argv[n++] = digits;
  for (int i = 0; args[i]; i++) {
    if (i == kMaxMapHelperArgs) return E2BIG;
    argv[n++] = args[i];
  }
  argv[n] = nullptr;
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) return errno;
  HelperExec h{file, argv, devnull};
  // The helper runs on this buffer until its execve while this thread is suspended
  // (CLONE_VFORK): nothing of this frame is used meanwhile.
  alignas(64) char stack[16 * 1024];
  uint64_t old = block_all();
  int child = clone(helper_exec, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &h);
  int clone_errno = errno;
  restore_mask(old);
  close(devnull);
  if (child < 0) return clone_errno;
  int status = 0;
  if (int err = wait_status(child, &status)) return err;
  return helper_result(status);
}

namespace {

struct UsernsChild {
  const char* file;
  const char* const* argv;
  const char* const* envp;
  int go;        // read end: one byte once the maps are written
  int go_write;  // the write end, closed first: the child's copy would hide the EOF
  int out;
};

// Closes every fd from 3 up but `a` and `b` (close_range: one system call per gap; on a
// kernel without it, before 5.9, they stay, close-on-exec as Node opened them).
void close_fds_but(int a, int b) {
  if (a > b) {
    int t = a;
    a = b;
    b = t;
  }
  unsigned from = 3;
  const int keeps[2] = {a, b};
  for (int keep : keeps) {
    if (keep >= static_cast<int>(from)) {
      if (keep > static_cast<int>(from)) syscall(SYS_close_range, from, static_cast<unsigned>(keep) - 1, 0u);
      from = static_cast<unsigned>(keep) + 1;
    }
  }
  syscall(SYS_close_range, from, ~0u, 0u);
}

int userns_child(void* arg) {
  const UsernsChild& c = *static_cast<const UsernsChild*>(arg);
  default_signals();
  // Its fd table is a copy of the parent's (no CLONE_FILES), the write end included: held
  // here, it would keep the pipe open after the parent closed its own on a failed map, and
  // this read would never end (nor the parent's wait for it).
  close(c.go_write);
  // Nothing else of the parent's either: its own fds are close-on-exec, but not those it
  // inherited (a caller's pipe left open would stay open in the helper for its whole run).
  close_fds_but(c.go, c.out);
  // newuidmap requires /proc/PID to be the user's, i.e. this process dumpable. Its address
  // space is its own copy of Node's, flag included, and Node's is 0 while a concurrent start's
  // or exec's CLONE_VM child runs in it (spawn.h shared_vm_enter): a clone landing then
  // would have every map refused.
  prctl(PR_SET_DUMPABLE, 1);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  char byte;
  ssize_t n;
  do {
    n = read(c.go, &byte, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) _exit(125);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(c.out, 1) < 0 || dup2(c.out, 2) < 0) _exit(126);
  syscall(SYS_execve, c.file, c.argv, c.envp);
  _exit(127);
}

}  // namespace

int userns_exec(const char* file, const char* const* argv, const char* const* envp, int out, const char* newuidmap, const char* const* uid_args,
                const char* newgidmap, const char* const* gid_args, Sys* sys, int* err) {
  int go[2];
  if (pipe2(go, O_CLOEXEC) < 0) {
    *sys = Sys::kPipe;
    *err = errno;
    return -1;
  }
  // Its own copy of this process's memory (no CLONE_VM): it blocks in read() while this
  // thread runs the helpers, so it must not run on anything this thread goes on using.
  constexpr size_t kStack = 64 * 1024;
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    close(go[0]);
    close(go[1]);
    *sys = Sys::kClone;
    *err = ENOMEM;
    return -1;
  }
  UsernsChild c{file, argv, envp, go[0], go[1], out};
  uint64_t old = block_all();
  int pid = clone(userns_child, static_cast<char*>(stack) + kStack, CLONE_NEWUSER | SIGCHLD, &c);
  int clone_errno = errno;
  restore_mask(old);
  munmap(stack, kStack);
  close(go[0]);
  if (pid < 0) {
    close(go[1]);
    *sys = Sys::kClone;
    *err = clone_errno;
    return -1;
  }
  int failed = run_map_helper(newuidmap, uid_args, pid);
  if (failed) *sys = Sys::kNewuidmap;
  if (!failed) {
    failed = run_map_helper(newgidmap, gid_args, pid);
    if (failed) *sys = Sys::kNewgidmap;
  }
  if (!failed) {
    ssize_t n;
    do {
      n = write(go[1], "g", 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
      *sys = Sys::kWrite;
      failed = errno;
    }
  }
  // EOF on a failure: the child exits 125 without running anything.
  close(go[1]);
  int status = 0;
  int werr = wait_status(pid, &status);
  if (failed) {
    *err = failed;
    return -1;
  }
  if (werr) {
    *sys = Sys::kRead;
    *err = werr;
    return -1;
  }
  return status;
}

}  // namespace nsbox
