// The processes of an exec, from clone until the second one execs nsbox-init.
//
// The child's rule holds here as in child.cc: both run in Node's address space (CLONE_VM), so
// after clone they only make async-signal-safe system calls on data prepared before clone (no
// malloc, no new, no std::string, no exceptions, no stdio, no locks). A failure is one Report
// on the CLOEXEC report pipe, then _exit.
//
// Why two processes: setns(CLONE_NEWPID) puts only the caller's future children in the
// container's pid namespace, so the first process (join) enters everything and clones the
// second (enter), which is inside. The second is cloned with CLONE_PARENT: its parent is the
// Node process, which watches and reaps it through a pidfd as it does a container's init.
// Both are non-dumpable (the flag is on the address space they share with Node, put back by
// the parent afterwards): the second is visible in the container's /proc while it still holds
// Node's fds and has Node's binary as /proc/PID/exe, and nothing in the container may open
// either (the CVE-2016-9962 and CVE-2019-5736 classes). Every fd of Node's is close-on-exec,
// and the exec replaces Node's image with nsbox-init's sealed memfd.

#include "core/exec_child.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "core/fdpass.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace nsbox {
namespace {

[[noreturn]] void fail(const ExecChildArgs& a, ExecStep step, Sys sys, int err) {
  Report rec{static_cast<int32_t>(ReportKind::kFailed), static_cast<int32_t>(step), static_cast<int32_t>(sys), err, 0, 0, 0, 0, 0};
  ssize_t n;
  do {
    n = write(a.report_fd, &rec, sizeof rec);
  } while (n < 0 && errno == EINTR);
  _exit(125);
}

// Node may have died before the parent-death signal was armed: its pidfd tells.
void exit_if_supervisor_gone(const ExecChildArgs& a) {
  if (a.parent_pidfd < 0) return;
  struct pollfd p = {a.parent_pidfd, POLLIN, 0};
  if (poll(&p, 1, 0) != 0) _exit(125);
}

// The container's own terminal: a new pty from its devpts instance, found from its root
// without following any link, and checked to be a devpts ptmx (a privileged container could
// put something else at that path). The master goes to the parent over the plan's socket.
int open_terminal(ExecChildArgs& a) {
  const Plan& plan = *a.plan;
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) fail(a, ExecStep::kTerminal, Sys::kOpen, errno);
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_RDWR | O_NOCTTY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int master = static_cast<int>(syscall(SYS_openat2, root, "dev/pts/ptmx", &how, sizeof how));
  if (master < 0) fail(a, ExecStep::kTerminal, Sys::kOpenat2, errno);
  close(root);
  struct stat st;
  struct statfs fs;
  if (fstat(master, &st) < 0) fail(a, ExecStep::kTerminal, Sys::kFstat, errno);
  if (fstatfs(master, &fs) < 0) fail(a, ExecStep::kTerminal, Sys::kFstat, errno);
  if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(5, 2) || fs.f_type != DEVPTS_SUPER_MAGIC) fail(a, ExecStep::kTerminal, Sys::kFstat, ENODEV);
  int unlock = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0) fail(a, ExecStep::kTerminal, Sys::kIoctl, errno);
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_col = plan.pty_cols;
  ws.ws_row = plan.pty_rows;
  if (ioctl(master, TIOCSWINSZ, &ws) < 0) fail(a, ExecStep::kTerminal, Sys::kIoctl, errno);
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) fail(a, ExecStep::kTerminal, Sys::kIoctl, errno);
  if (slave < 3) {  // never one of the stdio numbers it is about to be dup2'd onto
    int moved = fcntl(slave, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) fail(a, ExecStep::kTerminal, Sys::kFcntl, errno);
    close(slave);
    slave = moved;
  }
  if (send_fd(plan.pty_socket, master) < 0) fail(a, ExecStep::kTerminal, Sys::kSendmsg, errno);
  close(master);
  return slave;
}

