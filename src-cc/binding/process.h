// Process: the N-API wrap of a started container's first process: watches its pidfd on the
// libuv loop, reaps it and reports its exit; kills and reaps it when the environment ends.
#pragma once

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <napi.h>
#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "binding/fsat.h"
#include "binding/instance.h"
#include "core/plan.h"
#include "core/spawn.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace nsbox {

// ---------------------------------------------------------------------------------------
// Process: a started container's first process, watched through its pidfd.

class Process : public Napi::ObjectWrap<Process> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeProcess",
                       {InstanceAccessor<&Process::Pid>("pid"), InstanceMethod<&Process::Kill>("kill"), InstanceMethod<&Process::Ref>("ref"),
                        InstanceMethod<&Process::Unref>("unref")});
  }

  explicit Process(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Process>(info) {}

  // The container's cgroup directories, removed by Teardown if the environment ends before
  // the container does (otherwise JS removes them after its exit).
  void SetCgroups(std::vector<std::string> dirs) { cgroups_ = std::move(dirs); }

  ~Process() override { Release(); }

  int pid() const { return pid_; }
  int pidfd() const { return pidfd_; }
  const std::vector<std::string>& cgroups() const { return cgroups_; }

  // Returns an errno when the loop cannot watch the pidfd: the fds then stay the caller's,
  // which kills the child. On success this object owns the pidfd (nsbox-init) and the report
  // pipe that gives the command's status.
  int Watch(Napi::Env env, int pid, int pidfd, int report_fd, Napi::Function on_exit) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    uv_poll_t* poll = new uv_poll_t;
    int r = uv_poll_init(loop, poll, pidfd);
    if (r != 0) {
      delete poll;  // never registered with the loop
      return -r;
    }
    r = uv_poll_start(poll, UV_READABLE, &Process::OnReadable);
    if (r != 0) {
      // Registered: only uv_close may free it.
      poll->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(poll), &Process::OnClosed);
      return -r;
    }
    pid_ = pid;
    pidfd_ = pidfd;
    report_fd_ = report_fd;
    poll_ = poll;
    poll_->data = this;
    on_exit_ = Napi::Persistent(on_exit);
    context_ = std::make_unique<Napi::AsyncContext>(env, "nsbox:container");
    self_ = Napi::Persistent(Value());  // alive until the exit is delivered
    instance_ = env.GetInstanceData<Instance>();
    instance_->live.insert(this);
    return 0;
  }

  // Stop watching and close the fds.
  void Release() {
    if (instance_) instance_->live.erase(this);
    instance_ = nullptr;
    StopPoll(nullptr);
    CloseFds();
  }

  void CloseFds() {
    if (pidfd_ >= 0) close(pidfd_);
    pidfd_ = -1;
    if (report_fd_ >= 0) close(report_fd_);
    report_fd_ = -1;
  }

  // Environment teardown. The container would die with the thread that cloned it
  // (PR_SET_PDEATHSIG), but nobody would reap it then: a worker's children pass to the
  // process's other threads, and Node reaps only its own. So kill it and reap it here.
  // Returns whether a close callback will report to `inst` (see Instance::closing).
  // The exit status of the reaped process (`info`: waitid's, or null when waitid failed).
  // nsbox-init reports the command's status before it exits; without that record (init was
  // killed: rm -f, the OOM killer, a dead supervisor) init's own status is the container's.
  void Decode(Napi::Env env, const siginfo_t* info, Napi::Value* code, Napi::Value* sig, Napi::Value* usage) {
    Report rec;
    ssize_t n = report_fd_ >= 0 ? read(report_fd_, &rec, sizeof rec) : -1;
    if (n == static_cast<ssize_t>(sizeof rec) && rec.kind == static_cast<int32_t>(ReportKind::kExited)) {
      if ((rec.status & 0x7f) == 0) *code = Napi::Number::New(env, (rec.status >> 8) & 0xff);
      else *sig = Napi::Number::New(env, rec.status & 0x7f);
      Napi::Object u = Napi::Object::New(env);
      u.Set("userUs", static_cast<double>(rec.user_us));
      u.Set("systemUs", static_cast<double>(rec.system_us));
      u.Set("maxRssKiB", static_cast<double>(rec.max_rss_kib));
      *usage = u;
    } else if (info && info->si_code == CLD_EXITED) {
      *code = Napi::Number::New(env, info->si_status);
    } else if (info) {
      *sig = Napi::Number::New(env, info->si_status);
    }
  }

  bool Teardown(Instance* inst) {
    if (pidfd_ >= 0) {
      kill_and_reap(pidfd_);
      // No JS runs to remove its cgroups: they would stay on the host, empty.
      remove_cgroup_dirs(cgroups_);
    }
    if (instance_) instance_->live.erase(this);
    instance_ = nullptr;
    bool closing = StopPoll(inst);
    CloseFds();
    return closing;
  }

 private:
  static void OnClosed(uv_handle_t* h) {
    Instance* inst = static_cast<Instance*>(h->data);
    delete reinterpret_cast<uv_poll_t*>(h);
    if (inst && --inst->closing == 0) napi_remove_async_cleanup_hook(inst->teardown);
  }

  bool StopPoll(Instance* teardown) {
    if (!poll_) return false;
    uv_poll_stop(poll_);
    poll_->data = teardown;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), &Process::OnClosed);
    poll_ = nullptr;
    return teardown != nullptr;
  }

  static void OnReadable(uv_poll_t* handle, int, int) { static_cast<Process*>(handle->data)->Reap(); }

  void Reap() {
    // A worker ending: no JS to tell; its teardown kills and reaps what is left.
    if (!env_can_run_js(Env())) {
      if (poll_) uv_poll_stop(poll_);
      return;
    }
    siginfo_t info;
    memset(&info, 0, sizeof info);
    // Only this child, through its own pidfd: never waitpid(-1), which would steal the
    // children of Node's child_process.
    int r;
    do {
      r = waitid(static_cast<idtype_t>(P_PIDFD), pidfd_, &info, WEXITED | WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0 && info.si_pid == 0) return;  // not yet
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Value code = env.Null(), sig = env.Null();
    Napi::Value usage = env.Null();
    Decode(env, r == 0 ? &info : nullptr, &code, &sig, &usage);
    Napi::FunctionReference cb = std::move(on_exit_);
    std::unique_ptr<Napi::AsyncContext> context = std::move(context_);
    Release();
    Napi::Object self = self_.Value();
    self_.Reset();
    if (r < 0) {
      // waitid failed on our own pidfd: report it as an exit without a status.
      code = Napi::Number::New(env, -1);
    }
    cb.MakeCallback(self, {code, sig, usage}, *context);
  }

  Napi::Value Pid(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pid_); }

  // kill(signal) -> null | errno object (ESRCH once the process has been reaped).
  Napi::Value Kill(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(env, "kill(signal: number)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (pidfd_ < 0) return errno_object(env, ESRCH, "pidfd_send_signal");
    int sig = info[0].As<Napi::Number>().Int32Value();
    int r = static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0));
    if (r < 0) return errno_object(env, errno, "pidfd_send_signal");
    return env.Null();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (poll_) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (poll_) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }

  int pid_ = -1;
  int pidfd_ = -1;
  int report_fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  std::vector<std::string> cgroups_;
  Instance* instance_ = nullptr;
  Napi::FunctionReference on_exit_;
  Napi::ObjectReference self_;
  std::unique_ptr<Napi::AsyncContext> context_;
};

}  // namespace nsbox
