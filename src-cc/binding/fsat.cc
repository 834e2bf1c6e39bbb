// N-API glue for core/fsat: checks and converts arguments, turns failures into errno objects
// ({ errno, code, syscall }). Names are bytes: a Buffer (or a string, as UTF-8).

#include "binding/fsat.h"

#include <errno.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/fsat.h"

namespace nsbox {
namespace {

// Per entry of listDir and for statFd, in this order (src/fsat.ts reads them by index).
enum StatField {
  kMode,
  kUid,
  kGid,
  kNlink,
  kSize,
  kAtimeSec,
  kAtimeNsec,
  kMtimeSec,
  kMtimeNsec,
  kRdevMajor,
  kRdevMinor,
  kDevHigh,
  kDevLow,
  kInoHigh,
  kInoLow,
  kStatFields
};

void put_stat(double* f, const struct stat& st) {
  f[kMode] = st.st_mode;
  f[kUid] = st.st_uid;
  f[kGid] = st.st_gid;
  f[kNlink] = static_cast<double>(st.st_nlink);
  f[kSize] = static_cast<double>(st.st_size);
  f[kAtimeSec] = static_cast<double>(st.st_atim.tv_sec);
  f[kAtimeNsec] = static_cast<double>(st.st_atim.tv_nsec);
  f[kMtimeSec] = static_cast<double>(st.st_mtim.tv_sec);
  f[kMtimeNsec] = static_cast<double>(st.st_mtim.tv_nsec);
  f[kRdevMajor] = major(st.st_rdev);
  f[kRdevMinor] = minor(st.st_rdev);
  f[kDevHigh] = static_cast<double>(static_cast<uint64_t>(st.st_dev) >> 32);
  f[kDevLow] = static_cast<double>(static_cast<uint64_t>(st.st_dev) & 0xffffffffu);
  f[kInoHigh] = static_cast<double>(static_cast<uint64_t>(st.st_ino) >> 32);
  f[kInoLow] = static_cast<double>(static_cast<uint64_t>(st.st_ino) & 0xffffffffu);
}

Napi::Object error_object(Napi::Env env, const FsError& e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("errno", e.err);
  o.Set("code", uv_err_name(-e.err));
  o.Set("syscall", e.sys);
  return o;
}

Napi::Value null_or_error(Napi::Env env, const FsError& e) {
  if (!e.err) return env.Null();
  return error_object(env, e);
}

Napi::Value fd_or_error(Napi::Env env, const FdResult& r) {
  if (r.fd < 0) return error_object(env, r.error);
  return Napi::Number::New(env, r.fd);
}

Napi::Value type_error(Napi::Env env, const char* usage) {
  Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
  return env.Undefined();
}

// A name or path argument as bytes. False when it is neither a Buffer nor a string, or
// holds a NUL byte (which would silently cut it short).
bool bytes_arg(const Napi::Value& v, std::string* out) {
  if (v.IsBuffer()) {
    auto b = v.As<Napi::Buffer<char>>();
    out->assign(b.Data(), b.Length());
  } else if (v.IsString()) {
    *out = v.As<Napi::String>().Utf8Value();
  } else {
    return false;
  }
  return out->find('\0') == std::string::npos;
}

bool int_arg(const Napi::Value& v, int* out) {
  if (!v.IsNumber()) return false;
  *out = v.As<Napi::Number>().Int32Value();
  return true;
}

// (fd, name) arguments, the most common shape.
bool fd_name_args(const Napi::CallbackInfo& info, int* fd, std::string* name) {
  return info.Length() >= 2 && int_arg(info[0], fd) && bytes_arg(info[1], name);
}

// uid, gid, mode, atimeSec, atimeNsec, mtimeSec, mtimeNsec from info[first...].
bool attrs_args(const Napi::CallbackInfo& info, size_t first, Attrs* a) {
  if (info.Length() < first + 7) return false;
  double v[7];
  for (size_t i = 0; i < 7; i++) {
    if (!info[first + i].IsNumber()) return false;
    v[i] = info[first + i].As<Napi::Number>().DoubleValue();
  }
  a->uid = static_cast<uid_t>(v[0]);
  a->gid = static_cast<gid_t>(v[1]);
  a->mode = static_cast<mode_t>(v[2]);
  a->atime = {static_cast<time_t>(v[3]), static_cast<long>(v[4])};
  a->mtime = {static_cast<time_t>(v[5]), static_cast<long>(v[6])};
  return true;
}

// openDir(path) -> fd | errno object
Napi::Value OpenDir(const Napi::CallbackInfo& info) {
  std::string path;
  if (info.Length() < 1 || !bytes_arg(info[0], &path)) return type_error(info.Env(), "openDir(path)");
  return fd_or_error(info.Env(), open_dir_path(path.c_str()));
}

// openDirAt(dirfd, name) -> fd | errno object
Napi::Value OpenDirAt(const Napi::CallbackInfo& info) {
  int fd;
  std::string name;
  if (!fd_name_args(info, &fd, &name)) return type_error(info.Env(), "openDirAt(dirfd, name)");
  return fd_or_error(info.Env(), open_dir_at(fd, name.c_str()));
}

// openParentDir(dirfd) -> fd | errno object
Napi::Value OpenParentDir(const Napi::CallbackInfo& info) {
  int fd;
  if (info.Length() < 1 || !int_arg(info[0], &fd)) return type_error(info.Env(), "openParentDir(dirfd)");
  return fd_or_error(info.Env(), open_parent_dir(fd));
}

// openFileAt(dirfd, name) -> fd | errno object
Napi::Value OpenFileAt(const Napi::CallbackInfo& info) {
  int fd;
  std::string name;
  if (!fd_name_args(info, &fd, &name)) return type_error(info.Env(), "openFileAt(dirfd, name)");
  return fd_or_error(info.Env(), open_file_at(fd, name.c_str()));
}

// createFileAt(dirfd, name) -> fd | errno object
Napi::Value CreateFileAt(const Napi::CallbackInfo& info) {
  int fd;
  std::string name;
  if (!fd_name_args(info, &fd, &name)) return type_error(info.Env(), "createFileAt(dirfd, name)");
  return fd_or_error(info.Env(), create_file_at(fd, name.c_str()));
}

// listDir(dirfd) -> { names: Buffer[], stats: Float64Array } | errno object
Napi::Value ListDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (info.Length() < 1 || !int_arg(info[0], &fd)) return type_error(env, "listDir(dirfd)");
  std::vector<DirEntry> entries;
  FsError e = list_dir(fd, &entries);
  if (e.err) return error_object(env, e);
  Napi::Array names = Napi::Array::New(env, entries.size());
  Napi::Float64Array stats = Napi::Float64Array::New(env, entries.size() * kStatFields);
  double* f = stats.IsEmpty() ? nullptr : stats.Data();
  // Not made: JS was stopped meanwhile (a terminated worker), and nobody reads the result.
  if (!f && !entries.empty()) return env.Undefined();
  for (size_t i = 0; i < entries.size(); i++) {
    names.Set(static_cast<uint32_t>(i), Napi::Buffer<char>::Copy(env, entries[i].name.data(), entries[i].name.size()));
    put_stat(f + i * kStatFields, entries[i].st);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("names", names);
  out.Set("stats", stats);
  return out;
}

// statFd(fd) -> Float64Array (the fields of one listDir entry) | errno object
Napi::Value StatFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (info.Length() < 1 || !int_arg(info[0], &fd)) return type_error(env, "statFd(fd)");
  struct stat st;
  FsError e = stat_fd(fd, &st);
  if (e.err) return error_object(env, e);
  Napi::Float64Array out = Napi::Float64Array::New(env, kStatFields);
  if (out.IsEmpty() || !out.Data()) return env.Undefined();  // JS stopped meanwhile
  put_stat(out.Data(), st);
  return out;
}

// readLinkAt(dirfd, name) -> Buffer | errno object
Napi::Value ReadLinkAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  std::string name, target;
  if (!fd_name_args(info, &fd, &name)) return type_error(env, "readLinkAt(dirfd, name)");
  FsError e = read_link_at(fd, name.c_str(), &target);
  if (e.err) return error_object(env, e);
  return Napi::Buffer<char>::Copy(env, target.data(), target.size());
}

