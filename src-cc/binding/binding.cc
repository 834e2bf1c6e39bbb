// N-API glue: checks arguments, turns the JS plan into a core Plan, starts the child, and
// watches its pidfd on the libuv loop. No system logic lives here; see src-cc/core/.

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <napi.h>
#include <uv.h>

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "binding/digest.h"
#include "binding/extract.h"
#include "binding/fsat.h"
#include "core/fdpass.h"
#include "core/devbpf.h"
#include "core/exec.h"
#include "core/hostmount.h"
#include "core/loopdev.h"
#include "core/init_image.h"
#include "core/plan.h"
#include "core/pty.h"

#include <sys/socket.h>
#include "core/spawn.h"
#include "core/spawner.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace nsbox {
namespace {

class Process;
struct StartJob;
void discard_start(StartJob* job);

// What the JS thread keeps of a start in flight (spawnAsync).
struct PendingStart {
  Napi::FunctionReference on_exit;
  Napi::FunctionReference on_started;
  std::unique_ptr<Napi::AsyncContext> context;
};

// Per-environment state (a worker thread has its own): the live processes, so that a
// terminating environment can release their handles and fds.
struct Instance {
  Napi::FunctionReference process_ctor;
  std::unordered_set<Process*> live;
  // Environment teardown is asynchronous: the poll handles' close callbacks live in this
  // addon, which a worker unloads once teardown is done, so teardown waits for them.
  napi_async_cleanup_hook_handle teardown = nullptr;
  size_t closing = 0;
  // nsbox-init's sealed image, made on the first start in this environment.
  int init_fd = -1;
  // The threads that clone this environment's containers, per cgroup they are born in (so
  // that a thread is moved once, never back and forth), made on first use.
  std::unordered_map<std::string, std::unique_ptr<Spawner>> spawners;
  // Starts in flight (spawnAsync), by id: their callbacks stay on the JS thread. A spawner
  // thread hands a finished start back through `done` and wakes the loop with `async`, which
  // keeps the loop alive only while starts are in flight.
  napi_env env = nullptr;
  std::unordered_map<uint64_t, PendingStart> pending;
  uint64_t next_start = 0;
  uv_async_t* async = nullptr;
  std::mutex done_mu;
  std::vector<StartJob*> done;  // under done_mu
  bool closed = false;          // under done_mu: no JS left to hand a start to

  ~Instance() {
    {
      std::lock_guard<std::mutex> lock(done_mu);
      closed = true;
    }
    spawners.clear();  // running starts finish (and are discarded), queued ones are cancelled
    for (StartJob* job : done) discard_start(job);
    done.clear();
    if (init_fd >= 0) close(init_fd);
  }

  int StartAsyncHandle(Napi::Env e) {
    if (async) return 0;
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(e, &loop);
    uv_async_t* h = new uv_async_t;
    int r = uv_async_init(loop, h, &Instance::OnAsync);
    if (r != 0) {
      delete h;
      return -r;
    }
    h->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(h));
    env = e;
    async = h;
    return 0;
  }

  // On a spawner thread: a start is done. Handed to the loop, or, when the environment is
  // going away, its container is killed and its fds closed here.
  void Finish(StartJob* job) {
    {
      std::lock_guard<std::mutex> lock(done_mu);
      if (!closed) {
        done.push_back(job);
        uv_async_send(async);
        return;
      }
    }
    discard_start(job);
  }

  static void OnAsync(uv_async_t* h);

  // Teardown (JS thread): no start is handed over any more; returns whether a close callback
  // will report to `closing`.
  bool CloseStarts() {
    std::vector<StartJob*> left;
    {
      std::lock_guard<std::mutex> lock(done_mu);
      closed = true;
      left.swap(done);
    }
    for (StartJob* job : left) discard_start(job);
    pending.clear();
    if (!async) return false;
    uv_close(reinterpret_cast<uv_handle_t*>(async), [](uv_handle_t* h) {
      Instance* inst = static_cast<Instance*>(h->data);
      delete reinterpret_cast<uv_async_t*>(h);
      if (--inst->closing == 0) napi_remove_async_cleanup_hook(inst->teardown);
    });
    async = nullptr;
    return true;
  }
};

const char* errno_code(int err) { return err ? uv_err_name(-err) : ""; }

Napi::Object errno_object(Napi::Env env, int err, const char* sys) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("errno", err);
  o.Set("code", errno_code(err));
  o.Set("syscall", sys);
  return o;
}

// ---------------------------------------------------------------------------------------
// Process: a started container's first process, watched through its pidfd.

