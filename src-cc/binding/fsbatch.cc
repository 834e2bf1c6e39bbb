// fsBatchAsync: a list of small file system calls run in order in ONE job of libuv's pool.
//
// Why: a start and its `--rm` removal were about twenty pool jobs (fs.promises, writeFileAsync,
// removeTreeAsync), most of them waiting on the one before. Each is a wake-up of a pool thread
// and a turn of the loop; on a busy machine each costs a scheduling delay (issue 14: a single
// start 12 % slower than before the pool). Steps that need no JS between them go as one job.
// The ops are plain system calls on absolute paths, in the order given; the first failure
// stops the rest unless its op says to go on; errnos an op tolerates count as success.

#include "binding/fsbatch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <uv.h>

#include <string>
#include <utility>
#include <vector>

#include "binding/fsat.h"
#include "core/fsat.h"

namespace nsbox {

Napi::Object errno_object(Napi::Env env, int err, const char* sys);

namespace {

enum class Kind { kMkdir, kWrite, kRename, kRmdir, kUnlink, kSymlink, kRead, kExists, kStat, kRemoveTree, kReadLinks };

struct Op {
  Kind kind;
  std::string path, other, data;
  int flags = 0;
  mode_t mode = 0;
  bool set_mode = false;
  bool go_on = false;  // a failure does not stop the ops after it
  std::vector<int> tolerate;
};

// What one op did: not run, done, failed (err, sys, where), or done with a value.
struct Outcome {
  bool ran = false;
  FsError err{};
  std::string where;                        // removeTree: the entry that failed, relative
  std::string text;                         // read
  bool flag = false;                        // exists
  double st[4] = {0, 0, 0, 0};              // stat: dev major, dev minor, ino, mode
  std::vector<std::string> names, targets;  // readLinks
};

bool read_whole(const char* path, std::string* out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      errno = e;
      return false;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return true;
}

// The symlinks in a directory and what they point to (a state directory's names/).
bool read_links(const char* path, Outcome* o) {
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) return false;
  DIR* d = fdopendir(dfd);
  if (!d) {
    int e = errno;
    close(dfd);
    errno = e;
    return false;
  }
  while (struct dirent* ent = readdir(d)) {
    std::string name = ent->d_name;
    if (name == "." || name == "..") continue;
    char target[4096];
    ssize_t n = readlinkat(dirfd(d), ent->d_name, target, sizeof target - 1);
    if (n < 0) continue;  // not a link, or gone meanwhile
    o->names.push_back(std::move(name));
    o->targets.emplace_back(target, static_cast<size_t>(n));
  }
  closedir(d);
  return true;
}

void run_op(const Op& op, Outcome* o) {
  o->ran = true;
  const char* p = op.path.c_str();
  auto fail = [&](const char* sys) { o->err = {errno, sys}; };
  switch (op.kind) {
    case Kind::kMkdir:
      if (mkdir(p, op.mode) < 0) fail("mkdir");
      break;
    case Kind::kWrite: o->err = write_file(p, op.data, op.flags, op.mode, op.set_mode); break;
    case Kind::kRename:
      if (rename(p, op.other.c_str()) < 0) fail("rename");
      break;
    case Kind::kRmdir:
      if (rmdir(p) < 0) fail("rmdir");
      break;
    case Kind::kUnlink:
      if (unlink(p) < 0) fail("unlink");
      break;
    case Kind::kSymlink:
      if (symlink(op.other.c_str(), p) < 0) fail("symlink");
      break;
    case Kind::kRead:
      if (!read_whole(p, &o->text)) fail("read");
      break;
    case Kind::kExists: o->flag = access(p, F_OK) == 0; break;
    case Kind::kStat: {
      struct stat st;
      if (stat(p, &st) < 0) {
        fail("stat");
        break;
      }
      o->st[0] = major(st.st_dev);
      o->st[1] = minor(st.st_dev);
      o->st[2] = static_cast<double>(st.st_ino);
      o->st[3] = st.st_mode;
      break;
    }
    case Kind::kRemoveTree: o->err = remove_tree(p, &o->where); break;
    case Kind::kReadLinks:
      if (!read_links(p, o)) fail("opendir");
      break;
  }
  if (o->err.err) {
    for (int t : op.tolerate) {
      if (t == o->err.err) {
        o->err = {};
        break;
      }
    }
  }
}

void run_ops(const std::vector<Op>& ops, std::vector<Outcome>* out) {
  for (size_t i = 0; i < ops.size(); i++) {
    run_op(ops[i], &(*out)[i]);
    if ((*out)[i].err.err && !ops[i].go_on) break;
  }
}

// One op's outcome as JS sees it (fsBatchAsync's comment below).
Napi::Value result_of(Napi::Env env, const Op& op, const Outcome& o) {
  if (!o.ran) return env.Undefined();
  if (o.err.err) {
    Napi::Object e = errno_object(env, o.err.err, o.err.sys);
    if (op.kind == Kind::kRemoveTree) e.Set("path", Napi::Buffer<char>::Copy(env, o.where.data(), o.where.size()));
    return e;
  }
  switch (op.kind) {
    case Kind::kRead: return Napi::String::New(env, o.text);
    case Kind::kExists: return Napi::Boolean::New(env, o.flag);
    case Kind::kStat: {
      Napi::Object s = Napi::Object::New(env);
      s.Set("dev", std::to_string(static_cast<unsigned>(o.st[0])) + ":" + std::to_string(static_cast<unsigned>(o.st[1])));
      s.Set("ino", o.st[2]);
      s.Set("mode", o.st[3]);
      return s;
    }
    case Kind::kReadLinks: {
      Napi::Object m = Napi::Object::New(env);
      for (size_t i = 0; i < o.names.size(); i++) m.Set(o.names[i], o.targets[i]);
      return m;
    }
    default: return env.Null();
  }
}

Napi::Array results_of(Napi::Env env, const std::vector<Op>& ops, const std::vector<Outcome>& out) {
  Napi::Array results = Napi::Array::New(env, out.size());
  for (size_t i = 0; i < out.size(); i++) results.Set(i, result_of(env, ops[i], out[i]));
  return results;
}

class BatchWork : public Napi::AsyncWorker {
 public:
  BatchWork(const Napi::Function& callback, std::vector<Op> ops)
      : Napi::AsyncWorker(callback, "nsbox.fsBatch"), ops_(std::move(ops)), out_(ops_.size()) {}