// getXattrFd(fd, name) -> Buffer | null (not set) | errno object
Napi::Value GetXattrFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  std::string name, value;
  if (!fd_name_args(info, &fd, &name)) return type_error(env, "getXattrFd(fd, name)");
  bool found = false;
  FsError e = get_xattr_fd(fd, name.c_str(), &value, &found);
  if (e.err) return error_object(env, e);
  if (!found) return env.Null();
  return Napi::Buffer<char>::Copy(env, value.data(), value.size());
}

// listXattrsFd(fd) -> [[name, Buffer], ...] | errno object (user.* and security.capability)
Napi::Value ListXattrsFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (info.Length() < 1 || !int_arg(info[0], &fd)) return type_error(env, "listXattrsFd(fd)");
  std::vector<std::pair<std::string, std::string>> attrs;
  FsError e = list_xattrs_fd(fd, &attrs);
  if (e.err) return error_object(env, e);
  Napi::Array out = Napi::Array::New(env, attrs.size());
  for (uint32_t i = 0; i < attrs.size(); i++) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::String::New(env, attrs[i].first));
    pair.Set(1u, Napi::Buffer<char>::Copy(env, attrs[i].second.data(), attrs[i].second.size()));
    out.Set(i, pair);
  }
  return out;
}

// setXattrFd(fd, name, value: Buffer) -> null | errno object
Napi::Value SetXattrFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (info.Length() < 3 || !int_arg(info[0], &fd) || !info[1].IsString() || !info[2].IsBuffer()) {
    return type_error(env, "setXattrFd(fd, name, value: Buffer)");
  }
  std::string name = info[1].As<Napi::String>().Utf8Value();
  Napi::Buffer<char> b = info[2].As<Napi::Buffer<char>>();
  return null_or_error(env, set_xattr_fd(fd, name.c_str(), std::string(b.Data(), b.Length())));
}