class Process : public Napi::ObjectWrap<Process> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeProcess",
                       {InstanceAccessor<&Process::Pid>("pid"),
                        InstanceMethod<&Process::Kill>("kill"),
                        InstanceMethod<&Process::Ref>("ref"),
                        InstanceMethod<&Process::Unref>("unref")});
  }

  explicit Process(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Process>(info) {}

  ~Process() override { Release(); }

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
  bool Teardown(Instance* inst) {
    if (pidfd_ >= 0) kill_and_reap(pidfd_);
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

  static void OnReadable(uv_poll_t* handle, int, int) {
    static_cast<Process*>(handle->data)->Reap();
  }

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
    // nsbox-init reports the command's status before it exits; without that record (init was
    // killed: rm -f, the OOM killer, a dead supervisor) init's own status is the container's.
    Report rec;
    ssize_t n = report_fd_ >= 0 ? read(report_fd_, &rec, sizeof rec) : -1;
    Napi::Value usage = env.Null();
    if (n == static_cast<ssize_t>(sizeof rec) && rec.kind == static_cast<int32_t>(ReportKind::kExited)) {
      if ((rec.status & 0x7f) == 0) code = Napi::Number::New(env, (rec.status >> 8) & 0xff);
      else sig = Napi::Number::New(env, rec.status & 0x7f);
      Napi::Object u = Napi::Object::New(env);
      u.Set("userUs", static_cast<double>(rec.user_us));
      u.Set("systemUs", static_cast<double>(rec.system_us));
      u.Set("maxRssKiB", static_cast<double>(rec.max_rss_kib));
      usage = u;
    } else if (r == 0 && info.si_code == CLD_EXITED) {
      code = Napi::Number::New(env, info.si_status);
    } else if (r == 0) {
      sig = Napi::Number::New(env, info.si_status);
    }
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
  Instance* instance_ = nullptr;
  Napi::FunctionReference on_exit_;
  Napi::ObjectReference self_;
  std::unique_ptr<Napi::AsyncContext> context_;
};

// ---------------------------------------------------------------------------------------
// Argument conversion. A JS string with a NUL byte would be cut short by the kernel: refused.

class Reader {
 public:
  explicit Reader(Napi::Env env) : env_(env) {}
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  std::string Str(Napi::Object o, const char* key, bool required = false) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) {
      if (required) Fail(std::string(key) + " is required");
      return "";
    }
    if (!v.IsString()) {
      Fail(std::string(key) + " must be a string");
      return "";
    }
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s.find('\0') != std::string::npos) Fail(std::string(key) + " contains a NUL byte");
    return s;
  }

  std::vector<std::string> Strs(Napi::Object o, const char* key) {
    std::vector<std::string> out;
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return out;
    if (!v.IsArray()) {
      Fail(std::string(key) + " must be an array of strings");
      return out;
    }
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a.Get(i);
      if (!e.IsString()) {
        Fail(std::string(key) + " must be an array of strings");
        return out;
      }
      std::string s = e.As<Napi::String>().Utf8Value();
      if (s.find('\0') != std::string::npos) Fail(std::string(key) + " contains a NUL byte");
      out.push_back(std::move(s));
    }
    return out;
  }

  double Num(Napi::Object o, const char* key) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return 0;
    if (!v.IsNumber()) {
      Fail(std::string(key) + " must be a number");
      return 0;
    }
    return v.As<Napi::Number>().DoubleValue();
  }

  bool Bool(Napi::Object o, const char* key) { return o.Get(key).ToBoolean().Value(); }

  void Fail(const std::string& msg) {
    if (error_.empty()) error_ = msg;
  }

 private:
  Napi::Env env_;
  std::string error_;
};

bool parse_op(const std::string& s, StepOp* op) {
  static const struct { const char* name; StepOp op; } kOps[] = {
      {"makeRootPrivate", StepOp::kMakeRootPrivate}, {"mountRootFs", StepOp::kMountRootFs},
      {"bindRoot", StepOp::kBindRoot},               {"mountFs", StepOp::kMountFs},
      {"bindInRoot", StepOp::kBindInRoot},           {"mkdirInRoot", StepOp::kMkdirInRoot},
      {"joinCgroup", StepOp::kJoinCgroup},           {"symlinkInRoot", StepOp::kSymlinkInRoot},
      {"unshareCgroupNs", StepOp::kUnshareCgroupNs},
      {"maskInRoot", StepOp::kMaskInRoot},           {"readonlyInRoot", StepOp::kReadonlyInRoot},
      {"pivotRoot", StepOp::kPivotRoot},             {"loopbackUp", StepOp::kLoopbackUp},
      {"sethostname", StepOp::kSethostname},         {"chdir", StepOp::kChdir},
      {"openPty", StepOp::kOpenPty},                 {"mountWriteLayer", StepOp::kMountWriteLayer},
  };
  for (const auto& e : kOps) {
    if (s == e.name) {
      *op = e.op;
      return true;
    }
  }
  return false;
}

void read_steps(Reader& r, Napi::Object js, Plan& plan) {
  Napi::Value v = js.Get("steps");
  if (!v.IsArray()) return r.Fail("steps must be an array");
  Napi::Array steps = v.As<Napi::Array>();
  for (uint32_t i = 0; i < steps.Length() && r.ok(); i++) {
    Napi::Value sv = steps.Get(i);
    if (!sv.IsObject()) return r.Fail("each step must be an object");
    Napi::Object so = sv.As<Napi::Object>();
    Step s;
    if (!parse_op(r.Str(so, "op", true), &s.op)) return r.Fail("unknown step op");
    s.name = plan.keep(r.Str(so, "name"));
    s.source = plan.keep(r.Str(so, "source"));
    s.target = plan.keep(r.Str(so, "target"));
    s.fstype = plan.keep(r.Str(so, "fstype"));
    std::vector<std::string> options = r.Strs(so, "options");
    if (options.size() % 2) return r.Fail("options must be key, value pairs");
    std::vector<const char*>& ptrs = plan.string_lists.emplace_back();
    for (std::string& o : options) ptrs.push_back(plan.keep(std::move(o)));
    s.options = ptrs.data();
    s.options_count = static_cast<uint32_t>(ptrs.size() / 2);
    s.attrs = static_cast<uint64_t>(r.Num(so, "attrs"));
    s.mode = static_cast<uint32_t>(r.Num(so, "mode"));
    s.flags = static_cast<uint32_t>(r.Num(so, "flags"));
    s.dev = makedev(static_cast<unsigned>(r.Num(so, "major")), static_cast<unsigned>(r.Num(so, "minor")));
    s.fd = so.Get("fd").IsNumber() ? static_cast<int>(r.Num(so, "fd")) : -1;
    if (s.op == StepOp::kJoinCgroup && s.fd < 0) return r.Fail("joinCgroup needs an fd");
    plan.steps.push_back(s);
  }
}

