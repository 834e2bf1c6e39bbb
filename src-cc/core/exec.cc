#include "core/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "core/exec_child.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

namespace nsbox {
namespace {

constexpr size_t kStackSize = 128 * 1024;

// Two stacks per calling thread (the first process's and the second's), made once; with
// CLONE_VFORK the thread is suspended while they are used. The lowest page of each is a guard.
char* exec_stacks() {
  thread_local char* base = nullptr;
  if (!base) {
    void* mem = mmap(nullptr, 2 * kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
    mprotect(mem, 4096, PROT_NONE);
    mprotect(static_cast<char*>(mem) + kStackSize, 4096, PROT_NONE);
    base = static_cast<char*>(mem);
  }
  return base;
}

// Only for a child without a pidfd; the rest go through spawn.h's reap().
void wait_exit_pid(int pid, siginfo_t* info) {
  while (waitid(P_PID, static_cast<id_t>(pid), info, WEXITED) < 0 && errno == EINTR) {
  }
}

int wait_status(const siginfo_t& info) { return info.si_code == CLD_EXITED ? (info.si_status & 0xff) << 8 : (info.si_status & 0x7f); }

}  // namespace

SpawnResult exec_in(const Plan& plan, const ExecTarget& target, int init_fd) {
  SpawnResult result;
  char* stacks = exec_stacks();
  int report[2];
  if (!stacks || pipe2(report, O_CLOEXEC) < 0) {
    result.parent_sys = stacks ? Sys::kPipe : Sys::kClone;
    result.parent_errno = stacks ? errno : ENOMEM;
    return result;
  }
  int self_pidfd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  std::vector<std::string> words;
  words.reserve(plan.init_options.size() + plan.argv.size() + 5);
  words.emplace_back("nsbox-init");
  words.push_back("report=" + std::to_string(report[1]));
  if (self_pidfd >= 0) words.push_back("parent=" + std::to_string(self_pidfd));
  words.emplace_back("exec");
  words.insert(words.end(), plan.init_options.begin(), plan.init_options.end());
  words.emplace_back("--");
  words.insert(words.end(), plan.argv.begin(), plan.argv.end());
  std::vector<char*> argv;
  argv.reserve(words.size() + 1);
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  ExecChildArgs args{&plan, &target, report[1], self_pidfd, init_fd, argv.data(), stacks + 2 * kStackSize, -1, -1};

  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  // The children make the address space they share with Node non-dumpable: put it back after
  // (once no other start's child is in it either).
  shared_vm_enter();
  int join_pidfd = -1;
  int join_pid = clone(exec_join_main, stacks + kStackSize, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &args, &join_pidfd);
  int clone_errno = errno;
  shared_vm_leave();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(report[1]);
  if (self_pidfd >= 0) close(self_pidfd);
  if (join_pid < 0) {
    close(report[0]);
    result.parent_sys = Sys::kClone;
    result.parent_errno = clone_errno;
    return result;
  }
  // The first process has exited (it never execs) once CLONE_VFORK let this thread go.
  siginfo_t join_info;
  reap(join_pidfd, &join_info);
  close(join_pidfd);
  // The second is this process's child until reaped: its pid cannot be reused meanwhile.
  const int enter_pid = args.enter_pid;
  int enter_pidfd = enter_pid > 0 ? static_cast<int>(syscall(SYS_pidfd_open, enter_pid, 0)) : -1;
  if (enter_pid > 0 && enter_pidfd < 0) {
    // Cannot happen for an unreaped child but on a kernel without pidfds: reap it by pid.
    kill(enter_pid, SIGKILL);
    siginfo_t info;
    wait_exit_pid(enter_pid, &info);
    close(report[0]);
    result.parent_sys = Sys::kClone;
    result.parent_errno = errno;
    return result;
  }

  Report rec;
  ssize_t n;
  do {
    n = read(report[0], &rec, sizeof rec);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof rec) && rec.kind == static_cast<int32_t>(ReportKind::kStarted) && enter_pidfd >= 0) {
    fcntl(report[0], F_SETFL, O_NONBLOCK);
    result.pid = enter_pid;
    result.pidfd = enter_pidfd;
    result.report_fd = report[0];
    return result;
  }
  close(report[0]);
  if (n == static_cast<ssize_t>(sizeof rec)) {
    result.failed = true;
    result.error = rec;
    if (enter_pidfd >= 0) kill_and_reap(enter_pidfd);
  } else {
    result.vanished = true;
    if (enter_pidfd >= 0) {
      siginfo_t info;
      reap(enter_pidfd, &info);
      result.vanished_status = wait_status(info);
    } else {
      result.vanished_status = wait_status(join_info);
    }
  }
  if (enter_pidfd >= 0) close(enter_pidfd);
  return result;
}

}  // namespace nsbox