// setTimesFd(fd, atimeSec, atimeNsec, mtimeSec, mtimeNsec) -> null | errno object
Napi::Value SetTimesFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double v[5];
  for (int i = 0; i < 5; i++) {
    if (static_cast<int>(info.Length()) <= i || !info[i].IsNumber())
      return type_error(env, "setTimesFd(fd, atimeSec, atimeNsec, mtimeSec, mtimeNsec)");
    v[i] = info[i].As<Napi::Number>().DoubleValue();
  }
  struct timespec a = {static_cast<time_t>(v[1]), static_cast<long>(v[2])};
  struct timespec m = {static_cast<time_t>(v[3]), static_cast<long>(v[4])};
  return null_or_error(env, set_times_fd(static_cast<int>(v[0]), a, m));
}

// mkdirAt(dirfd, name, mode) -> null | errno object
Napi::Value MkdirAt(const Napi::CallbackInfo& info) {
  int fd, mode;
  std::string name;
  if (!fd_name_args(info, &fd, &name) || info.Length() < 3 || !int_arg(info[2], &mode)) {
    return type_error(info.Env(), "mkdirAt(dirfd, name, mode)");
  }
  return null_or_error(info.Env(), make_dir_at(fd, name.c_str(), static_cast<mode_t>(mode)));
}

// linkAt(fromDirfd, fromName, toDirfd, toName) -> null | errno object
Napi::Value LinkAt(const Napi::CallbackInfo& info) {
  int from_fd, to_fd;
  std::string from, to;
  if (info.Length() < 4 || !int_arg(info[0], &from_fd) || !bytes_arg(info[1], &from) || !int_arg(info[2], &to_fd) || !bytes_arg(info[3], &to)) {
    return type_error(info.Env(), "linkAt(fromDirfd, fromName, toDirfd, toName)");
  }
  return null_or_error(info.Env(), link_at(from_fd, from.c_str(), to_fd, to.c_str()));
}

