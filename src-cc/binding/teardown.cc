// See teardown.h. Everything here runs on the environment's JS thread (the calls, and the
// cleanup hook in binding.cc), so Instance's maps need no lock.

#include "binding/teardown.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "binding/instance.h"

namespace nsbox {
namespace {

bool write_text(const std::string& file, const std::string& text) {
  int fd = open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n;
  do {
    n = write(fd, text.data(), text.size());
  } while (n < 0 && errno == EINTR);
  close(fd);
  return n == static_cast<ssize_t>(text.size());
}

std::string read_text(const std::string& file) {
  std::string out;
  int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

std::string dirname_of(const std::string& p) {
  size_t slash = p.rfind('/');
  return slash == std::string::npos || slash == 0 ? std::string("/") : p.substr(0, slash);
}

int64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// A commit's freezer (src/cgroup.ts freezeContainer, `<home>/nsbox/freeze-...`): thawed, and
// its processes put back in `<home>`, where they were born, as thawAndRemove does in JS.
void thaw_freezer(const std::string& dir) {
  write_text(dir + "/freezer.state", "THAWED");
  const std::string home_procs = dirname_of(dirname_of(dir)) + "/cgroup.procs";
  const std::string procs = read_text(dir + "/cgroup.procs");
  size_t at = 0;
  while (at < procs.size()) {
    size_t end = procs.find('\n', at);
    if (end == std::string::npos) end = procs.size();
    if (end > at) write_text(home_procs, procs.substr(at, end - at));  // one pid a write; gone ones fail
    at = end + 1;
  }
}

}  // namespace

Napi::Value OpenLeaveFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "openLeaveFd(path: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd;
  do {
    fd = open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_object(env, errno, "open");
  env.GetInstanceData<Instance>()->held_fds.push_back(fd);
  return Napi::Number::New(env, fd);
}

Napi::Value UndoAtTeardown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "undoAtTeardown(kind: 'thaw' | 'rmdir', path: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string kind = info[0].As<Napi::String>().Utf8Value();
  Undo u;
  if (kind == "thaw") u.kind = Undo::kThaw;
  else if (kind == "rmdir") u.kind = Undo::kRmdir;
  else {
    Napi::TypeError::New(env, "undoAtTeardown: kind is 'thaw' or 'rmdir'").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  u.path = info[1].As<Napi::String>().Utf8Value();
  if (u.path.empty() || u.path[0] != '/') {
    Napi::TypeError::New(env, "undoAtTeardown: an absolute path").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Instance* inst = env.GetInstanceData<Instance>();
  const uint32_t token = inst->next_undo++;
  inst->undo.emplace(token, std::move(u));
  return Napi::Number::New(env, token);
}

Napi::Value KeepAfterTeardown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "keepAfterTeardown(token: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  env.GetInstanceData<Instance>()->undo.erase(info[0].As<Napi::Number>().Uint32Value());
  return env.Undefined();
}

void TeardownThaw(Instance* inst) {
  for (int fd : inst->js_fds) close(fd);
  inst->js_fds.clear();
  for (auto& [fd, id] : inst->handed_fds) {
    struct stat st;
    if (fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_dev) == id.first && static_cast<uint64_t>(st.st_ino) == id.second) close(fd);
  }
  inst->handed_fds.clear();
  for (auto& [token, u] : inst->undo) {
    if (u.kind == Undo::kThaw) thaw_freezer(u.path);
  }
}

void TeardownRemove(Instance* inst) {
  // 200 ms for all: a thawed, killed container's processes leave their freezer within
  // milliseconds once reaped; what is still busy then is left to prune (its name says whose).
  const int64_t deadline = now_ms() + 200;
  for (auto& [token, u] : inst->undo) {
    for (;;) {
      if (u.kind == Undo::kThaw) thaw_freezer(u.path);  // forked after the first pass
      if (rmdir(u.path.c_str()) == 0 || errno != EBUSY || now_ms() >= deadline) break;
      struct timespec ts = {0, 2 * 1000000};
      nanosleep(&ts, nullptr);
    }
  }
  inst->undo.clear();
}

}  // namespace nsbox
