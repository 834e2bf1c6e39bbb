// The start path: reads a start's arguments, runs the clone on a spawner thread (core/spawner.h),
// and hands the started container to a Process; detached starts (nsbox-monitor) and exec too.

#include "binding/start.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <napi.h>
#include <uv.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "binding/fsat.h"
#include "binding/instance.h"
#include "binding/plan_reader.h"
#include "binding/process.h"
#include "binding/stdio.h"
#include "core/exec.h"
#include "core/fdpass.h"
#include "core/init_image.h"
#include "core/plan.h"
#include "core/spawn.h"
#include "core/spawner.h"

namespace nsbox {

// A start in flight: the plan and the fds it was read into (both stay put while a spawner
// thread uses them), and the result. Holds no JS value: whichever thread ends up with it may
// free it (see Instance::Finish).
struct StartJob {
  uint64_t id = 0;
  Plan plan;
  // The cgroup directories JS made for it: removed here when the environment ends first.
  std::vector<std::string> cgroup_dirs;
  Stdio io;
  SpawnResult res;
};

namespace {

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

// Reads spawn's arguments into `job`. On a bad argument, throws a TypeError (and returns
// false with `*early` undefined); on a failure to make the stdio fds, returns false with the
// failure object in `*early`.
bool read_start(const Napi::CallbackInfo& info, StartJob& job, std::string& born_in, std::string& setup_in, Napi::Value* early) {
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
  Napi::Value share_vm = js.Get("shareVm");
  plan.share_vm = !share_vm.IsBoolean() || share_vm.As<Napi::Boolean>().Value();
  read_userns(r, js, plan);
  // An open cgroup v2 directory: the container is born in it (clone3 + CLONE_INTO_CGROUP).
  if (js.Get("cgroupFd").IsNumber()) plan.cgroup_fd = static_cast<int>(r.Num(js, "cgroupFd"));
  // A v1 cgroup `tasks` file the spawner threads are moved into (once): the container is born
  // in that cgroup, with no move of its own (see core/spawner.h).
  born_in = r.Str(js, "bornIn");
  // A v1 cpu cgroup the spawner threads are in too: the child's setup runs there, and its last
  // step leaves it (core/spawner.h). Not for a detached start, whose clone is not a spawner's.
  setup_in = r.Str(js, "setupIn");
  job.cgroup_dirs = r.Strs(js, "cgroupDirs");
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

// After a start or an exec that went through: the pty master its child queued before execve
// (the receive does not wait), then the child's ends closed. A failed receive kills and reaps
// the process and says so in `res`.
void take_pty_and_close_child_ends(SpawnResult& res, Stdio& io) {
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
}

// The spawner thread's part of a start: clone, the child's setup, nsbox-init's first report,
// and the pty master (queued before execve, so the receive does not wait).
SpawnResult run_start(StartJob& job, int init_fd) {
  SpawnResult res = spawn(job.plan, init_fd);
  Stdio& io = job.io;
  take_pty_and_close_child_ends(res, io);
  return res;
}

}  // namespace

// A finished start nobody will take (the environment is going away): its container goes.
void discard_start(StartJob* job) {
  SpawnResult& res = job->res;
  if (!res.failed && !res.vanished && res.parent_sys == Sys::kNone && res.pidfd >= 0) {
    kill_and_reap(res.pidfd);
    close(res.pidfd);
    close(res.report_fd);
  }
  // No JS will run to remove them (started or not).
  remove_cgroup_dirs(job->cgroup_dirs);
  job->io.CloseChildEnds();
  job->io.CloseParentEnds();
  delete job;
}

namespace {

// A started process (a container's nsbox-init, or an exec's) watched from here on, and the
// success object spawn() and exec() return; the parent's stdio ends are the caller's then.
// When the loop cannot watch it, it is killed and reaped and the failure returned.
// A parent stdio end given to JS: the teardown's until JS adopts it (Instance::handed_fds).
void hand_fd(Instance* inst, int fd) {
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) == 0) inst->handed_fds[fd] = {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

Napi::Value watch_started(Napi::Env env, SpawnResult& res, Stdio& io, Napi::Function on_exit, std::vector<std::string> cgroups) {
  Instance* inst = env.GetInstanceData<Instance>();
  // A worker terminated from another thread can stop JS at any moment, this call included:
  // then no wrap is made (NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS: no fatal error either) and
  // nobody will ever watch the process, so it ends here like a start nobody takes.
  Napi::Object proc = inst->process_ctor.New({});
  Process* wrap = proc.IsEmpty() ? nullptr : Process::Unwrap(proc);
  if (!wrap) {
    kill_and_reap(res.pidfd);
    close(res.pidfd);
    close(res.report_fd);
    remove_cgroup_dirs(cgroups);
    io.CloseParentEnds();
    return env.Undefined();
  }
  wrap->SetCgroups(std::move(cgroups));
  int werr = wrap->Watch(env, res.pid, res.pidfd, res.report_fd, on_exit);
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
  if (!env_can_run_js(env)) {
    // Stopped meanwhile: JS will never wrap these fds (the process is the teardown's now).
    io.CloseParentEnds();
    return env.Undefined();
  }
  for (int& fd : io.parent) {
    hand_fd(inst, fd);
    fd = -1;
  }
  hand_fd(inst, io.pty_master);
  io.pty_master = -1;
  return out;
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
    Napi::Object e = res.failed ? errno_object(env, res.error.err, syscall_name(static_cast<Sys>(res.error.sys)))
                                : errno_object(env, res.parent_errno, syscall_name(res.parent_sys));
    e.Set("ok", false);
    // Steps after the plan's (stdio, init, security, the command's execve) are the exec phase.
    int32_t step = res.error.step == kExecPhase ? static_cast<int32_t>(plan.steps.size()) : res.error.step;
    e.Set("step", res.failed ? step : -1);
    e.Set("detail", res.failed ? res.error.detail : 0);
    return e;
  }

  return watch_started(env, res, io, on_exit, job.cgroup_dirs);
}

// The spawner pool for containers born in `born_in` and set up in `setup_in`, made on first
// use. A path has no NUL: the key names both unambiguously.
Spawner& spawner_for(Instance* inst, const std::string& born_in, const std::string& setup_in = "") {
  std::unique_ptr<Spawner>& spawner = inst->spawners[born_in + std::string(1, '\0') + setup_in];
  if (!spawner) spawner = std::make_unique<Spawner>(born_in, setup_in, spawner_threads());
  return *spawner;
}

}  // namespace

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
  std::string born_in, setup_in;
  Napi::Value early;
  if (!read_start(info, job, born_in, setup_in, &early)) return early;
  if (info.Length() > 2 && info[2].IsObject()) return SpawnDetached(env, info[2].As<Napi::Object>(), job.plan, job.io, born_in);

