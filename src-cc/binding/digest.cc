// new Sha256(); update(buffer, callback) hashes on the thread pool and calls back with null;
// digest() -> hex. One update at a time, in the order given. Why: hashing a tarball as it is
// imported is a third of the CPU an import takes; on the JS thread it delays the parsing that
// feeds the extractor's batches (src/image/extract.ts), on the pool it runs beside both.
// OpenSSL is Node's own (its symbols are exported to addons), as node:crypto would use it.

#include "binding/digest.h"

#include <openssl/evp.h>

#include <string>

namespace nsbox {
namespace {

class Sha256;

class UpdateWork : public Napi::AsyncWorker {
 public:
  UpdateWork(Sha256* owner, const Napi::Object& self, const Napi::Function& callback, const Napi::Buffer<uint8_t>& data)
      : Napi::AsyncWorker(self, callback, "nsbox.sha256"),
        owner_(owner),
        data_ref_(Napi::Persistent(data)),
        data_(data.Data()),
        len_(data.Length()) {}
  void Execute() override;
  void OnOK() override;

 private:
  Sha256* owner_;
  Napi::Reference<Napi::Buffer<uint8_t>> data_ref_;
  const uint8_t* data_;
  size_t len_;
};

class Sha256 : public Napi::ObjectWrap<Sha256> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Sha256", {InstanceMethod<&Sha256::Update>("update"), InstanceMethod<&Sha256::Digest>("digest")});
  }

  explicit Sha256(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Sha256>(info), ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
      Napi::Error::New(info.Env(), "Sha256: OpenSSL could not start a digest").ThrowAsJavaScriptException();
    }
  }
  ~Sha256() override {
    if (ctx_) EVP_MD_CTX_free(ctx_);
  }

  void Hash(const uint8_t* data, size_t len) { ok_ = ok_ && EVP_DigestUpdate(ctx_, data, len) == 1; }
  void Done() { busy_ = false; }

 private:
  Napi::Value Update(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "update(data: Buffer, callback)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (busy_ || finished_) {
      Napi::Error::New(env, busy_ ? "Sha256: an update is running" : "Sha256: digest() was called").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    busy_ = true;
    (new UpdateWork(this, info.This().As<Napi::Object>(), info[1].As<Napi::Function>(), info[0].As<Napi::Buffer<uint8_t>>()))->Queue();
    return env.Undefined();
  }

  Napi::Value Digest(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (busy_ || finished_ || !ok_ || EVP_DigestFinal_ex(ctx_, md, &n) != 1) {
      Napi::Error::New(env, "Sha256: digest() while an update runs, twice, or after a failure").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    finished_ = true;
    static const char kHex[] = "0123456789abcdef";
    std::string hex;
    for (unsigned int i = 0; i < n; i++) {
      hex += kHex[md[i] >> 4];
      hex += kHex[md[i] & 15];
    }
    return Napi::String::New(env, hex);
  }

  EVP_MD_CTX* ctx_;
  bool busy_ = false;
  bool finished_ = false;
  bool ok_ = true;
};

void UpdateWork::Execute() { owner_->Hash(data_, len_); }

void UpdateWork::OnOK() {
  owner_->Done();
  Callback().Call(Receiver().Value(), {Env().Null()});
}

}  // namespace

void RegisterDigest(Napi::Env env, Napi::Object exports) { exports.Set("Sha256", Sha256::Define(env)); }

}  // namespace nsbox
