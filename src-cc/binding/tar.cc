// N-API glue for core/tar and core/tar_import.
//
// new ImportJob(tarFd, rootFd, { tarball, label, what, umask, alwaysChown }) takes both fds (it closes
// them); run(callback)
// runs the whole import (read, hash, inflate, parse, policy, write) on one pool thread, the
// hash on a thread of its own, and calls back with (error | null, result); position() is the
// bytes of the tarball read so far (for progress reports while it runs). Why: the JS thread
// used to read, parse and encode every entry, and that was the longest of the import's
// threads (bench/ANALYSIS.md, issue 10).
//
// new TarParser(label); write(chunk) -> { events, error }: the same parser for cp's
// TypeScript TarReader (src/image/tar.ts), each event an entry object, [start, end) of
// `chunk` holding entry data, or null for an entry's end. end() -> error | null.
//
// tarParseNumber(buffer, start, length) -> number (NaN when malformed).

#include "binding/tar.h"

#include <math.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <memory>
#include <string>

#include "binding/fsat.h"
#include "core/tar.h"
#include "core/tar_import.h"

namespace nsbox {
namespace {

Napi::String Str(Napi::Env env, const std::string& s) { return Napi::String::New(env, s.data(), s.size()); }

Napi::Object RefusedObject(Napi::Env env, const TarError& e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("kind", "refused");
  o.Set("code", Str(env, e.code));
  o.Set("message", Str(env, e.message));
  if (e.has_path) o.Set("path", Str(env, e.path));
  return o;
}

class ImportJob;

class ImportWork : public Napi::AsyncWorker {
 public:
  ImportWork(ImportJob* job, const Napi::Object& self, const Napi::Function& callback)
      : Napi::AsyncWorker(self, callback, "nsbox.import"), job_(job) {}
  void Execute() override;
  void OnOK() override;

 private:
  ImportJob* job_;
  ImportResult result_;
};

class ImportJob : public Napi::ObjectWrap<ImportJob> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ImportJob", {InstanceMethod<&ImportJob::Run>("run"), InstanceMethod<&ImportJob::Position>("position")});
  }

  explicit ImportJob(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ImportJob>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsObject()) {
      Napi::TypeError::New(env, "new ImportJob(tarFd, rootFd, options)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[2].As<Napi::Object>();
    // Each value read once and checked before use: a failed Get (JS stopping) is empty, and a
    // call on it would be a fatal error of the process.
    std::string* fields[] = {&options_.tarball, &options_.label, &options_.what};
    const char* keys[] = {"tarball", "label", "what"};
    for (int i = 0; i < 3; i++) {
      Napi::Value v = o.Get(keys[i]);
      if (!v.IsString()) {
        Napi::TypeError::New(env, std::string("ImportJob: options.") + keys[i] + " must be a string").ThrowAsJavaScriptException();
        return;
      }
      *fields[i] = v.As<Napi::String>().Utf8Value();
    }
    Napi::Value umask = o.Get("umask");
    options_.umask = umask.IsNumber() ? static_cast<mode_t>(umask.As<Napi::Number>().Uint32Value() & 0777) : 0777;
    Napi::Value chown = o.Get("alwaysChown");
    options_.always_chown = !chown.IsEmpty() && chown.ToBoolean().Value();
    // Both fds are the job's from here (not when the arguments were refused): closed once the
    // import ran, or when the job is collected without having run. JS never holds them across
    // an await, so a worker terminated meanwhile leaks none.
    tar_fd_ = info[0].As<Napi::Number>().Int32Value();
    root_fd_ = info[1].As<Napi::Number>().Int32Value();
  }
  ~ImportJob() { CloseFds(); }

  // On the pool thread; the fds are closed as soon as the import is over.
  ImportResult Execute() {
    ImportResult r = ImportTarball(tar_fd_, root_fd_, options_, &consumed_);
    CloseFds();
    return r;
  }

 private:
  // run(callback(error | null, result?)): once.
  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) {
      Napi::TypeError::New(env, "run(callback)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (started_) {
      Napi::Error::New(env, "ImportJob: run() was called").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    started_ = true;
    (new ImportWork(this, info.This().As<Napi::Object>(), info[0].As<Napi::Function>()))->Queue();
    return env.Undefined();
  }

  Napi::Value Position(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(consumed_.load(std::memory_order_relaxed)));
  }

  void CloseFds() {
    if (tar_fd_ >= 0) close(tar_fd_);
    if (root_fd_ >= 0) close(root_fd_);
    tar_fd_ = root_fd_ = -1;
  }

  int tar_fd_ = -1;
  int root_fd_ = -1;
  ImportOptions options_;
  std::atomic<uint64_t> consumed_{0};
  bool started_ = false;
};

void ImportWork::Execute() { result_ = job_->Execute(); }