// symlinkAt(target, dirfd, name) -> null | errno object
Napi::Value SymlinkAt(const Napi::CallbackInfo& info) {
  int fd;
  std::string target, name;
  if (info.Length() < 3 || !bytes_arg(info[0], &target) || !int_arg(info[1], &fd) || !bytes_arg(info[2], &name)) {
    return type_error(info.Env(), "symlinkAt(target, dirfd, name)");
  }
  return null_or_error(info.Env(), symlink_at(target.c_str(), fd, name.c_str()));
}

// setFsIds(uid, gid) -> null | errno object: the ids this thread (only) creates files as. Away
// from 0, setfsuid drops the filesystem capabilities from the thread's effective set; they are
// put back from its permitted set, so that only the owner of what is created changes (cp into
// a container with a user namespace of its own: its overlay refuses an unmapped creator).
// setfsuid and setfsgid are per thread; the raw calls make sure no C library broadcasts them.
Napi::Value SetFsIds(const Napi::CallbackInfo& info) {
  // Ids are unsigned 32-bit, up to 2^32 - 2 (-1 asks): a range from /etc/subuid may lie above
  // 2^31, which an int argument would have wrapped to a negative number and refused.
  uid_t ids[2];
  for (size_t i = 0; i < 2; i++) {
    double v = info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : -1;
    if (!(v >= 0 && v <= 4294967294.0) || v != static_cast<double>(static_cast<uint32_t>(v))) {
      return type_error(info.Env(), "setFsIds(uid, gid)");
    }
    ids[i] = static_cast<uid_t>(v);
  }
  const uid_t uid = ids[0];
  const gid_t gid = ids[1];
  syscall(SYS_setfsgid, gid);
  syscall(SYS_setfsuid, uid);
  // Both answer the previous id whatever happens: read back to know they took.
  FsError e;
  if (static_cast<gid_t>(syscall(SYS_setfsgid, -1)) != gid || static_cast<uid_t>(syscall(SYS_setfsuid, -1)) != uid) {
    e.err = EPERM;
    e.sys = "setfsuid";
    return null_or_error(info.Env(), e);
  }
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  if (syscall(SYS_capget, &hdr, data) < 0) {
    e.err = errno;
    e.sys = "capget";
    return null_or_error(info.Env(), e);
  }
  data[0].effective = data[0].permitted;
  data[1].effective = data[1].permitted;
  if (syscall(SYS_capset, &hdr, data) < 0) {
    e.err = errno;
    e.sys = "capset";
  }
  return null_or_error(info.Env(), e);
}

// setAttrsFd(fd, uid, gid, mode, atimeSec, atimeNsec, mtimeSec, mtimeNsec) -> null | errno object
Napi::Value SetAttrsFd(const Napi::CallbackInfo& info) {
  int fd;
  Attrs a;
  if (info.Length() < 1 || !int_arg(info[0], &fd) || !attrs_args(info, 1, &a)) {
    return type_error(info.Env(), "setAttrsFd(fd, uid, gid, mode, atimeSec, atimeNsec, mtimeSec, mtimeNsec)");
  }
  return null_or_error(info.Env(), set_attrs_fd(fd, a));
}

// setLinkAttrsAt(dirfd, name, uid, gid, mode, atimeSec, atimeNsec, mtimeSec, mtimeNsec) -> null | errno object
Napi::Value SetLinkAttrsAt(const Napi::CallbackInfo& info) {
  int fd;
  std::string name;
  Attrs a;
  if (!fd_name_args(info, &fd, &name) || !attrs_args(info, 2, &a)) {
    return type_error(info.Env(), "setLinkAttrsAt(dirfd, name, uid, gid, mode, atimeSec, atimeNsec, mtimeSec, mtimeNsec)");
  }
  return null_or_error(info.Env(), set_link_attrs_at(fd, name.c_str(), a));
}

