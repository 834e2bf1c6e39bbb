// N-API glue for core/extract. new ExtractWriter(rootFd); run(ops, opsLength, chunks, callback)
// executes a batch on the thread pool and calls back with null or an error object
// ({ errno, code, syscall, op, kind, at }); close() releases its fds. One batch at a time.
// The JS thread meanwhile parses the next part of the tarball: the two overlap.

#include "binding/extract.h"

#include <errno.h>
#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "binding/fsat.h"
#include "core/extract.h"

namespace nsbox {
namespace {

class Writer;

// One batch: the buffers it reads are held by references until it is done, so that the
// garbage collector cannot free them under the worker thread.
class BatchWork : public Napi::AsyncWorker {
 public:
  BatchWork(Writer* writer, const Napi::Object& self, const Napi::Function& callback, const Napi::Buffer<uint8_t>& ops, size_t ops_len,
            const Napi::Array& chunks);
  void Execute() override;
  void OnOK() override;

 private:
  Writer* writer_;
  Napi::Reference<Napi::Buffer<uint8_t>> ops_ref_;
  Napi::ObjectReference chunks_ref_;
  const uint8_t* ops_;
  size_t ops_len_;
  std::vector<ExtractChunk> chunks_;
  bool unreadable_ = false;  // a chunk JS could no longer hand over (JS stopping)
  ExtractError result_;
};

class Writer : public Napi::ObjectWrap<Writer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ExtractWriter", {InstanceMethod<&Writer::Run>("run"), InstanceMethod<&Writer::Close>("close")});
  }

  explicit Writer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Writer>(info) {
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(info.Env(), "new ExtractWriter(rootFd)").ThrowAsJavaScriptException();
      return;
    }
    core_ = std::make_unique<ExtractWriter>(info[0].As<Napi::Number>().Int32Value());
  }

  ExtractWriter* core() { return core_.get(); }
  void Done() { busy_ = false; }

 private:
  // run(ops: Buffer, opsLength, chunks: Buffer[], callback(error | null))
  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsArray() || !info[3].IsFunction()) {
      Napi::TypeError::New(env, "run(ops: Buffer, opsLength, chunks: Buffer[], callback)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!core_ || busy_) {
      Napi::Error::New(env, core_ ? "ExtractWriter: a batch is running" : "ExtractWriter: closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto ops = info[0].As<Napi::Buffer<uint8_t>>();
    double len = info[1].As<Napi::Number>().DoubleValue();
    if (!(len >= 0 && len <= static_cast<double>(ops.Length()))) {
      Napi::RangeError::New(env, "run: opsLength beyond the buffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto chunks = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < chunks.Length(); i++) {
      if (!chunks.Get(i).IsBuffer()) {
        Napi::TypeError::New(env, "run: chunks must be Buffers").ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    busy_ = true;
    auto* work = new BatchWork(this, info.This().As<Napi::Object>(), info[3].As<Napi::Function>(), ops, static_cast<size_t>(len), chunks);
    work->Queue();
    return env.Undefined();
  }

  // close(): the fds it opened (never the root fd, which is the caller's).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (busy_) {
      Napi::Error::New(info.Env(), "ExtractWriter: a batch is running").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    core_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<ExtractWriter> core_;
  bool busy_ = false;
};

BatchWork::BatchWork(Writer* writer, const Napi::Object& self, const Napi::Function& callback, const Napi::Buffer<uint8_t>& ops, size_t ops_len,
                     const Napi::Array& chunks)
    : Napi::AsyncWorker(self, callback, "nsbox.extract"),
      writer_(writer),
      ops_ref_(Napi::Persistent(ops)),
      chunks_ref_(Napi::Persistent(chunks.As<Napi::Object>())),
      ops_(ops.Data()),
      ops_len_(ops_len) {
  chunks_.reserve(chunks.Length());
  for (uint32_t i = 0; i < chunks.Length(); i++) {
    // A chunk that cannot be read (JS stopping) fails the batch before it writes anything,
    // where a call on the empty value would abort the process.
    Napi::Value v = chunks.Get(i);
    if (!v.IsBuffer()) {
      unreadable_ = true;
      return;
    }
    auto b = v.As<Napi::Buffer<uint8_t>>();
    chunks_.push_back(ExtractChunk{b.Data(), b.Length()});
  }
}

void BatchWork::Execute() {
  if (unreadable_) {
    result_ = ExtractError{EINVAL, "decode", kFailBadBatch, 0, {}};
    return;
  }
  result_ = writer_->core()->Run(ops_, ops_len_, chunks_.data(), chunks_.size());
}

void BatchWork::OnOK() {
  Napi::Env env = Env();
  writer_->Done();
  if (!env_can_run_js(env)) return;
  if (!result_.err) {
    Callback().Call(Receiver().Value(), {env.Null()});
    return;
  }
  Napi::Object e = Napi::Object::New(env);
  e.Set("errno", result_.err);
  e.Set("code", uv_err_name(-result_.err));
  e.Set("syscall", result_.sys);
  e.Set("op", static_cast<double>(result_.op));
  e.Set("kind", result_.kind);
  e.Set("at", Napi::Buffer<char>::Copy(env, result_.at.data(), result_.at.size()));
  Callback().Call(Receiver().Value(), {e});
}

}  // namespace

void RegisterExtract(Napi::Env env, Napi::Object exports) { exports.Set("ExtractWriter", Writer::Define(env)); }

}  // namespace nsbox