void ImportWork::OnOK() {
  Napi::Env env = Env();
  // A worker terminated mid-import: its teardown waits for this job, then no JS may run.
  if (!env_can_run_js(env)) return;
  const ImportResult& r = result_;
  if (!r.refused.code.empty()) {
    Callback().Call(Receiver().Value(), {RefusedObject(env, r.refused)});
    return;
  }
  if (r.write.err || r.read_errno) {
    int err = r.write.err ? r.write.err : r.read_errno;
    Napi::Object e = Napi::Object::New(env);
    e.Set("kind", r.write.err ? "write" : "read");
    e.Set("errno", err);
    e.Set("code", uv_err_name(-err));
    e.Set("syscall", r.write.err ? r.write.sys : "read");
    e.Set("failure", r.write.kind);
    e.Set("at", Napi::Buffer<char>::Copy(env, r.write.at.data(), r.write.at.size()));
    e.Set("entry", Str(env, r.write_entry));
    Callback().Call(Receiver().Value(), {e});
    return;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("entries", static_cast<double>(r.entries));
  o.Set("bytes", static_cast<double>(r.bytes));
  o.Set("skipped", static_cast<double>(r.skipped));
  o.Set("skippedXattrs", static_cast<double>(r.skipped_xattrs));
  o.Set("ownersSquashed", static_cast<double>(r.owners_squashed));
  o.Set("digest", Str(env, r.digest));
  Callback().Call(Receiver().Value(), {env.Null(), o});
}

const char* TypeName(TarType t) {
  switch (t) {
    case TarType::kFile: return "file";
    case TarType::kHardlink: return "hardlink";
    case TarType::kSymlink: return "symlink";
    case TarType::kChar: return "char";
    case TarType::kBlock: return "block";
    case TarType::kDirectory: return "directory";
    case TarType::kFifo: return "fifo";
    default: return "other";
  }
}

class JsTarParser : public Napi::ObjectWrap<JsTarParser>, public TarSink {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TarParser",
                       {InstanceMethod<&JsTarParser::Write>("write"), InstanceMethod<&JsTarParser::End>("end"),
                        InstanceMethod<&JsTarParser::Finished>("finished"), InstanceMethod<&JsTarParser::Position>("position")});
  }

  explicit JsTarParser(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsTarParser>(info) {
    if (info.Length() < 1 || !info[0].IsString()) {
      Napi::TypeError::New(info.Env(), "new TarParser(label)").ThrowAsJavaScriptException();
      return;
    }
    parser_ = std::make_unique<TarParser>(info[0].As<Napi::String>().Utf8Value());
  }

  bool OnEntry(const TarEntry& e, TarError*) override {
    Napi::Env env = events_.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", Str(env, e.name));
    o.Set("type", TypeName(e.type));
    o.Set("typeflag", Str(env, std::string(1, e.typeflag)));
    o.Set("mode", e.mode);
    o.Set("uid", e.uid);
    o.Set("gid", e.gid);
    o.Set("size", static_cast<double>(e.size));
    o.Set("mtime", static_cast<double>(e.mtime) + e.mtime_nsec / 1e9);
    o.Set("mtimeNsec", e.mtime_nsec);
    Napi::Array xattrs = Napi::Array::New(env, e.xattrs.size());
    for (size_t i = 0; i < e.xattrs.size(); i++) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, Str(env, e.xattrs[i].first));
      pair.Set(1u, Napi::Buffer<char>::Copy(env, e.xattrs[i].second.data(), e.xattrs[i].second.size()));
      xattrs.Set(static_cast<uint32_t>(i), pair);
    }
    o.Set("xattrs", xattrs);
    o.Set("linkname", Str(env, e.linkname));
    o.Set("devmajor", e.devmajor);
    o.Set("devminor", e.devminor);
    Push(o);
    return true;
  }

  bool OnData(const uint8_t* data, size_t len, TarError*) override {
    Napi::Env env = events_.Env();
    Napi::Array span = Napi::Array::New(env, 2);
    span.Set(0u, static_cast<double>(data - base_));
    span.Set(1u, static_cast<double>(data - base_ + len));
    Push(span);
    return true;
  }

  bool OnEntryEnd(TarError*) override {
    Push(events_.Env().Null());
    return true;
  }

 private:
  void Push(Napi::Value v) { events_.Set(count_++, v); }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsBuffer()) {
      Napi::TypeError::New(env, "write(chunk: Buffer)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto chunk = info[0].As<Napi::Buffer<uint8_t>>();
    events_ = Napi::Array::New(env);
    count_ = 0;
    base_ = chunk.Data();
    bool ok = parser_->Write(chunk.Data(), chunk.Length(), this);
    Napi::Object out = Napi::Object::New(env);
    out.Set("events", events_);
    out.Set("error", ok ? env.Null() : RefusedObject(env, parser_->error()));
    events_ = Napi::Array();
    base_ = nullptr;
    return out;
  }

  Napi::Value End(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (parser_->End()) return env.Null();
    return RefusedObject(env, parser_->error());
  }

  Napi::Value Finished(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), parser_->finished()); }

  Napi::Value Position(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array a = Napi::Array::New(env, 2);
    a.Set(0u, static_cast<double>(parser_->position()));
    a.Set(1u, Str(env, parser_->last_name()));
    return a;
  }

  std::unique_ptr<TarParser> parser_;
  Napi::Array events_;
  uint32_t count_ = 0;
  const uint8_t* base_ = nullptr;
};

Napi::Value ParseNumber(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "tarParseNumber(buffer, start, length)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto b = info[0].As<Napi::Buffer<uint8_t>>();
  double start = info[1].As<Napi::Number>().DoubleValue(), len = info[2].As<Napi::Number>().DoubleValue();
  if (!(start >= 0 && len >= 0 && start + len <= static_cast<double>(b.Length()))) {
    Napi::RangeError::New(env, "tarParseNumber: beyond the buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int64_t v;
  if (!TarNumber(b.Data() + static_cast<size_t>(start), static_cast<size_t>(len), &v)) return Napi::Number::New(env, NAN);
  return Napi::Number::New(env, static_cast<double>(v));
}

}  // namespace

void RegisterTar(Napi::Env env, Napi::Object exports) {
  exports.Set("ImportJob", ImportJob::Define(env));
  exports.Set("TarParser", JsTarParser::Define(env));
  exports.Set("tarParseNumber", Napi::Function::New<ParseNumber>(env, "tarParseNumber"));
}

}  // namespace nsbox
