// N-API glue: the addon's entry (Init) and its exports table. The calls live by concern:
// start.cc (spawn, spawnAsync, exec), process.h (the started container's pidfd watch),
// plan_reader.cc (the JS plan), stdio.cc (the start's fds), host_calls.cc (small host calls),
// fsat.cc, extract.cc, tar.cc, exit.cc (the 'exit' event's kill and reap). The system logic
// lives in src-cc/core/; binding/ keeps only the calls that hand a result to the loop (the
// pidfd's waitid and kill in process.h, pidfd_open and poll in host_calls.cc), the fds of a
// start (stdio.cc, start.cc) and the end of the environment's processes (process.h, exit.cc).

#include <napi.h>
#include <uv.h>

#include <vector>

#include "binding/exit.h"
#include "binding/extract.h"
#include "binding/fsat.h"
#include "binding/fsbatch.h"
#include "binding/host_calls.h"
#include "binding/instance.h"
#include "binding/process.h"
#include "binding/start.h"
#include "binding/tar.h"
#include "binding/teardown.h"

namespace nsbox {
namespace {

const char* errno_code(int err) { return err ? uv_err_name(-err) : ""; }

// A call that reads a whole plan makes hundreds of N-API calls: one made while a worker is being
// terminated fails, and node-addon-api may turn the failure into a fatal error of the whole
// process. Refused up front when JS is stopping already (the window left is the call itself).
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value WhileJsRuns(const Napi::CallbackInfo& info) {
  if (!env_can_run_js(info.Env())) return Napi::Value();
  return F(info);
}

}  // namespace

Napi::Object errno_object(Napi::Env env, int err, const char* sys) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("errno", err);
  o.Set("code", errno_code(err));
  o.Set("syscall", sys);
  return o;
}

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
        // A commit's freezer first: its container's SIGKILL below waits for the thaw.
        TeardownThaw(in);
        std::vector<Process*> live(in->live.begin(), in->live.end());
        for (Process* p : live) {
          if (p->Teardown(in)) in->closing++;
        }
        if (in->CloseStarts()) in->closing++;
        TeardownRemove(in);
        if (in->closing == 0) napi_remove_async_cleanup_hook(handle);
      },
      inst, nullptr);
  exports.Set("spawn", Napi::Function::New<WhileJsRuns<Spawn>>(env, "spawn"));
  exports.Set("spawnAsync", Napi::Function::New<WhileJsRuns<SpawnAsync>>(env, "spawnAsync"));
  exports.Set("resizePty", Napi::Function::New<ResizePty>(env, "resizePty"));
  exports.Set("runInUserns", Napi::Function::New<RunInUserns>(env, "runInUserns"));
  exports.Set("mountOverlay", Napi::Function::New<MountOverlay>(env, "mountOverlay"));
  exports.Set("unmount", Napi::Function::New<Unmount>(env, "unmount"));
  exports.Set("attachLoop", Napi::Function::New<AttachLoop>(env, "attachLoop"));
  exports.Set("mountDetached", Napi::Function::New<MountDetached>(env, "mountDetached"));
  exports.Set("getXattr", Napi::Function::New<GetXattr>(env, "getXattr"));
  exports.Set("attachDeviceProgram", Napi::Function::New<AttachDeviceProgram>(env, "attachDeviceProgram"));
  exports.Set("exec", Napi::Function::New<WhileJsRuns<Exec>>(env, "exec"));
  exports.Set("pidfdOpen", Napi::Function::New<PidfdOpen>(env, "pidfdOpen"));
  exports.Set("adoptFd", Napi::Function::New<AdoptFd>(env, "adoptFd"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("pidfdAlive", Napi::Function::New<PidfdAlive>(env, "pidfdAlive"));
  exports.Set("tryLockFd", Napi::Function::New<TryLockFd>(env, "tryLockFd"));
  exports.Set("openLeaveFd", Napi::Function::New<OpenLeaveFd>(env, "openLeaveFd"));
  exports.Set("undoAtTeardown", Napi::Function::New<UndoAtTeardown>(env, "undoAtTeardown"));
  exports.Set("keepAfterTeardown", Napi::Function::New<KeepAfterTeardown>(env, "keepAfterTeardown"));
  exports.Set("killAllSync", Napi::Function::New<KillAllSync>(env, "killAllSync"));
  RegisterFsAt(env, exports);
  RegisterFsBatch(env, exports);
  RegisterExtract(env, exports);
  RegisterTar(env, exports);
  return exports;
}

}  // namespace nsbox

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return nsbox::Init(env, exports); }

NODE_API_MODULE(nsbox, InitModule)