void read_list(Reader& r, Napi::Object js, const char* key, Plan& plan,
               std::vector<const char*>& out, bool terminate) {
  for (std::string& s : r.Strs(js, key)) out.push_back(plan.keep(std::move(s)));
  if (terminate) out.push_back(nullptr);
}

std::string hex64(uint64_t v) {
  char buf[17];
  snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Capabilities, ids, no_new_privs and the seccomp program, as nsbox-init's options.
// userns: { uidMap, gidMap, setgroupsDeny }: a user namespace of the container's own, whose
// maps the child writes (core/child.cc write_id_maps).
void read_userns(Reader& r, Napi::Object js, Plan& plan) {
  Napi::Value v = js.Get("userns");
  if (v.IsUndefined()) return;
  if (!v.IsObject()) return r.Fail("userns must be an object");
  Napi::Object u = v.As<Napi::Object>();
  plan.userns.enabled = true;
  plan.userns.uid_map = plan.keep(r.Str(u, "uidMap"));
  plan.userns.gid_map = plan.keep(r.Str(u, "gidMap"));
  plan.userns.setgroups_deny = r.Bool(u, "setgroupsDeny");
  plan.clone_flags |= CLONE_NEWUSER;
  // With setgroups denied nsbox-init cannot clear the supplementary groups (the kernel refuses
  // setgroups in that namespace); they show as the overflow gid inside and grant nothing new.
  if (plan.userns.setgroups_deny) plan.init_options.emplace_back("nosetgroups");
}

void read_security(Reader& r, Napi::Object js, Plan& plan) {
  Napi::Value v = js.Get("security");
  if (!v.IsObject()) return;
  Napi::Object so = v.As<Napi::Object>();
  // Capability masks as BigInt-free pairs of 32-bit halves.
  auto mask = [&](const char* key) -> uint64_t {
    Napi::Value m = so.Get(key);
    if (!m.IsArray() || m.As<Napi::Array>().Length() != 2) {
      r.Fail(std::string("security.") + key + " must be [low, high]");
      return 0;
    }
    Napi::Array a = m.As<Napi::Array>();
    return static_cast<uint64_t>(a.Get(0u).ToNumber().Uint32Value()) |
           (static_cast<uint64_t>(a.Get(1u).ToNumber().Uint32Value()) << 32);
  };
  std::vector<std::string>& o = plan.init_options;
  o.push_back("bset=" + hex64(mask("bounding")));
  o.push_back("eff=" + hex64(mask("effective")));
  if (!so.Get("ambient").IsUndefined()) o.push_back("amb=" + hex64(mask("ambient")));
  if (r.Bool(so, "noNewPrivs")) o.emplace_back("nnp");
  Napi::Value uid = so.Get("uid");
  if (uid.IsNumber()) {
    o.push_back("ids=" + std::to_string(uid.As<Napi::Number>().Uint32Value()) + ":" +
                std::to_string(static_cast<uint32_t>(r.Num(so, "gid"))));
  }
  Napi::Value filter = so.Get("seccomp");
  if (filter.IsTypedArray()) {
    // struct sock_filter is 8 bytes: code u16, jt u8, jf u8, k u32.
    Napi::TypedArray ta = filter.As<Napi::TypedArray>();
    size_t len = ta.ByteLength();
    if (len % 8 || len == 0) return r.Fail("security.seccomp must hold whole BPF instructions");
    const unsigned char* bytes = static_cast<const unsigned char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    static const char kHex[] = "0123456789abcdef";
    std::string text = "seccomp=";
    text.reserve(text.size() + 2 * len);
    for (size_t i = 0; i < len; i++) {
      text += kHex[bytes[i] >> 4];
      text += kHex[bytes[i] & 15];
    }
    o.push_back(std::move(text));
  }
}

// The fds a child gets for 0, 1, 2, and the parent's ends, from the JS stdio description.
struct Stdio {
  int child[3] = {0, 1, 2};
  int parent[3] = {-1, -1, -1};
  int pty_master = -1;
  int pty_socket[2] = {-1, -1};  // [0] ours, [1] the child's: it sends the master here
  int devnull = -1;
  int err = 0;
  const char* sys = "";

  // Every fd the child dup2s from must be above 2, or one dup2 could overwrite another's
  // source (Node may run with 0, 1 or 2 closed).
  int above_stdio(int fd) {
    if (fd < 0 || fd > 2) return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return moved;
  }

  void CloseChildEnds() {
    for (int i = 0; i < 3; i++) {
      if (child[i] > 2 && child[i] != devnull) close(child[i]);
      child[i] = i;
    }
    if (devnull >= 0) close(devnull);
    devnull = -1;
    for (int& fd : pty_socket) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }

  void CloseParentEnds() {
    for (int& fd : parent) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
    if (pty_master >= 0) close(pty_master);
    pty_master = -1;
  }
};

bool setup_stdio(Reader& r, Napi::Object js, Plan& plan, Stdio& io) {
  Napi::Value tty = js.Get("tty");
  if (tty.IsObject()) {
    // The pair itself is made by the child in the container's devpts (child.cc, kOpenPty).
    Napi::Object t = tty.As<Napi::Object>();
    plan.pty_cols = static_cast<unsigned short>(r.Num(t, "cols"));
    plan.pty_rows = static_cast<unsigned short>(r.Num(t, "rows"));
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, io.pty_socket) < 0) {
      io.err = errno;
      io.sys = "socketpair";
      return false;
    }
    io.pty_socket[1] = io.above_stdio(io.pty_socket[1]);
    plan.pty_socket = io.pty_socket[1];
    return true;
  }
  std::vector<std::string> modes = r.Strs(js, "stdio");
  if (modes.size() != 3) {
    r.Fail("stdio must list three modes");
    return false;
  }
  for (int i = 0; i < 3; i++) {
    if (modes[i] == "inherit") continue;
    if (modes[i] == "ignore") {
      if (io.devnull < 0) io.devnull = io.above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC));
      if (io.devnull < 0) {
        io.err = errno;
        io.sys = "open";
        return false;
      }
      io.child[i] = io.devnull;
    } else if (modes[i] == "pipe") {
      int fds[2];
      if (pipe2(fds, O_CLOEXEC) < 0) {
        io.err = errno;
        io.sys = "pipe2";
        return false;
      }
      // stdin: the child reads; stdout, stderr: the child writes.
      int child_end = i == 0 ? fds[0] : fds[1];
      io.parent[i] = i == 0 ? fds[1] : fds[0];
      io.child[i] = io.above_stdio(child_end);
    } else if (modes[i] == "fd") {
      // An fd of the caller's (child_process's number and stream forms): the child gets a
      // duplicate above 2, closed here after the start like a pipe's end, the caller's own kept.
      Napi::Value fds = js.Get("stdioFds");
      Napi::Value fd = fds.IsArray() ? fds.As<Napi::Array>().Get(i) : fds;
      if (!fd.IsNumber()) {
        r.Fail("stdioFds must give an fd for each 'fd' mode");
        return false;
      }
      io.child[i] = fcntl(fd.As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 3);
      if (io.child[i] < 0) {
        io.err = errno;
        io.sys = "fcntl";
        io.child[i] = i;
        return false;
      }
    } else {
      r.Fail("stdio modes are inherit, pipe, ignore or fd");
      return false;
    }
  }
  return true;
}

