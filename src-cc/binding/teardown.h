// What a Node environment that ends without running JS (a worker's terminate(), an uncaught
// exception in a worker, the main thread's process.exit() ending a worker) must still undo on
// the host, and the fds a start's child may be handed, owned by the environment rather than by
// JS so that they outlive every child that was given them and no longer than the environment.
#pragma once

#include <napi.h>

namespace nsbox {

struct Instance;

// openLeaveFd(path) -> fd | errno object: `path` (a cgroup's `tasks`) open for writing,
// O_CLOEXEC, owned by this environment: closed when it ends, after its spawner threads.
Napi::Value OpenLeaveFd(const Napi::CallbackInfo& info);
// undoAtTeardown(kind: 'thaw' | 'rmdir', path) -> token: done if the environment
// ends before keepAfterTeardown(token) is called.
Napi::Value UndoAtTeardown(const Napi::CallbackInfo& info);
// keepAfterTeardown(token): JS has done (or no longer needs) what the token would undo.
Napi::Value KeepAfterTeardown(const Napi::CallbackInfo& info);

// In the environment's cleanup hook, before its containers are killed: closes the pidfds JS
// was stopped before closing, thaws the commits' freezers (a frozen container's SIGKILL waits
// for the thaw).
void TeardownThaw(Instance* inst);
// After they were killed and reaped: removes what is registered (freezers, empty cgroup
// directories), each at most once, a busy directory retried for a short while.
void TeardownRemove(Instance* inst);

}  // namespace nsbox