// The second process, inside the pid namespace: stdio, signals, fds, then nsbox-init.
int exec_enter_main(void* arg) {
  ExecChildArgs& a = *static_cast<ExecChildArgs*>(arg);
  const Plan& plan = *a.plan;
  // Its parent is Node's thread (CLONE_PARENT); a new process starts without the signal.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail(a, ExecStep::kExec, Sys::kPrctl, errno);
  exit_if_supervisor_gone(a);
  // A session of its own: signals from the supervisor's terminal never reach it.
  if (setsid() < 0) fail(a, ExecStep::kExec, Sys::kSetsid, errno);
  const int tty_stdio[3] = {a.pty_slave, a.pty_slave, a.pty_slave};
  const int* stdio = a.pty_slave >= 0 ? tty_stdio : plan.stdio;
  for (int fd = 0; fd < 3; fd++) {
    // Every prepared fd is above 2, so no dup2 clobbers another's source.
    if (stdio[fd] == fd) {
      if (fcntl(fd, F_SETFD, 0) < 0) fail(a, ExecStep::kExec, Sys::kFcntl, errno);
    } else if (dup2(stdio[fd], fd) < 0) {
      fail(a, ExecStep::kExec, Sys::kDup2, errno);
    }
  }
  // Node ignores SIGPIPE and has handlers; an ignored signal would survive execve.
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < _NSIG; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
  }
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) fail(a, ExecStep::kExec, Sys::kCloseRange, errno);
  if (fcntl(a.report_fd, F_SETFD, 0) < 0) fail(a, ExecStep::kExec, Sys::kFcntl, errno);
  if (a.parent_pidfd >= 0 && fcntl(a.parent_pidfd, F_SETFD, 0) < 0) fail(a, ExecStep::kExec, Sys::kFcntl, errno);
  syscall(SYS_execveat, a.init_fd, "", a.init_argv, plan.envp.data(), AT_EMPTY_PATH);
  fail(a, ExecStep::kExec, Sys::kExecveat, errno);
}

}  // namespace

int exec_join_main(void* arg) {
  ExecChildArgs& a = *static_cast<ExecChildArgs*>(arg);
  const ExecTarget& t = *a.target;
  if (prctl(PR_SET_DUMPABLE, 0) < 0) fail(a, ExecStep::kJoin, Sys::kPrctl, errno);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail(a, ExecStep::kJoin, Sys::kPrctl, errno);
  exit_if_supervisor_gone(a);
  // The container's cgroups first, while this process is still outside: the second process
  // is born in them, so every process of the exec is limited as the container is.
  for (int fd : t.cgroup_procs) {
    ssize_t n;
    do {
      n = write(fd, "0", 1);
    } while (n < 0 && errno == EINTR);
    if (n < 0) fail(a, ExecStep::kCgroup, Sys::kWrite, errno);
  }
  // All namespaces at once, through the pidfd the parent proved to be the container's init:
  // a pid reused meanwhile cannot be joined (the pidfd refers to the process, not the number),
  // and a dead init fails here (ESRCH). Joining the mount namespace sets root and cwd to the
  // container's root.
  if (syscall(SYS_setns, t.pidfd, t.ns_flags) < 0) fail(a, ExecStep::kSetns, Sys::kSetns, errno);
  // In the container's own user namespace, root of it before nsbox-init's execve: execve gives
  // capabilities to that namespace's root only, and the host id this process has is not it
  // where the map is a range (root's userns 'auto': host root is unmapped there). Rootless,
  // the user's id is that root already and this changes nothing.
  if (t.ns_flags & CLONE_NEWUSER) {
    if (syscall(SYS_setresgid, 0, 0, 0) < 0) fail(a, ExecStep::kSetns, Sys::kSetresgid, errno);
    if (syscall(SYS_setresuid, 0, 0, 0) < 0) fail(a, ExecStep::kSetns, Sys::kSetresuid, errno);
  }
  a.pty_slave = a.plan->pty_socket >= 0 ? open_terminal(a) : -1;
  int pid = clone(exec_enter_main, a.enter_stack, CLONE_VM | CLONE_VFORK | CLONE_PARENT | SIGCHLD, &a);
  if (pid < 0) fail(a, ExecStep::kEnter, Sys::kClone, errno);
  // With CLONE_VFORK the second process has exec'd (or died) by now.
  a.enter_pid = pid;
  _exit(0);
}

}  // namespace nsbox