  void Execute() override { run_ops(ops_, &out_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (!env_can_run_js(env)) return;
    Callback().Call({results_of(env, ops_, out_)});
  }

 private:
  std::vector<Op> ops_;
  std::vector<Outcome> out_;
};

bool str_field(Napi::Object o, const char* key, std::string* out, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsString()) {
    *out = v.As<Napi::String>().Utf8Value();
    return true;
  }
  if (v.IsBuffer()) {
    Napi::Buffer<char> b = v.As<Napi::Buffer<char>>();
    out->assign(b.Data(), b.Length());
    return true;
  }
  return !required && v.IsUndefined();
}

bool num_field(Napi::Object o, const char* key, double* out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return true;
  if (!v.IsNumber()) return false;
  *out = v.As<Napi::Number>().DoubleValue();
  return true;
}

bool read_op(Napi::Value v, Op* op) {
  if (!v.IsObject()) return false;
  Napi::Object o = v.As<Napi::Object>();
  std::string kind;
  if (!str_field(o, "op", &kind, true)) return false;
  static const std::pair<const char*, Kind> kinds[] = {
      {"mkdir", Kind::kMkdir},   {"write", Kind::kWrite},           {"rename", Kind::kRename},       {"rmdir", Kind::kRmdir},
      {"unlink", Kind::kUnlink}, {"symlink", Kind::kSymlink},       {"read", Kind::kRead},           {"exists", Kind::kExists},
      {"stat", Kind::kStat},     {"removeTree", Kind::kRemoveTree}, {"readLinks", Kind::kReadLinks},
  };
  bool known = false;
  for (const auto& k : kinds) {
    if (kind == k.first) {
      op->kind = k.second;
      known = true;
    }
  }
  if (!known) return false;
  if (!str_field(o, "path", &op->path, true) || op->path.empty() || op->path.find('\0') != std::string::npos) return false;
  const bool needs_other = op->kind == Kind::kRename || op->kind == Kind::kSymlink;
  if (!str_field(o, "to", &op->other, needs_other) || op->other.find('\0') != std::string::npos) return false;
  if (!str_field(o, "data", &op->data, op->kind == Kind::kWrite)) return false;
  double flags = op->kind == Kind::kWrite ? -1 : 0, mode = 0;
  if (!num_field(o, "flags", &flags) || !num_field(o, "mode", &mode)) return false;
  if (flags < 0 || flags > 0x7fffffff || mode < 0 || mode > 07777) return false;
  op->flags = static_cast<int>(flags);
  op->mode = static_cast<mode_t>(mode);
  // Checked for an empty value (a failed Get while JS stops) before any call on it.
  Napi::Value set_mode = o.Get("setMode"), go_on = o.Get("goOn");
  op->set_mode = !set_mode.IsEmpty() && set_mode.ToBoolean().Value();
  op->go_on = !go_on.IsEmpty() && go_on.ToBoolean().Value();
  Napi::Value tol = o.Get("tolerate");
  if (tol.IsArray()) {
    Napi::Array a = tol.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value t = a.Get(i);
      if (!t.IsString()) return false;
      std::string code = t.As<Napi::String>().Utf8Value();
      int found = 0;
      for (int e : {ENOENT, EEXIST, ENOTEMPTY, EBUSY}) {
        if (code == uv_err_name(-e)) found = e;
      }
      if (!found) return false;
      op->tolerate.push_back(found);
    }
  } else if (!tol.IsUndefined()) {
    return false;
  }
  return true;
}

