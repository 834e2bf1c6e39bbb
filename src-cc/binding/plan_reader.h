// The JS plan read into a core Plan: argument checks (Reader), steps, lists, user namespace
// and security options.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "core/plan.h"

namespace nsbox {

// ---------------------------------------------------------------------------------------
// Argument conversion. A JS string with a NUL byte would be cut short by the kernel: refused.

class Reader {
 public:
  explicit Reader(Napi::Env env) : env_(env) {}
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  std::string Str(Napi::Object o, const char* key, bool required = false) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) {
      if (required) Fail(std::string(key) + " is required");
      return "";
    }
    if (!v.IsString()) {
      Fail(std::string(key) + " must be a string");
      return "";
    }
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s.find('\0') != std::string::npos) Fail(std::string(key) + " contains a NUL byte");
    return s;
  }

  std::vector<std::string> Strs(Napi::Object o, const char* key) {
    std::vector<std::string> out;
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return out;
    if (!v.IsArray()) {
      Fail(std::string(key) + " must be an array of strings");
      return out;
    }
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value e = a.Get(i);
      if (!e.IsString()) {
        Fail(std::string(key) + " must be an array of strings");
        return out;
      }
      std::string s = e.As<Napi::String>().Utf8Value();
      if (s.find('\0') != std::string::npos) Fail(std::string(key) + " contains a NUL byte");
      out.push_back(std::move(s));
    }
    return out;
  }

  double Num(Napi::Object o, const char* key) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return 0;
    if (!v.IsNumber()) {
      Fail(std::string(key) + " must be a number");
      return 0;
    }
    return v.As<Napi::Number>().DoubleValue();
  }

  // A failed Get (JS stopping: a worker being terminated) gives an empty value, on which any
  // further call would be a fatal error of the process (node-addon-api's Error::New with no
  // env): checked, as every value the readers use is, before it is used.
  bool Bool(Napi::Object o, const char* key) {
    Napi::Value v = o.Get(key);
    return !v.IsEmpty() && v.ToBoolean().Value();
  }

  void Fail(const std::string& msg) {
    if (error_.empty()) error_ = msg;
  }

 private:
  Napi::Env env_;
  std::string error_;
};

void read_steps(Reader& r, Napi::Object js, Plan& plan);
void read_list(Reader& r, Napi::Object js, const char* key, Plan& plan, std::vector<const char*>& out, bool terminate);
void read_userns(Reader& r, Napi::Object js, Plan& plan);
void read_security(Reader& r, Napi::Object js, Plan& plan);

}  // namespace nsbox