// spawn(plan, onExit, detached): the container under nsbox-monitor (core/spawn.h,
// spawn_detached), stdout and stderr piped to it. `detached`: { dir, logMaxSize,
// logMaxFiles, oom, cgroups, timeoutMs, cpuTimeNs, cpuFile, cpuFileV2 }. -> { ok: true, pid, monitorPid, ack } or spawn's failure
// object. `ack`: an fd for the caller to write one byte to once its record names the monitor,
// and close (closed without it, the monitor kills the container).
Napi::Value SpawnDetached(Napi::Env env, Napi::Object opts, const Plan& plan, Stdio& io, const std::string& born_in) {
  Reader r(env);
  DetachSpec spec;
  std::string dir = r.Str(opts, "dir", true);
  double max = r.Num(opts, "logMaxSize"), files = r.Num(opts, "logMaxFiles");
  spec.oom = r.Str(opts, "oom");
  spec.cgroups = r.Strs(opts, "cgroups");
  double timeout = r.Num(opts, "timeoutMs"), cputime = r.Num(opts, "cpuTimeNs");
  spec.cpu_file = r.Str(opts, "cpuFile");
  spec.cpu_v2 = r.Bool(opts, "cpuFileV2");
  if (r.ok() && !(timeout >= 0 && timeout <= 1e12 && cputime >= 0 && cputime <= 1e18)) r.Fail("timeoutMs or cpuTimeNs out of range");
  if (r.ok() && cputime > 0 && spec.cpu_file.empty()) r.Fail("cpuTimeNs needs cpuFile");
  if (r.ok() && !(max >= 1 && max <= 1e15 && files >= 1 && files <= 100)) r.Fail("logMaxSize and logMaxFiles out of range");
  if (r.ok() && (io.pty_socket[0] >= 0 || io.parent[0] >= 0)) r.Fail("a detached container takes no terminal and no stdin pipe");
  auto done = [&io]() {
    io.CloseChildEnds();
    io.CloseParentEnds();
  };
  if (!r.ok()) {
    done();
    Napi::TypeError::New(env, r.error()).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  spec.log_max = static_cast<uint64_t>(max);
  spec.timeout_ms = static_cast<uint64_t>(timeout);
  spec.cputime_ns = static_cast<uint64_t>(cputime);
  spec.log_files = static_cast<int>(files);
  spec.out = io.parent[1];
  spec.err = io.parent[2];
  auto failure = [&](int err, const char* sys) {
    Napi::Object e = errno_object(env, err, sys);
    e.Set("ok", false);
    e.Set("step", -1);
    return e;
  };
  spec.dir = io.above_stdio(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (spec.dir < 0) {
    int err = errno;
    done();
    return failure(err, "open");
  }
  if (!born_in.empty()) spec.cgroup_tasks_fd = io.above_stdio(open(born_in.c_str(), O_WRONLY | O_CLOEXEC));
  Instance* inst = env.GetInstanceData<Instance>();
  if (inst->init_fd < 0) inst->init_fd = make_init_image();
  DetachResult res;
  if (inst->init_fd < 0) {
    res.parent_sys = Sys::kOpen;
    res.parent_errno = -inst->init_fd;
  } else if (!born_in.empty() && spec.cgroup_tasks_fd < 0) {
    res.parent_sys = Sys::kOpen;
    res.parent_errno = errno;
  } else {
    res = spawn_detached(plan, inst->init_fd, spec);
  }
  close(spec.dir);
  if (spec.cgroup_tasks_fd >= 0) close(spec.cgroup_tasks_fd);
  // The output pipes are the monitor's now (or nobody's): none of their ends stays here.
  done();
  if (res.vanished) {
    Napi::Object e = failure(ECHILD, "setup");
    e.Set("vanished", res.vanished_status);
    return e;
  }
  if (res.parent_sys != Sys::kNone) return failure(res.parent_errno, syscall_name(res.parent_sys));
  if (res.failed) {
    Napi::Object e = errno_object(env, res.error.err, syscall_name(static_cast<Sys>(res.error.sys)));
    e.Set("ok", false);
    e.Set("step", res.error.step == kExecPhase ? static_cast<int32_t>(plan.steps.size()) : res.error.step);
    e.Set("detail", res.error.detail);
    return e;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", true);
  out.Set("pid", res.container_pid);
  out.Set("monitorPid", res.monitor_pid);
  out.Set("ack", res.ack_fd);
  return out;
}

// A start in flight: the plan and the fds it was read into (both stay put while a spawner
// thread uses them), and the result. Holds no JS value: whichever thread ends up with it may
// free it (see Instance::Finish).
struct StartJob {
  uint64_t id = 0;
  Plan plan;
  Stdio io;
  SpawnResult res;
};

// Reads spawn's arguments into `job`. On a bad argument, throws a TypeError (and returns
// false with `*early` undefined); on a failure to make the stdio fds, returns false with the
// failure object in `*early`.
bool read_start(const Napi::CallbackInfo& info, StartJob& job, std::string& born_in, Napi::Value* early) {
  Napi::Env env = info.Env();
  *early = env.Undefined();
  Napi::Object js = info[0].As<Napi::Object>();
  Reader r(env);
  Plan& plan = job.plan;
  read_steps(r, js, plan);
  plan.argv = r.Strs(js, "argv");
  read_list(r, js, "env", plan, plan.envp, true);
  read_security(r, js, plan);
  if (js.Get("tty").IsObject()) plan.init_options.emplace_back("tty");
  for (std::string& o : r.Strs(js, "initOptions")) plan.init_options.push_back(std::move(o));
  std::vector<std::string> candidates = r.Strs(js, "candidates");
  for (const std::string& c : candidates) plan.init_options.push_back("cand=" + c);
  if (r.ok() && plan.argv.empty()) r.Fail("argv must not be empty");
  if (r.ok() && candidates.empty()) r.Fail("candidates must not be empty");
  plan.clone_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
  if (r.Bool(js, "newNet")) plan.clone_flags |= CLONE_NEWNET;
  if (r.Bool(js, "newCgroup")) plan.clone_flags |= CLONE_NEWCGROUP;
  plan.share_vm = !js.Get("shareVm").IsBoolean() || js.Get("shareVm").As<Napi::Boolean>().Value();
  read_userns(r, js, plan);
  // An open cgroup v2 directory: the container is born in it (clone3 + CLONE_INTO_CGROUP).
  if (js.Get("cgroupFd").IsNumber()) plan.cgroup_fd = static_cast<int>(r.Num(js, "cgroupFd"));
  // A v1 cgroup `tasks` file the spawner threads are moved into (once): the container is born
  // in that cgroup, with no move of its own (see core/spawner.h).
  born_in = r.Str(js, "bornIn");
  if (!r.ok()) {
    Napi::TypeError::New(env, r.error()).ThrowAsJavaScriptException();
    return false;
  }
  Stdio& io = job.io;
  if (!setup_stdio(r, js, plan, io)) {
    io.CloseChildEnds();
    io.CloseParentEnds();
    if (!r.ok()) {
      Napi::TypeError::New(env, r.error()).ThrowAsJavaScriptException();
      return false;
    }
    Napi::Object e = errno_object(env, io.err, io.sys);
    e.Set("ok", false);
    e.Set("step", -1);
    *early = e;
    return false;
  }
  for (int i = 0; i < 3; i++) plan.stdio[i] = io.child[i];
  return true;
}

// The spawner thread's part of a start: clone, the child's setup, nsbox-init's first report,
// and the pty master (queued before execve, so the receive does not wait).
SpawnResult run_start(StartJob& job, int init_fd) {
  SpawnResult res = spawn(job.plan, init_fd);
  Stdio& io = job.io;
  if (!res.failed && res.parent_sys == Sys::kNone && !res.vanished && io.pty_socket[0] >= 0) {
    io.pty_master = receive_fd(io.pty_socket[0]);
    if (io.pty_master < 0) {
      res.parent_sys = Sys::kSendmsg;
      res.parent_errno = errno ? errno : EIO;
      kill_and_reap(res.pidfd);
      close(res.pidfd);
      close(res.report_fd);
    }
  }
  io.CloseChildEnds();
  return res;
}

// A finished start nobody will take (the environment is going away): its container goes.
void discard_start(StartJob* job) {
  SpawnResult& res = job->res;
  if (!res.failed && !res.vanished && res.parent_sys == Sys::kNone && res.pidfd >= 0) {
    kill_and_reap(res.pidfd);
    close(res.pidfd);
    close(res.report_fd);
  }
  job->io.CloseChildEnds();
  job->io.CloseParentEnds();
  delete job;
}

// On the JS thread: the start's result as spawn() returns it; the process watched from here on.
Napi::Value finish_start(Napi::Env env, StartJob& job, Napi::Function on_exit) {
  SpawnResult& res = job.res;
  Stdio& io = job.io;
  const Plan& plan = job.plan;
  if (res.vanished) {
    io.CloseParentEnds();
    // Killed before it could report (by a signal from outside, or the OOM killer).
    Napi::Object e = errno_object(env, ECHILD, "setup");
    e.Set("ok", false);
    e.Set("step", -1);
    e.Set("vanished", res.vanished_status);
    return e;
  }
  if (res.parent_sys != Sys::kNone || res.failed) {
    io.CloseParentEnds();
    Napi::Object e = res.failed
                         ? errno_object(env, res.error.err, syscall_name(static_cast<Sys>(res.error.sys)))
                         : errno_object(env, res.parent_errno, syscall_name(res.parent_sys));
    e.Set("ok", false);
    // Steps after the plan's (stdio, init, security, the command's execve) are the exec phase.
    int32_t step = res.error.step == kExecPhase ? static_cast<int32_t>(plan.steps.size()) : res.error.step;
    e.Set("step", res.failed ? step : -1);
    e.Set("detail", res.failed ? res.error.detail : 0);
    return e;
  }

  Instance* inst = env.GetInstanceData<Instance>();
  Napi::Object proc = inst->process_ctor.New({});
  int werr = Process::Unwrap(proc)->Watch(env, res.pid, res.pidfd, res.report_fd, on_exit);
  if (werr) {
    kill_and_reap(res.pidfd);
    close(res.pidfd);
    close(res.report_fd);
    io.CloseParentEnds();
    Napi::Object e = errno_object(env, werr, "uv_poll_start");
    e.Set("ok", false);
    e.Set("step", -1);
    return e;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", true);
  out.Set("pid", res.pid);
  out.Set("process", proc);
  out.Set("stdin", io.parent[0]);
  out.Set("stdout", io.parent[1]);
  out.Set("stderr", io.parent[2]);
  out.Set("pty", io.pty_master);
  // The caller owns these now.
  for (int& fd : io.parent) fd = -1;
  io.pty_master = -1;
  return out;
}

// The spawner pool for containers born in `born_in`, made on first use.
Spawner& spawner_for(Instance* inst, const std::string& born_in) {
  std::unique_ptr<Spawner>& spawner = inst->spawners[born_in];
  if (!spawner) spawner = std::make_unique<Spawner>(born_in, spawner_threads());
  return *spawner;
}

// spawn(plan, onExit) -> { ok: true, process, stdin, stdout, stderr, pty }
//                      | { ok: false, step, syscall, errno, code, detail }
// The JS thread waits for the start (Container.start); spawnAsync does not.
Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "spawn(plan: object, onExit: function)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  StartJob job;
  std::string born_in;
  Napi::Value early;
  if (!read_start(info, job, born_in, &early)) return early;
  if (info.Length() > 2 && info[2].IsObject()) return SpawnDetached(env, info[2].As<Napi::Object>(), job.plan, job.io, born_in);

  Instance* inst = env.GetInstanceData<Instance>();
  if (inst->init_fd < 0) inst->init_fd = make_init_image();
  if (inst->init_fd < 0) {
    job.res.parent_sys = Sys::kOpen;  // memfd_create, or writing and sealing it
    job.res.parent_errno = -inst->init_fd;
    job.io.CloseChildEnds();
  } else {
    const int init_fd = inst->init_fd;
    job.res = spawner_for(inst, born_in).Run([&job, init_fd] { return run_start(job, init_fd); });
  }
  return finish_start(env, job, info[1].As<Napi::Function>());
}

// spawnAsync(plan, onExit, onStarted) -> undefined, or spawn's failure object when the stdio
// fds cannot be made. The start runs on a spawner thread; onStarted(result) gets what spawn()
// returns, on the JS thread. The fds the plan names (cgroup tasks, cgroupFd, steps' fds) must
// stay open until then.
Napi::Value SpawnAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsFunction() || !info[2].IsFunction()) {
    Napi::TypeError::New(env, "spawnAsync(plan: object, onExit: function, onStarted: function)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::unique_ptr<StartJob> job = std::make_unique<StartJob>();
  std::string born_in;
  Napi::Value early;
  if (!read_start(info, *job, born_in, &early)) return early;
  Instance* inst = env.GetInstanceData<Instance>();
  if (inst->init_fd < 0) inst->init_fd = make_init_image();
  int err = inst->init_fd < 0 ? -inst->init_fd : inst->StartAsyncHandle(env);
  if (err) {
    job->io.CloseChildEnds();
    job->io.CloseParentEnds();
    Napi::Object e = errno_object(env, err, inst->init_fd < 0 ? "open" : "uv_async_init");
    e.Set("ok", false);
    e.Set("step", -1);
    return e;
  }
  job->id = ++inst->next_start;
  PendingStart& p = inst->pending[job->id];
  p.on_exit = Napi::Persistent(info[1].As<Napi::Function>());
  p.on_started = Napi::Persistent(info[2].As<Napi::Function>());
  p.context = std::make_unique<Napi::AsyncContext>(env, "nsbox:start");
  if (inst->pending.size() == 1) uv_ref(reinterpret_cast<uv_handle_t*>(inst->async));
  StartJob* raw = job.release();
  const int init_fd = inst->init_fd;
  spawner_for(inst, born_in).Post([raw, init_fd] { return run_start(*raw, init_fd); },
                                  [raw, inst](SpawnResult r) {
                                    raw->res = r;
                                    inst->Finish(raw);
                                  });
  return env.Undefined();
}

// On the JS thread: the starts the spawner threads finished, to their callbacks.
void Instance::OnAsync(uv_async_t* h) {
  Instance* inst = static_cast<Instance*>(h->data);
  std::vector<StartJob*> jobs;
  {
    std::lock_guard<std::mutex> lock(inst->done_mu);
    jobs.swap(inst->done);
  }
  Napi::Env env(inst->env);
  if (!env_can_run_js(env)) {
    // The environment is ending (a worker's process.exit): nobody will take these.
    for (StartJob* job : jobs) discard_start(job);
    return;
  }
  for (StartJob* raw : jobs) {
    std::unique_ptr<StartJob> job(raw);
    auto it = inst->pending.find(job->id);
    if (it == inst->pending.end()) {
      discard_start(job.release());
      continue;
    }
    PendingStart p = std::move(it->second);
    inst->pending.erase(it);
    if (inst->pending.empty() && inst->async) uv_unref(reinterpret_cast<uv_handle_t*>(inst->async));
    Napi::HandleScope scope(env);
    Napi::Value result = finish_start(env, *job, p.on_exit.Value());
    p.on_started.MakeCallback(env.Global(), {result}, *p.context);
  }
}

Napi::Value ResizePty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "resizePty(fd, cols, rows)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int err = resize_pty(info[0].As<Napi::Number>().Int32Value(),
                       static_cast<unsigned short>(info[1].As<Napi::Number>().Uint32Value()),
                       static_cast<unsigned short>(info[2].As<Napi::Number>().Uint32Value()));
  if (err) return errno_object(env, err, "ioctl");
  return env.Null();
}

Napi::Value result_or_null(Napi::Env env, const HostMountResult& res) {
  if (!res.err) return env.Null();
  return errno_object(env, res.err, res.sys);
}

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
  ssize_t n = lgetxattr(path.c_str(), name.c_str(), buf, sizeof buf);
  if (n < 0) {
    if (errno == ENODATA) return env.Null();
    return errno_object(env, errno, "lgetxattr");
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

// exec(plan, onExit) -> as spawn(). The plan: target (a pidfd of the container's nsbox-init,
// proven by the caller), namespaces (CLONE_NEW* to join), cgroupProcs (open cgroup.procs fds),
// bornIn, argv, env, candidates, stdio | tty, security, initOptions. No steps: the container's
// world exists already.
Napi::Value Exec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "exec(plan: object, onExit: function)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object js = info[0].As<Napi::Object>();
  Reader r(env);
  Plan plan;
  ExecTarget target;
  if (!js.Get("target").IsNumber()) r.Fail("target must be a pidfd");
  target.pidfd = static_cast<int>(r.Num(js, "target"));
  target.ns_flags = static_cast<int>(r.Num(js, "namespaces"));
  // CLONE_NEWUSER: a rootless container's own user namespace, joined first by the same setns.
  const int allowed_ns = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP;
  if (r.ok() && (target.ns_flags & ~allowed_ns || !(target.ns_flags & CLONE_NEWNS) || !(target.ns_flags & CLONE_NEWPID))) {
    r.Fail("namespaces must include CLONE_NEWNS and CLONE_NEWPID, and only namespaces nsbox makes");
  }
  Napi::Value procs = js.Get("cgroupProcs");
  if (procs.IsArray()) {
    Napi::Array a = procs.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      if (!a.Get(i).IsNumber()) {
        r.Fail("cgroupProcs must be an array of fds");
        break;
      }
      target.cgroup_procs.push_back(a.Get(i).As<Napi::Number>().Int32Value());
    }
  }
  plan.argv = r.Strs(js, "argv");
  read_list(r, js, "env", plan, plan.envp, true);
  read_security(r, js, plan);
  if (js.Get("tty").IsObject()) plan.init_options.emplace_back("tty");
  for (std::string& o : r.Strs(js, "initOptions")) plan.init_options.push_back(std::move(o));
  std::vector<std::string> candidates = r.Strs(js, "candidates");
  for (const std::string& c : candidates) plan.init_options.push_back("cand=" + c);
  if (r.ok() && plan.argv.empty()) r.Fail("argv must not be empty");
  if (r.ok() && candidates.empty()) r.Fail("candidates must not be empty");
  std::string spawner_cgroup = r.Str(js, "bornIn");
  if (!r.ok()) {
    Napi::TypeError::New(env, r.error()).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  Stdio io;
  if (!setup_stdio(r, js, plan, io)) {
    io.CloseChildEnds();
    io.CloseParentEnds();
    if (!r.ok()) {
      Napi::TypeError::New(env, r.error()).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object e = errno_object(env, io.err, io.sys);
    e.Set("ok", false);
    e.Set("step", -1);
    return e;
  }
  for (int i = 0; i < 3; i++) plan.stdio[i] = io.child[i];

  Instance* inst = env.GetInstanceData<Instance>();
  if (inst->init_fd < 0) inst->init_fd = make_init_image();
  SpawnResult res;
  if (inst->init_fd < 0) {
    res.parent_sys = Sys::kOpen;
    res.parent_errno = -inst->init_fd;
  } else {
    const int init_fd = inst->init_fd;
    res = spawner_for(inst, spawner_cgroup).Run([&plan, &target, init_fd] { return exec_in(plan, target, init_fd); });
  }
  if (!res.failed && res.parent_sys == Sys::kNone && !res.vanished && io.pty_socket[0] >= 0) {
    io.pty_master = receive_fd(io.pty_socket[0]);
    if (io.pty_master < 0) {
      res.parent_sys = Sys::kSendmsg;
      res.parent_errno = errno ? errno : EIO;
      kill_and_reap(res.pidfd);
      close(res.pidfd);
      close(res.report_fd);
    }
  }
  io.CloseChildEnds();
  if (res.vanished || res.parent_sys != Sys::kNone || res.failed) {
    io.CloseParentEnds();
    Napi::Object e = res.vanished ? errno_object(env, ECHILD, "setup")
                     : res.failed ? errno_object(env, res.error.err, syscall_name(static_cast<Sys>(res.error.sys)))
                                  : errno_object(env, res.parent_errno, syscall_name(res.parent_sys));
    e.Set("ok", false);
    e.Set("step", res.failed ? res.error.step : -1);
    e.Set("detail", res.failed ? res.error.detail : 0);
    if (res.vanished) e.Set("vanished", res.vanished_status);
    return e;
  }
  Napi::Object proc = inst->process_ctor.New({});
  int werr = Process::Unwrap(proc)->Watch(env, res.pid, res.pidfd, res.report_fd, info[1].As<Napi::Function>());
  if (werr) {
    kill_and_reap(res.pidfd);
    close(res.pidfd);
    close(res.report_fd);
    io.CloseParentEnds();
    Napi::Object e = errno_object(env, werr, "uv_poll_start");
    e.Set("ok", false);
    e.Set("step", -1);
    return e;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", true);
  out.Set("pid", res.pid);
  out.Set("process", proc);
  out.Set("stdin", io.parent[0]);
  out.Set("stdout", io.parent[1]);
  out.Set("stderr", io.parent[2]);
  out.Set("pty", io.pty_master);
  return out;
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
  return Napi::Number::New(env, fd);
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

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Instance* inst = new Instance;
  inst->process_ctor = Napi::Persistent(Process::Define(env));
  env.SetInstanceData<Instance>(inst);
  // A worker that ends with containers still running: kill and reap them, release their
  // pidfds and poll handles, and finish once the handles are closed. (The hook holds the
  // napi_env, so SetInstanceData's finalizer frees the Instance only after that.)
  napi_add_async_cleanup_hook(
      env,
      [](napi_async_cleanup_hook_handle handle, void* data) {
        Instance* in = static_cast<Instance*>(data);
        in->teardown = handle;
        std::vector<Process*> live(in->live.begin(), in->live.end());
        for (Process* p : live) {
          if (p->Teardown(in)) in->closing++;
        }
        if (in->CloseStarts()) in->closing++;
        if (in->closing == 0) napi_remove_async_cleanup_hook(handle);
      },
      inst, nullptr);
  exports.Set("spawn", Napi::Function::New<Spawn>(env, "spawn"));
  exports.Set("spawnAsync", Napi::Function::New<SpawnAsync>(env, "spawnAsync"));
  exports.Set("resizePty", Napi::Function::New<ResizePty>(env, "resizePty"));
  exports.Set("mountOverlay", Napi::Function::New<MountOverlay>(env, "mountOverlay"));
  exports.Set("unmount", Napi::Function::New<Unmount>(env, "unmount"));
  exports.Set("attachLoop", Napi::Function::New<AttachLoop>(env, "attachLoop"));
  exports.Set("mountDetached", Napi::Function::New<MountDetached>(env, "mountDetached"));
  exports.Set("getXattr", Napi::Function::New<GetXattr>(env, "getXattr"));
  exports.Set("attachDeviceProgram", Napi::Function::New<AttachDeviceProgram>(env, "attachDeviceProgram"));
  exports.Set("exec", Napi::Function::New<Exec>(env, "exec"));
  exports.Set("pidfdOpen", Napi::Function::New<PidfdOpen>(env, "pidfdOpen"));
  exports.Set("pidfdAlive", Napi::Function::New<PidfdAlive>(env, "pidfdAlive"));
  RegisterFsAt(env, exports);
  RegisterExtract(env, exports);
  RegisterDigest(env, exports);
  return exports;
}

}  // namespace nsbox

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return nsbox::Init(env, exports);
}

NODE_API_MODULE(nsbox, InitModule)