// copyData(fromFd, toFd, limit) -> bytes copied | errno object
Napi::Value CopyData(const Napi::CallbackInfo& info) {
  int from, to;
  if (info.Length() < 3 || !int_arg(info[0], &from) || !int_arg(info[1], &to) || !info[2].IsNumber()) {
    return type_error(info.Env(), "copyData(fromFd, toFd, limit)");
  }
  double limit = info[2].As<Napi::Number>().DoubleValue();
  uint64_t copied = 0;
  FsError e = copy_data(from, to, limit > 0 ? static_cast<uint64_t>(limit) : 0, &copied);
  if (e.err) return error_object(info.Env(), e);
  return Napi::Number::New(info.Env(), static_cast<double>(copied));
}

// removeTree(path) -> null | errno object with `path`, where it failed (relative to path)
Napi::Value RemoveTree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path, where;
  if (info.Length() < 1 || !bytes_arg(info[0], &path)) return type_error(env, "removeTree(path)");
  FsError e = remove_tree(path.c_str(), &where);
  if (!e.err) return env.Null();
  Napi::Object o = error_object(env, e);
  o.Set("path", Napi::Buffer<char>::Copy(env, where.data(), where.size()));
  return o;
}

}  // namespace

bool env_can_run_js(napi_env env) {
  // Setting a property is refused (napi_pending_exception, or napi_cannot_run_js) exactly when
  // JS cannot run; creating the object is not. Plain C calls: nothing is thrown.
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return false;
  napi_value o;
  bool ok = napi_create_object(env, &o) == napi_ok && napi_set_named_property(env, o, "x", o) == napi_ok;
  napi_close_handle_scope(env, scope);
  return ok;
}