// fsBatchAsync(ops, done(results)): `ops` [{ op, path, to?, data?, flags?, mode?, setMode?,
// goOn?, tolerate? }]; `results[i]` undefined (not run), null (done), an errno object, or the
// op's value (read: string, exists: boolean, stat: { dev, ino, mode }, readLinks: { name: target }).
// fsBatchSync(ops) is the same batch run on the calling thread, returning `results`: for a
// one-shot process (the CLI's run), whose first pool job would make libuv start all of its
// pool threads and wait until each has started (3-6 ms on a loaded 2-CPU VM, bench/ANALYSIS.md).
bool read_ops(const Napi::CallbackInfo& info, bool with_callback, std::vector<Op>* ops) {
  Napi::Env env = info.Env();
  const char* usage = with_callback ? "fsBatchAsync(ops: object[], done: function)" : "fsBatchSync(ops: object[])";
  if (info.Length() < (with_callback ? 2u : 1u) || !info[0].IsArray() || (with_callback && !info[1].IsFunction())) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return false;
  }
  Napi::Array a = info[0].As<Napi::Array>();
  ops->resize(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    if (!read_op(a.Get(i), &(*ops)[i])) {
      Napi::TypeError::New(env, std::string(usage) + ": op " + std::to_string(i) + " is not a valid op").ThrowAsJavaScriptException();
      return false;
    }
  }
  return true;
}

Napi::Value FsBatchAsync(const Napi::CallbackInfo& info) {
  std::vector<Op> ops;
  if (!read_ops(info, true, &ops)) return info.Env().Undefined();
  (new BatchWork(info[1].As<Napi::Function>(), std::move(ops)))->Queue();
  return info.Env().Undefined();
}

Napi::Value FsBatchSync(const Napi::CallbackInfo& info) {
  std::vector<Op> ops;
  if (!read_ops(info, false, &ops)) return info.Env().Undefined();
  std::vector<Outcome> out(ops.size());
  run_ops(ops, &out);
  return results_of(info.Env(), ops, out);
}

}  // namespace

void RegisterFsBatch(Napi::Env env, Napi::Object exports) {
  exports.Set("fsBatchAsync", Napi::Function::New<FsBatchAsync>(env, "fsBatchAsync"));
  exports.Set("fsBatchSync", Napi::Function::New<FsBatchSync>(env, "fsBatchSync"));
}

}  // namespace nsbox
