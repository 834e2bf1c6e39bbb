// Small calls on the host for JS (see host_calls.h).

#include "binding/host_calls.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "binding/fsat.h"
#include "binding/instance.h"
#include "binding/plan_reader.h"
#include "core/devbpf.h"
#include "core/hostmount.h"
#include "core/loopdev.h"
#include "core/pty.h"
#include "core/subid.h"
#include "core/xattr.h"

namespace nsbox {

Napi::Value ResizePty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "resizePty(fd, cols, rows)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int err = resize_pty(info[0].As<Napi::Number>().Int32Value(), static_cast<unsigned short>(info[1].As<Napi::Number>().Uint32Value()),
                       static_cast<unsigned short>(info[2].As<Napi::Number>().Uint32Value()));
  if (err) return errno_object(env, err, "ioctl");
  return env.Null();
}

namespace {

Napi::Value result_or_null(Napi::Env env, const HostMountResult& res) {
  if (!res.err) return env.Null();
  return errno_object(env, res.err, res.sys);
}

}  // namespace

// mountOverlay({ lowerdir (escaped), upper, work, target, readonly }) -> null | errno object
Napi::Value MountOverlay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "mountOverlay(options)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Reader r(env);
  Napi::Object o = info[0].As<Napi::Object>();
  std::string lowerdir = r.Str(o, "lowerdir", true);
  std::string upper = r.Str(o, "upper"), work = r.Str(o, "work"), target = r.Str(o, "target", true);
  if (r.ok() && lowerdir.empty()) r.Fail("lowerdir must not be empty");
  if (!r.ok()) {
    Napi::TypeError::New(env, r.error()).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return result_or_null(env, mount_overlay(lowerdir, upper, work, target, r.Bool(o, "readonly")));
}

Napi::Value Unmount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "unmount(target: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return result_or_null(env, unmount(info[0].As<Napi::String>().Utf8Value()));
}

// getXattr(path, name) -> Buffer | null (no such attribute) | errno object
Napi::Value GetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "getXattr(path: string, name: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  char buf[256];
  ssize_t n = get_xattr_nofollow(path.c_str(), name.c_str(), buf, sizeof buf);
  if (n < 0) {
    if (n == -ENODATA) return env.Null();
    return errno_object(env, static_cast<int>(-n), "lgetxattr");
  }
  return Napi::Buffer<char>::Copy(env, buf, static_cast<size_t>(n));
}

// attachDeviceProgram(cgroupDir, insns: Uint8Array) -> null | errno object
Napi::Value AttachDeviceProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsTypedArray()) {
    Napi::TypeError::New(env, "attachDeviceProgram(cgroupDir: string, insns: Uint8Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string dir = info[0].As<Napi::String>().Utf8Value();
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  if (ta.ByteLength() % 8 || ta.ByteLength() == 0) {
    Napi::TypeError::New(env, "attachDeviceProgram: insns must hold whole BPF instructions").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const char* bytes = static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  // Copied: the kernel reads it during the call, but an aligned copy costs nothing here.
  std::vector<uint64_t> insns(ta.ByteLength() / 8);
  memcpy(insns.data(), bytes, ta.ByteLength());
  DevBpfResult r = attach_device_program(dir.c_str(), insns.data(), insns.size());
  if (!r.err) return env.Null();
  return errno_object(env, r.err, r.sys);
}

// pidfdOpen(pid) -> a close-on-exec pidfd | errno object. The caller proves it is the process
// it means (start time, pid namespace) after opening it: from then on the fd cannot change.
Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "pidfdOpen(pid: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = static_cast<int>(syscall(SYS_pidfd_open, info[0].As<Napi::Number>().Int32Value(), 0));
  if (fd < 0) return errno_object(env, errno, "pidfd_open");
  // Closed by closeFd; by the environment's teardown if JS was stopped first (a worker
  // terminated in the middle of an exec runs no finally block).
  env.GetInstanceData<Instance>()->js_fds.insert(fd);
  return Napi::Number::New(env, fd);
}

// adoptFd(fd): JS has a stream over a stdio end a start handed it; no-op for other fds.
Napi::Value AdoptFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() >= 1 && info[0].IsNumber()) env.GetInstanceData<Instance>()->handed_fds.erase(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

// closeFd(fd): closes an fd pidfdOpen returned.
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "closeFd(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  if (env.GetInstanceData<Instance>()->js_fds.erase(fd) == 0) {
    Napi::TypeError::New(env, "closeFd: not an fd of pidfdOpen").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  close(fd);
  return env.Undefined();
}

// pidfdAlive(fd, waitMs = 0) -> whether the process is still running: a pidfd polls readable
// once its process has exited (a zombie not yet reaped included, which signal 0 would still
// reach). With waitMs, false as soon as it exits within that time.
Napi::Value PidfdAlive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber() || (info.Length() > 1 && !info[1].IsNumber())) {
    Napi::TypeError::New(env, "pidfdAlive(fd: number, waitMs?: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int wait_ms = info.Length() > 1 ? info[1].As<Napi::Number>().Int32Value() : 0;
  struct pollfd p = {info[0].As<Napi::Number>().Int32Value(), POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, wait_ms < 0 ? 0 : wait_ms);
  } while (r < 0 && errno == EINTR);
  return Napi::Boolean::New(env, r == 0);
}

