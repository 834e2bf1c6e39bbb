// The addon's per-environment state (Instance), shared by the start path, the Process wrap and
// Init, and the errno objects every call returns.
#pragma once

#include <napi.h>
#include <uv.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <unistd.h>

#include "core/spawner.h"

namespace nsbox {

class Process;
struct StartJob;
// A finished start nobody will take (binding/start.cc).
void discard_start(StartJob* job);

// What the JS thread keeps of a start in flight (spawnAsync).
struct PendingStart {
  Napi::FunctionReference on_exit;
  Napi::FunctionReference on_started;
  std::unique_ptr<Napi::AsyncContext> context;
};

// What a JS step undoes itself when it finishes, but an environment that ends without running
// JS again (a terminated worker) would leave on the host: binding/teardown.cc does it then.
struct Undo {
  enum Kind { kThaw, kRmdir } kind = kRmdir;
  std::string path;
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
  // Starts posted to a spawner thread whose result is not handed over yet (Finish has not
  // returned): what process.exit() waits for, bounded (binding/exit.cc).
  std::atomic<int> in_flight{0};
  // Fds a start's child may be handed by number (the setup cgroup's leave fd,
  // binding/teardown.cc): closed only after the spawner threads are joined, so that no child
  // is cloned with a number another file took meanwhile; and closed then, so that a pool of
  // workers does not leave one per worker (Node closes a worker's fs.open fds only if it
  // tracks them, and at a moment of its own).
  std::vector<int> held_fds;
  // Fds handed to JS that JS closes through the addon (pidfdOpen, closeFd): the teardown
  // closes those JS was stopped before closing.
  std::unordered_set<int> js_fds;
  // The stdio ends a start handed to JS, by fd, with what they are (st_dev, st_ino): until JS
  // has a stream over one (adoptFd), the teardown closes it if it still is that file (once
  // wrapped, Node's own handle cleanup may have closed the number, and another file taken it).
  std::unordered_map<int, std::pair<uint64_t, uint64_t>> handed_fds;
  // By token (undoAtTeardown).
  std::map<uint32_t, Undo> undo;
  uint32_t next_undo = 1;

  ~Instance() {
    {
      std::lock_guard<std::mutex> lock(done_mu);
      closed = true;
    }
    spawners.clear();  // running starts finish (and are discarded), queued ones are cancelled
    for (StartJob* job : done) discard_start(job);
    done.clear();
    if (init_fd >= 0) close(init_fd);
    for (int fd : held_fds) close(fd);
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

// { errno, code, syscall }: how a failed system call reaches JS (binding.cc).
Napi::Object errno_object(Napi::Env env, int err, const char* sys);

}  // namespace nsbox
