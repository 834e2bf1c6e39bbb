// process.exit() on the main thread runs the 'exit' listeners and then ends the process: no
// environment cleanup hook runs (binding.cc's teardown is a worker's), and no turn of the loop
// comes to reap a container or remove its cgroups. Its containers would still die (their
// PR_SET_PDEATHSIG names the spawner thread, which dies with the process), but nobody would
// reap them, and their cgroup directories would stay on the host, empty. So src/container.ts
// calls killAllSync from its 'exit' listener: every process this environment watches is
// SIGKILLed at once, reaped, and its cgroup directories removed, all within a deadline.
//
// Why a deadline: the SIGKILL of a container's nsbox-init (its pid namespace's PID 1) makes
// the kernel kill every process of the namespace and wait for them before init shows as
// exited. That takes milliseconds, unless a process is stuck in an uninterruptible sleep (a
// hung NFS or FUSE server) or has gigabytes to unmap. process.exit() must not hang on that:
// what is not reaped by the deadline is left (dead or dying, reaped by init once this process
// is gone), and reported so, and its cgroups are left to the next Runtime (src/runtime.ts
// finishes the runs of dead supervisors).

#include "binding/exit.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mutex>
#include <string>
#include <vector>

#include "binding/instance.h"
#include "binding/process.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace nsbox {
namespace {

int64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(long ms) {
  struct timespec ts = {0, ms * 1000000};
  nanosleep(&ts, nullptr);
}

// Reaps the pidfd's process once it has exited, waiting for that until `deadline` at most.
// True when it was reaped (`info` then says how it ended).
bool reap_by(int pidfd, int64_t deadline, siginfo_t* info) {
  for (;;) {
    memset(info, 0, sizeof *info);
    // WNOHANG: a non-blocking pidfd says EAGAIN instead of 0 with no pid; both mean "not yet".
    int r = waitid(static_cast<idtype_t>(P_PIDFD), pidfd, info, WEXITED | WNOHANG);
    if (r == 0 && info->si_pid != 0) return true;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno != EAGAIN) return false;
    int64_t left = deadline - now_ms();
    if (left <= 0) return false;
    // A pidfd polls readable once its process has exited.
    struct pollfd p = {pidfd, POLLIN, 0};
    poll(&p, 1, static_cast<int>(left));
  }
}

// rmdir of each directory, EBUSY retried until `deadline` (a v1 cgroup may say busy for a
// moment after its last process was reaped). True when none is left.
bool remove_dirs_by(const std::vector<std::string>& dirs, int64_t deadline) {
  bool all = true;
  for (const std::string& dir : dirs) {
    for (;;) {
      if (rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY || now_ms() >= deadline) {
        all = false;
        break;
      }
      sleep_ms(1);
    }
  }
  return all;
}

}  // namespace

// killAllSync(budgetMs) -> [{ pid, reaped, clean, code, signal, usage }]: every process this
// environment watches (containers' nsbox-init and execs'), SIGKILLed, reaped and its cgroup
// directories removed within budgetMs; `clean` when both happened; code, signal and usage as
// an exit callback gets them (the command's own, when it ended before the kill). Starts in flight are ended the same way by
// whichever thread holds them, and waited for within the same budget. Nothing is watched or
// handed to JS afterwards: for the 'exit' event only.
Napi::Value KillAllSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "killAllSync(budgetMs: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  double budget = info[0].As<Napi::Number>().DoubleValue();
  if (!(budget >= 0)) budget = 0;
  if (budget > 60000) budget = 60000;
  const int64_t deadline = now_ms() + static_cast<int64_t>(budget);
  Instance* inst = env.GetInstanceData<Instance>();

  // No start is handed to JS from now on: a spawner thread that finishes one kills it, reaps
  // it and removes its cgroups itself (Instance::Finish). Those finished already go here.
  std::vector<StartJob*> finished;
  {
    std::lock_guard<std::mutex> lock(inst->done_mu);
    inst->closed = true;
    finished.swap(inst->done);
  }
  std::vector<Process*> procs(inst->live.begin(), inst->live.end());
  // All at once: their pid namespaces are torn down side by side.
  for (Process* p : procs) syscall(SYS_pidfd_send_signal, p->pidfd(), SIGKILL, nullptr, 0);
  for (StartJob* job : finished) discard_start(job);
  while (inst->in_flight.load() > 0 && now_ms() < deadline) sleep_ms(1);

  Napi::Array out = Napi::Array::New(env, procs.size());
  uint32_t i = 0;
  for (Process* p : procs) {
    siginfo_t status;
    const bool reaped = reap_by(p->pidfd(), deadline, &status);
    const bool clean = reaped && remove_dirs_by(p->cgroups(), deadline);
    Napi::Value code = env.Null(), sig = env.Null(), usage = env.Null();
    if (reaped) p->Decode(env, &status, &code, &sig, &usage);
    Napi::Object o = Napi::Object::New(env);
    o.Set("pid", p->pid());
    o.Set("reaped", reaped);
    o.Set("clean", clean);
    o.Set("code", code);
    o.Set("signal", sig);
    o.Set("usage", usage);
    out.Set(i++, o);
    // Its poll handle stopped and its fds closed: its exit is never reported to JS.
    p->Release();
  }
  return out;
}

}  // namespace nsbox