// tryLockFd(fd) -> true (this open file now holds an exclusive flock), false (another holds
// it) | errno object. Never blocks the JS thread: callers poll. The kernel drops the lock with
// the last fd on the open file, so a holder that dies frees it (host-wide id range claims).
Napi::Value TryLockFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "tryLockFd(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int r;
  do {
    r = flock(info[0].As<Napi::Number>().Int32Value(), LOCK_EX | LOCK_NB);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return Napi::Boolean::New(env, true);
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  return errno_object(env, errno, "flock");
}

// attachLoop(file, readonly) -> { fd, device } | errno object (limits.disk, core/loopdev.h)
Napi::Value AttachLoop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBoolean()) {
    Napi::TypeError::New(env, "attachLoop(file: string, readonly: boolean)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  LoopResult r = attach_loop(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Boolean>().Value());
  if (r.err) return errno_object(env, r.err, r.sys);
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", Napi::Number::New(env, r.fd));
  o.Set("device", Napi::String::New(env, r.device));
  return o;
}

// mountDetached(fstype, source, readonly, attrs) -> fd | errno object
Napi::Value MountDetached(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsBoolean() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "mountDetached(fstype, source, readonly, attrs)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  DetachedMount r = mount_detached(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(),
                                   info[2].As<Napi::Boolean>().Value(), info[3].As<Napi::Number>().Uint32Value());
  if (r.err) return errno_object(env, r.err, r.sys);
  return Napi::Number::New(env, r.fd);
}

}  // namespace nsbox

namespace nsbox {
namespace {

// What runInUserns runs: owns its strings (an async one outlives the call).
struct UsernsJob {
  std::string file, newuidmap, newgidmap;
  std::vector<std::string> argv, env, uid_args, gid_args;
  int out = -1;
  int status = -1;
  Sys sys = Sys::kNone;
  int err = 0;

  static std::vector<const char*> pointers(const std::vector<std::string>& v) {
    std::vector<const char*> p;
    for (const std::string& s : v) p.push_back(s.c_str());
    p.push_back(nullptr);
    return p;
  }
  void Run() {
    std::vector<const char*> a = pointers(argv), e = pointers(env), u = pointers(uid_args), g = pointers(gid_args);
    status = userns_exec(file.c_str(), a.data(), e.data(), out, newuidmap.c_str(), u.data(), newgidmap.c_str(), g.data(), &sys, &err);
  }
  Napi::Value Result(Napi::Env env) const {
    if (status >= 0) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("status", status);
      return o;
    }
    // A map helper's failure is its exit status (subid.h), not an errno.
    if ((sys == Sys::kNewuidmap || sys == Sys::kNewgidmap) && err >= kMapHelperFailed) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("helper", syscall_name(sys));
      o.Set("helperStatus", err - kMapHelperFailed);
      return o;
    }
    return errno_object(env, err, syscall_name(sys));
  }
};

bool read_job(const Napi::CallbackInfo& info, UsernsJob* job, std::string* why) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    *why = "runInUserns({ file, argv, env, out, newuidmap, uidArgs, newgidmap, gidArgs }[, done])";
    return false;
  }
  Reader r(info.Env());
  Napi::Object o = info[0].As<Napi::Object>();
  job->file = r.Str(o, "file", true);
  job->newuidmap = r.Str(o, "newuidmap", true);
  job->newgidmap = r.Str(o, "newgidmap", true);
  job->argv = r.Strs(o, "argv");
  job->env = r.Strs(o, "env");
  job->uid_args = r.Strs(o, "uidArgs");
  job->gid_args = r.Strs(o, "gidArgs");
  job->out = static_cast<int>(r.Num(o, "out"));
  if (r.ok() && (job->file[0] != '/' || job->newuidmap[0] != '/' || job->newgidmap[0] != '/')) r.Fail("absolute paths");
  if (r.ok() && (job->argv.empty() || job->out < 0)) r.Fail("argv must not be empty, out an fd");
  if (r.ok() && (job->uid_args.size() > kMaxMapHelperArgs || job->gid_args.size() > kMaxMapHelperArgs)) r.Fail("at most 16 map arguments");
  if (!r.ok()) *why = r.error();
  return r.ok();
}

class UsernsWork : public Napi::AsyncWorker {
 public:
  UsernsWork(const Napi::Function& callback, UsernsJob job) : Napi::AsyncWorker(callback, "nsbox.runInUserns"), job_(std::move(job)) {}
  void Execute() override { job_.Run(); }
  void OnOK() override {
    Napi::Env env = Env();
    if (!env_can_run_js(env)) return;
    Callback().Call({job_.Result(env)});
  }

 private:
  UsernsJob job_;
};

}  // namespace

// runInUserns(spec) -> { status } | { helper, helperStatus } | errno object: the program run
// in a user namespace with the subordinate map (core/subid.h), waited for. With `done`, on
// libuv's pool, and `done` gets that result.
Napi::Value RunInUserns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UsernsJob job;
  std::string why;
  if (!read_job(info, &job, &why)) {
    Napi::TypeError::New(env, why).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() > 1 && info[1].IsFunction()) {
    (new UsernsWork(info[1].As<Napi::Function>(), std::move(job)))->Queue();
    return env.Undefined();
  }
  job.Run();
  return job.Result(env);
}

}  // namespace nsbox