  Instance* inst = env.GetInstanceData<Instance>();
  if (inst->init_fd < 0) inst->init_fd = make_init_image();
  if (inst->init_fd < 0) {
    job.res.parent_sys = Sys::kOpen;  // memfd_create, or writing and sealing it
    job.res.parent_errno = -inst->init_fd;
    job.io.CloseChildEnds();
  } else {
    const int init_fd = inst->init_fd;
    job.res = spawner_for(inst, born_in, setup_in).Run([&job, init_fd] { return run_start(job, init_fd); });
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
  std::string born_in, setup_in;
  Napi::Value early;
  if (!read_start(info, *job, born_in, setup_in, &early)) return early;
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
  inst->in_flight++;
  spawner_for(inst, born_in, setup_in)
      .Post([raw, init_fd] { return run_start(*raw, init_fd); },
            [raw, inst](SpawnResult r) {
              raw->res = r;
              inst->Finish(raw);
              inst->in_flight--;
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
    // Checked again for each: a worker terminated from another thread stops JS at any
    // moment, an earlier job's callback included.
    if (it == inst->pending.end() || !env_can_run_js(env)) {
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
      Napi::Value fd = a.Get(i);
      if (!fd.IsNumber()) {
        r.Fail("cgroupProcs must be an array of fds");
        break;
      }
      target.cgroup_procs.push_back(fd.As<Napi::Number>().Int32Value());
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
  take_pty_and_close_child_ends(res, io);
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
  return watch_started(env, res, io, info[1].As<Napi::Function>(), {});
}

}  // namespace nsbox