namespace {

// removeTree on libuv's thread pool: a container's write layer can hold thousands of entries,
// and on a disk mounted with `discard` one unlink may wait for the journal for milliseconds.
class RemoveTreeWork : public Napi::AsyncWorker {
 public:
  RemoveTreeWork(const Napi::Function& callback, std::string path) : Napi::AsyncWorker(callback, "nsbox.removeTree"), path_(std::move(path)) {}
  void Execute() override { err_ = remove_tree(path_.c_str(), &where_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (!env_can_run_js(env)) return;
    if (!err_.err) {
      Callback().Call({env.Null()});
      return;
    }
    Napi::Object o = error_object(env, err_);
    o.Set("path", Napi::Buffer<char>::Copy(env, where_.data(), where_.size()));
    Callback().Call({o});
  }

 private:
  std::string path_, where_;
  FsError err_{};
};

class WriteFileWork : public Napi::AsyncWorker {
 public:
  WriteFileWork(const Napi::Function& callback, std::string path, std::string data, int flags, mode_t mode, bool set_mode)
      : Napi::AsyncWorker(callback, "nsbox.writeFile"),
        path_(std::move(path)),
        data_(std::move(data)),
        flags_(flags),
        mode_(mode),
        set_mode_(set_mode) {}
  void Execute() override { err_ = write_file(path_.c_str(), data_, flags_, mode_, set_mode_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (!env_can_run_js(env)) return;
    Callback().Call({err_.err ? static_cast<Napi::Value>(error_object(env, err_)) : env.Null()});
  }

 private:
  std::string path_, data_;
  int flags_;
  mode_t mode_;
  bool set_mode_;
  FsError err_{};
};

// listDirAsync(dirfd, done(errno object | { names, ends, stats })): listDir's system calls
// (getdents, an fstatat per entry) and a sort by name on the pool; a directory of 30,000
// entries took 250-700 ms of them here. The names come as one Buffer and where each ends (a Uint32Array): one
// allocation on the JS thread instead of one per name. The caller keeps dirfd open meanwhile.
class ListDirWork : public Napi::AsyncWorker {
 public:
  ListDirWork(const Napi::Function& callback, int fd) : Napi::AsyncWorker(callback, "nsbox.listDir"), fd_(fd) {}
  void Execute() override {
    err_ = list_dir(fd_, &entries_);
    // Sorted by bytes here, off the JS thread: the walks want that order, and a sort of a
    // sorted array costs them one pass.
    std::sort(entries_.begin(), entries_.end(), [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!env_can_run_js(env)) return;
    if (err_.err) {
      Callback().Call({error_object(env, err_)});
      return;
    }
    size_t total = 0;
    for (const DirEntry& e : entries_) total += e.name.size();
    Napi::Buffer<char> names = Napi::Buffer<char>::New(env, total);
    Napi::Uint32Array ends = Napi::Uint32Array::New(env, entries_.size());
    Napi::Float64Array stats = Napi::Float64Array::New(env, entries_.size() * kStatFields);
    // Not made: JS was stopped meanwhile (a terminated worker), and nobody reads the result.
    if (names.IsEmpty() || ends.IsEmpty() || stats.IsEmpty() || (total && !names.Data()) || (!entries_.empty() && (!stats.Data() || !ends.Data())))
      return;
    size_t at = 0;
    for (size_t i = 0; i < entries_.size(); i++) {
      const std::string& name = entries_[i].name;
      if (!name.empty()) memcpy(names.Data() + at, name.data(), name.size());
      at += name.size();
      ends[i] = static_cast<uint32_t>(at);
      put_stat(stats.Data() + i * kStatFields, entries_[i].st);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("names", names);
    out.Set("ends", ends);
    out.Set("stats", stats);
    Callback().Call({out});
  }

 private:
  int fd_;
  std::vector<DirEntry> entries_;
  FsError err_{};
};

Napi::Value ListDirAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (info.Length() < 2 || !int_arg(info[0], &fd) || !info[1].IsFunction()) return type_error(env, "listDirAsync(dirfd, done)");
  (new ListDirWork(info[1].As<Napi::Function>(), fd))->Queue();
  return env.Undefined();
}

// writeFileAsync(path, data, flags, mode, setMode, done(null | errno object)): on the pool.
Napi::Value WriteFileAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path, data;
  int flags, mode;
  if (info.Length() < 6 || !bytes_arg(info[0], &path) || !bytes_arg(info[1], &data) || !int_arg(info[2], &flags) || !int_arg(info[3], &mode) ||
      !info[4].IsBoolean() || !info[5].IsFunction()) {
    return type_error(env, "writeFileAsync(path, data, flags, mode, setMode, done)");
  }
  (new WriteFileWork(info[5].As<Napi::Function>(), std::move(path), std::move(data), flags, static_cast<mode_t>(mode),
                     info[4].As<Napi::Boolean>().Value()))
      ->Queue();
  return env.Undefined();
}

// removeTreeAsync(path, done(null | errno object with `path`))
Napi::Value RemoveTreeAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (info.Length() < 2 || !bytes_arg(info[0], &path) || !info[1].IsFunction()) return type_error(env, "removeTreeAsync(path, done)");
  (new RemoveTreeWork(info[1].As<Napi::Function>(), std::move(path)))->Queue();
  return env.Undefined();
}

// openInRoot(rootFd, path, flags) -> fd | errno object (openat2 RESOLVE_IN_ROOT)
Napi::Value OpenInRoot(const Napi::CallbackInfo& info) {
  int fd, flags;
  std::string path;
  if (!fd_name_args(info, &fd, &path) || info.Length() < 3 || !int_arg(info[2], &flags)) {
    return type_error(info.Env(), "openInRoot(rootFd, path, flags)");
  }
  return fd_or_error(info.Env(), open_in_root(fd, path.c_str(), flags));
}

// statAt(dirfd, name) -> Float64Array (as statFd) | errno object
Napi::Value StatAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  std::string name;
  if (!fd_name_args(info, &fd, &name)) return type_error(env, "statAt(dirfd, name)");
  struct stat st;
  FsError e = stat_at(fd, name.c_str(), &st);
  if (e.err) return error_object(env, e);
  Napi::Float64Array out = Napi::Float64Array::New(env, kStatFields);
  if (out.IsEmpty() || !out.Data()) return env.Undefined();  // JS stopped meanwhile
  put_stat(out.Data(), st);
  return out;
}

// unlinkAt(dirfd, name, dir: boolean) -> null | errno object
Napi::Value UnlinkAt(const Napi::CallbackInfo& info) {
  int fd;
  std::string name;
  if (!fd_name_args(info, &fd, &name) || info.Length() < 3 || !info[2].IsBoolean()) {
    return type_error(info.Env(), "unlinkAt(dirfd, name, dir)");
  }
  return null_or_error(info.Env(), unlink_at(fd, name.c_str(), info[2].As<Napi::Boolean>().Value()));
}

// mountOverlayFd(lower: string[], upper, work) -> fd of a detached mount | errno object
Napi::Value MountOverlayFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "mountOverlayFd(lowerdir: string (escaped), upper: string, work: string)";
  if (info.Length() < 3) return type_error(env, usage);
  std::string lowerdir, upper, work;
  if (!bytes_arg(info[0], &lowerdir) || lowerdir.empty() || !bytes_arg(info[1], &upper) || !bytes_arg(info[2], &work)) return type_error(env, usage);
  return fd_or_error(env, mount_overlay_fd(lowerdir, upper, work, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
}

}  // namespace

void RegisterFsAt(Napi::Env env, Napi::Object exports) {
  exports.Set("openDir", Napi::Function::New<OpenDir>(env, "openDir"));
  exports.Set("openDirAt", Napi::Function::New<OpenDirAt>(env, "openDirAt"));
  exports.Set("openParentDir", Napi::Function::New<OpenParentDir>(env, "openParentDir"));
  exports.Set("openFileAt", Napi::Function::New<OpenFileAt>(env, "openFileAt"));
  exports.Set("createFileAt", Napi::Function::New<CreateFileAt>(env, "createFileAt"));
  exports.Set("listDir", Napi::Function::New<ListDir>(env, "listDir"));
  exports.Set("listDirAsync", Napi::Function::New<ListDirAsync>(env, "listDirAsync"));
  exports.Set("statFd", Napi::Function::New<StatFd>(env, "statFd"));
  exports.Set("readLinkAt", Napi::Function::New<ReadLinkAt>(env, "readLinkAt"));
  exports.Set("getXattrFd", Napi::Function::New<GetXattrFd>(env, "getXattrFd"));
  exports.Set("listXattrsFd", Napi::Function::New<ListXattrsFd>(env, "listXattrsFd"));
  exports.Set("setXattrFd", Napi::Function::New<SetXattrFd>(env, "setXattrFd"));
  exports.Set("setTimesFd", Napi::Function::New<SetTimesFd>(env, "setTimesFd"));
  exports.Set("mkdirAt", Napi::Function::New<MkdirAt>(env, "mkdirAt"));
  exports.Set("linkAt", Napi::Function::New<LinkAt>(env, "linkAt"));
  exports.Set("symlinkAt", Napi::Function::New<SymlinkAt>(env, "symlinkAt"));
  exports.Set("setAttrsFd", Napi::Function::New<SetAttrsFd>(env, "setAttrsFd"));
  exports.Set("setFsIds", Napi::Function::New<SetFsIds>(env, "setFsIds"));
  exports.Set("setLinkAttrsAt", Napi::Function::New<SetLinkAttrsAt>(env, "setLinkAttrsAt"));
  exports.Set("copyData", Napi::Function::New<CopyData>(env, "copyData"));
  exports.Set("removeTree", Napi::Function::New<RemoveTree>(env, "removeTree"));
  exports.Set("removeTreeAsync", Napi::Function::New<RemoveTreeAsync>(env, "removeTreeAsync"));
  exports.Set("writeFileAsync", Napi::Function::New<WriteFileAsync>(env, "writeFileAsync"));
  exports.Set("openInRoot", Napi::Function::New<OpenInRoot>(env, "openInRoot"));
  exports.Set("statAt", Napi::Function::New<StatAt>(env, "statAt"));
  exports.Set("unlinkAt", Napi::Function::New<UnlinkAt>(env, "unlinkAt"));
  exports.Set("mountOverlayFd", Napi::Function::New<MountOverlayFd>(env, "mountOverlayFd"));
}

}  // namespace nsbox
